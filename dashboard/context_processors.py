"""Template context shared by every page."""

from django.conf import settings

from dashboard.permissions import role_names


def ferry(request):
    """The signed-in user's roles, for showing only what they may use."""
    user = getattr(request, "user", None)
    return {
        "ferry_roles": role_names(user) if user is not None else set(),
        "ferry_local_login": settings.FERRY_LOCAL_LOGIN,
        "ferry_oidc": getattr(settings, "FERRY_OIDC", False),
        "ferry_oidc_label": getattr(settings, "FERRY_OIDC_LABEL", ""),
    }
