"""Granting roles, for every host or for named host groups (audited).

A person's roles are one map {role: "all" | [host groups]}: "all" is the Django group named
after the role, a list is one RoleGrant per group. Admins set it through the API or the
admin site; single sign-on sets it at every login from the identity provider's groups.
"""

from django.contrib.auth.models import Group
from django.db import transaction

from dashboard.accounts.models import RoleGrant
from dashboard.audit.record import audit_record
from dashboard.errors import InputError
from dashboard.permissions import ROLES

ALL = "all"


def user_roles_get(user) -> dict:
    """{role: "all" | sorted host groups} as stored (a superuser's implicit roles aside)."""
    roles: dict = {}
    for role, group in RoleGrant.objects.filter(user=user).values_list("role", "host_group"):
        roles.setdefault(role, []).append(group)
    roles = {role: sorted(groups) for role, groups in roles.items()}
    for name in user.groups.filter(name__in=ROLES).values_list("name", flat=True):
        roles[name] = ALL
    return dict(sorted(roles.items()))


def roles_clean(roles) -> dict:
    """The roles map checked: known roles, "all" or a list of host group names."""
    if not isinstance(roles, dict):
        raise InputError('Roles must be an object: {"role": "all" or ["host group", ...]}.')
    clean: dict = {}
    for role, where in roles.items():
        if role not in ROLES:
            raise InputError(f"Unknown role '{role}'. Roles: {', '.join(ROLES)}.")
        if where == ALL:
            clean[role] = ALL
            continue
        if not isinstance(where, list) or not where:
            raise InputError(f'Role {role}: give "all" or a non-empty list of host group names.')
        groups = set()
        for name in where:
            if not isinstance(name, str) or not name.strip() or len(name) > 100:
                raise InputError(f"Role {role}: a host group name is 1 to 100 characters.")
            if not name.isprintable():
                raise InputError(f"Role {role}: host group names are one printable line.")
            groups.add(name.strip())
        clean[role] = sorted(groups)
    return dict(sorted(clean.items()))


def user_roles_set(*, actor, user, roles, source: str = "local", reason: str = "") -> dict:
    """Replace the user's roles with `roles` (one audit event when anything changed)."""
    wanted = roles_clean(roles)
    with transaction.atomic():
        before = user_roles_get(user)
        if before == wanted:
            return wanted
        role_groups = {g.name: g for g in Group.objects.filter(name__in=ROLES)}
        for role in ROLES:
            where = wanted.get(role)
            group = role_groups.get(role) or Group.objects.get_or_create(name=role)[0]
            if where == ALL:
                user.groups.add(group)
            else:
                user.groups.remove(group)
            grants = RoleGrant.objects.filter(user=user, role=role)
            keep = [] if where in (None, ALL) else where
            grants.exclude(host_group__in=keep).delete()
            have = set(grants.values_list("host_group", flat=True))
            RoleGrant.objects.bulk_create(
                RoleGrant(user=user, role=role, host_group=name, source=source)
                for name in keep
                if name not in have
            )
        if hasattr(user, "_ferry_roles"):
            del user._ferry_roles
        audit_record(
            actor=actor,
            action="user.roles_set",
            obj=user,
            object_repr=user.get_username(),
            before={"roles": before},
            after={"roles": wanted, "source": source},
            reason=reason,
        )
    return wanted
