"""Template context shared by every page."""

from dashboard.permissions import role_names


def ferry(request):
    """The signed-in user's roles, for showing only what they may use."""
    user = getattr(request, "user", None)
    return {"ferry_roles": role_names(user) if user is not None else set()}
