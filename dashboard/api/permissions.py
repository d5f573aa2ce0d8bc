"""DRF permission classes built on the role matrix in dashboard.permissions."""

from rest_framework.permissions import SAFE_METHODS, BasePermission

from dashboard.permissions import can


def action_permission(read_action: str, write_action: str | None = None):
    """A permission class: `read_action` for safe methods, `write_action` for the rest."""

    class _ActionPermission(BasePermission):
        message = "Your role does not allow this."

        def has_permission(self, request, view):
            if request.method in SAFE_METHODS:
                return can(request.user, read_action)
            required = getattr(view, "action_permissions", {}).get(
                getattr(view, "action", None), write_action
            )
            return required is not None and can(request.user, required)

    _ActionPermission.__name__ = f"Can_{read_action}_{write_action}".replace(".", "_")
    return _ActionPermission
