"""ASGI entry point: HTTP through Django, websockets through Channels (read-only streams)."""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dashboard.settings")

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402
from django.core.asgi import get_asgi_application  # noqa: E402

django_asgi_app = get_asgi_application()

from dashboard.live.publish import LoopRecordingApp  # noqa: E402
from dashboard.live.token_auth import TokenAuthMiddleware  # noqa: E402
from dashboard.routing import websocket_urlpatterns  # noqa: E402
from dashboard.runtime.embedded import start_embedded_workers  # noqa: E402
from dashboard.warmup import warm_up  # noqa: E402

warm_up()
start_embedded_workers()

application = LoopRecordingApp(
    ProtocolTypeRouter(
        {
            "http": django_asgi_app,
            "websocket": AllowedHostsOriginValidator(
                # Inside the session stack: an API token header wins over a session cookie.
                AuthMiddlewareStack(TokenAuthMiddleware(URLRouter(websocket_urlpatterns)))
            ),
        }
    )
)
