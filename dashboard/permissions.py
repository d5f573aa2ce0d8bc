"""Roles and the permission matrix: the one place that says who may do what, and where.

Pages (through `role_required`), the REST API (dashboard.api.permissions) and websocket
subscriptions all call `can()`. A role is held for every host (a Django group named after
the role) or only for named host groups (a `RoleGrant`): `can()` says whether the user may
do the action somewhere, `scope_of()` says where (None: every host; else the host group
names), and the domain apps filter their objects with `scope_filter()` or `in_scope()`.
The bottom of the platform: it knows nothing of hosts or plans.
"""

from functools import wraps

from django.apps import apps
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.core.exceptions import PermissionDenied
from django.db.models import CharField, Value

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


Scope = frozenset[str] | None  # None: every host; else the host groups (empty: nowhere)
ALL_HOSTS: Scope = None


def role_grants(user) -> dict[str, Scope]:
    """{role: where it is held}: None for every host, else the host group names."""
    if user is None or isinstance(user, AnonymousUser) or not user.is_authenticated:
        return {}
    if user.is_superuser:
        return dict.fromkeys(ROLES, ALL_HOSTS)
    cached = getattr(user, "_ferry_roles", None)
    if cached is None:
        # Looked up by name: the matrix sits below the accounts package in the layers.
        RoleGrant = apps.get_model("dashboard", "RoleGrant")
        # One query for both kinds of grant (list pages pin their query counts): a Django
        # group is the role everywhere (marked by an empty group name), a RoleGrant one group.
        # (Unordered: SQLite refuses ORDER BY inside a UNION's parts.)
        everywhere = (
            user.groups.filter(name__in=ROLES)
            .order_by()
            .values_list("name", Value("", output_field=CharField()))
        )
        scoped = (
            RoleGrant.objects.filter(user_id=user.pk, role__in=ROLES)
            .order_by()
            .values_list("role", "host_group")
        )
        groups: dict[str, set[str]] = {}
        global_roles = set()
        for role, host_group in everywhere.union(scoped, all=True):
            if host_group == "":
                global_roles.add(role)
            else:
                groups.setdefault(role, set()).add(host_group)
        cached = {role: frozenset(names) for role, names in groups.items()}
        cached.update(dict.fromkeys(global_roles, ALL_HOSTS))
        user._ferry_roles = cached
    return cached


def role_names(user) -> set[str]:
    """The role names a user holds anywhere (all of them for a superuser)."""
    return set(role_grants(user))


def scope_of(user, action: str) -> Scope:
    """Where the user may perform the action: None for every host, else the host groups
    of the roles that allow it (an empty set when no role does)."""
    allowed = MATRIX.get(action, frozenset())
    where: set[str] = set()
    for role, scope in role_grants(user).items():
        if role not in allowed:
            continue
        if scope is ALL_HOSTS:
            return ALL_HOSTS
        where |= scope
    return frozenset(where)


def actor_scope(actor, action: str) -> Scope:
    """Like scope_of for a person; a worker or the system (which act on a person's already
    authorized request) is not narrowed."""
    return scope_of(actor, action) if isinstance(actor, AbstractBaseUser) else ALL_HOSTS


def in_scope(scope: Scope, host_groups) -> bool:
    """Whether every one of `host_groups` lies inside `scope`."""
    return scope is ALL_HOSTS or set(host_groups) <= scope


def scope_label(scope: Scope):
    """The scope as the audit trail records it: "all" or the sorted group names."""
    return "all" if scope is ALL_HOSTS else sorted(scope)


def scope_filter(queryset, user, action: str, field: str = "group"):
    """`queryset` narrowed to rows whose host group `field` lies in the user's scope (a
    worker or the system: not narrowed)."""
    scope = actor_scope(user, action) if user is not None else frozenset()
    if scope is ALL_HOSTS:
        return queryset
    return queryset.filter(**{f"{field}__in": sorted(scope)})


def can(user, action: str) -> bool:
    """Whether the user may perform the action (unknown actions are refused)."""
    allowed = MATRIX.get(action)
    if allowed is None:
        return False
    return bool(role_names(user) & allowed)


def is_scoped(user, action: str) -> bool:
    """Whether the user may do the action only in some host groups (not everywhere)."""
    return scope_of(user, action) is not ALL_HOSTS


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
