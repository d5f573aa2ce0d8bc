"""The test OpenID provider's routes: its login pages and the OpenID Connect endpoints."""

from django.urls import include, path

urlpatterns = [
    path("accounts/", include("django.contrib.auth.urls")),
    path("openid/", include("oidc_provider.urls", namespace="oidc_provider")),
]
