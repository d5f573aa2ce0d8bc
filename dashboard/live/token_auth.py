"""API tokens on websockets: `Authorization: Token <key>` in the handshake signs a stream in
as the token's user, the same way the REST API's TokenAuthentication does.

Programs (the `ferry` command line) hold a token, not a session cookie. Browsers cannot set
an Authorization header on a websocket, so this adds no way for another site's page to open
a stream with a visitor's credentials; the origin check in front of it still applies. A
header that is present wins over the session: a wrong or revoked token is refused (4403)
even when a session cookie came along. A stream opened with a token ends when the token is
rotated or revoked, or the account loses its role or is deactivated (`token_stream_allowed`,
asked by the consumers' periodic re-authorization).
"""

from channels.db import database_sync_to_async
from channels.middleware import BaseMiddleware
from django.contrib.auth.models import AnonymousUser

from dashboard.accounts.tokens import api_token_user

SCOPE_KEY = "auth_token"
_PREFIX = b"token "
_MAX_KEY = 200  # tokens are 64 hex characters; anything much longer is junk


def token_from_headers(headers) -> str | None:
    """The key of an `Authorization: Token <key>` header; "" for a malformed one, None
    when there is no such header (other schemes are not ours to judge)."""
    for name, value in headers or ():
        if name.lower() != b"authorization":
            continue
        if value[: len(_PREFIX)].lower() != _PREFIX:
            return None
        key = value[len(_PREFIX) :].strip()
        if not key or len(key) > _MAX_KEY or not key.isalnum():
            return ""
        return key.decode("ascii")
    return None


def _user_of_token(key: str):
    return api_token_user(key)


class TokenAuthMiddleware(BaseMiddleware):
    """Sets scope["user"] from an API token header; leaves other handshakes alone."""

    async def __call__(self, scope, receive, send):
        key = token_from_headers(scope.get("headers"))
        if key is not None:
            scope = dict(scope)
            user = await database_sync_to_async(_user_of_token)(key) if key else None
            scope["user"] = user or AnonymousUser()
            scope[SCOPE_KEY] = key if user else None
        return await super().__call__(scope, receive, send)


def token_stream_allowed(scope) -> bool | None:
    """For a stream opened with a token: whether its token still belongs to an active user
    (the caller checks the role). None for streams opened otherwise."""
    key = scope.get(SCOPE_KEY)
    if not key:
        return None
    owner = _user_of_token(key)
    return owner is not None and owner.pk == getattr(scope.get("user"), "pk", None)
