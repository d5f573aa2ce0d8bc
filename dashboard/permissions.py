"""Roles and the permission matrix: the one place that says who may do what.

Pages (through `role_required`), the REST API (dashboard.api.permissions) and websocket
subscriptions all call `can()`. The bottom of the platform: it imports nothing of Ferry's.
"""

from functools import wraps

from django.contrib.auth.models import AnonymousUser
from django.core.exceptions import PermissionDenied

ROLES = ("viewer", "planner", "approver", "operator", "auditor", "admin")

# action -> roles allowed. Superusers may do everything.
MATRIX: dict[str, frozenset[str]] = {
    "inventory.view": frozenset(ROLES),
    "inventory.manage": frozenset({"planner", "admin"}),
    # A libvirt URI is code run with credentials every hypervisor trusts as root: only
    # admins register hosts, and only they read libvirt's raw error text.
    "host.register": frozenset({"admin"}),
    "host.error_detail": frozenset({"admin"}),
    # Letting a plan move VMs to hosts reached without TLS (recorded with a reason).
    "plan.transport_override": frozenset({"admin"}),
    # Closing a host to new placements by hand (campaigns do it as the system).
    "host.maintenance": frozenset({"operator", "admin"}),
    # Hooks that run a command on the worker (from FERRY_HOOK_COMMAND_DIR): admins only.
    "hook.command": frozenset({"admin"}),
    "plan.view": frozenset(ROLES),
    "plan.edit": frozenset({"planner", "admin"}),
    "plan.submit": frozenset({"planner", "admin"}),
    "plan.approve": frozenset({"approver", "admin"}),
    "plan.run": frozenset({"operator", "admin"}),
    "sharelink.manage": frozenset({"planner", "operator", "admin"}),
    "notification.manage": frozenset({"planner", "operator", "admin"}),
    "notification.manage_global": frozenset({"admin"}),
    "audit.view": frozenset({"auditor", "admin"}),
    "audit.view_own": frozenset(ROLES),
    "users.manage": frozenset({"admin"}),
}


def role_names(user) -> set[str]:
    """The role names a user holds (all of them for a superuser)."""
    if user is None or isinstance(user, AnonymousUser) or not user.is_authenticated:
        return set()
    if user.is_superuser:
        return set(ROLES)
    cached = getattr(user, "_ferry_roles", None)
    if cached is None:
        cached = set(user.groups.filter(name__in=ROLES).values_list("name", flat=True))
        user._ferry_roles = cached
    return cached


def can(user, action: str) -> bool:
    """Whether the user may perform the action (unknown actions are refused)."""
    allowed = MATRIX.get(action)
    if allowed is None:
        return False
    return bool(role_names(user) & allowed)


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
