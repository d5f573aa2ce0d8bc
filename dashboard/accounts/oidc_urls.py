"""The OpenID Connect login routes (mozilla-django-oidc's views), answered only when OIDC is
configured (FERRY_OIDC_CLIENT_ID); otherwise they do not exist (404)."""

from functools import wraps

from django.conf import settings
from django.http import Http404
from django.urls import path
from mozilla_django_oidc import views


def _when_configured(view):
    @wraps(view)
    def wrapped(request, *args, **kwargs):
        if not getattr(settings, "FERRY_OIDC", False):
            raise Http404("Single sign-on is not configured.")
        return view(request, *args, **kwargs)

    return wrapped


urlpatterns = [
    path(
        "callback/",
        _when_configured(views.OIDCAuthenticationCallbackView.as_view()),
        name="oidc_authentication_callback",
    ),
    path(
        "authenticate/",
        _when_configured(views.OIDCAuthenticationRequestView.as_view()),
        name="oidc_authentication_init",
    ),
]
