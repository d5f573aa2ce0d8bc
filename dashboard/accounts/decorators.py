"""The one role check of pages (the API's is dashboard.api.permissions, websockets' is in
their consumers; all three ask dashboard.accounts.permissions.can)."""

from functools import wraps

from django.core.exceptions import PermissionDenied

from dashboard.accounts.permissions import can


def role_required(*actions: str, message: str = "Your role does not allow this."):
    """A page decorator: the signed-in user must be allowed one of `actions` (else 403).

    Put it below @login_required and the method decorators, so an anonymous visitor is
    sent to the login page and a wrong method is a 405 before roles are looked at.
    """

    def decorator(view):
        @wraps(view)
        def wrapped(request, *args, **kwargs):
            if not any(can(request.user, action) for action in actions):
                raise PermissionDenied(message)
            return view(request, *args, **kwargs)

        return wrapped

    return decorator
