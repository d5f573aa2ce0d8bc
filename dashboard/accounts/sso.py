"""Single sign-on: identity-provider groups become Ferry roles at every login.

FERRY_SSO_GROUP_ROLES maps an IdP group to roles: {"ferry-planners": "planner",
"site-a-ops": ["operator@site-a", "viewer"]}; "role@group" holds the role for one host group
only. An LDAP group matches by its full DN or by its short name (the first RDN's value),
whichever the map uses. The map is authoritative: at every login the account's roles are
set to what its groups give, so a group removed in the IdP removes the role at the next login.
"""

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction

from dashboard.accounts.models import AccountIdentity
from dashboard.accounts.roles import ALL, user_roles_set
from dashboard.audit.record import Actor
from dashboard.errors import InputError
from dashboard.permissions import ROLES


def _grants_of(value) -> list[str]:
    values = value if isinstance(value, list) else [value]
    if not all(isinstance(v, str) and v for v in values):
        raise InputError("FERRY_SSO_GROUP_ROLES: each value is a role or a list of roles.")
    return values


def group_roles_map() -> dict[str, list[tuple[str, str]]]:
    """{idp group (lower-case): [(role, host group or "" for all)]} from the setting."""
    mapping = getattr(settings, "FERRY_SSO_GROUP_ROLES", {}) or {}
    out: dict[str, list[tuple[str, str]]] = {}
    for group, value in mapping.items():
        for grant in _grants_of(value):
            role, _, host_group = grant.partition("@")
            if role not in ROLES:
                raise InputError(f"FERRY_SSO_GROUP_ROLES: unknown role '{role}' for '{group}'.")
            out.setdefault(group.strip().lower(), []).append((role, host_group.strip()))
    return out


def _names_of(group: str) -> set[str]:
    """A group as the map may name it: as given, and for a DN also its short name."""
    name = group.strip().lower()
    names = {name}
    if "=" in name and "," in name:
        names.add(name.split(",", 1)[0].split("=", 1)[1].strip())
    return names


def roles_from_groups(groups) -> dict:
    """The roles map {role: "all" | [host groups]} that the IdP groups give."""
    mapping = group_roles_map()
    roles: dict = {}
    for group in groups or []:
        for name in _names_of(str(group)):
            for role, host_group in mapping.get(name, []):
                if not host_group:
                    roles[role] = ALL
                elif roles.get(role) != ALL:
                    roles.setdefault(role, set()).add(host_group)
    return {role: (where if where == ALL else sorted(where)) for role, where in roles.items()}


def sso_login_sync(
    *, user, source: str, subject: str, groups, email: str = "", email_verified: bool = False
) -> dict:
    """Record where the account comes from and set its roles from its IdP groups (audited
    as user.roles_set when they changed). Returns the roles map."""
    with transaction.atomic():
        identity, _ = AccountIdentity.objects.get_or_create(user=user)
        identity.source = source
        identity.subject = subject[:255]
        identity.email_verified = bool(email_verified)
        identity.save(update_fields=["source", "subject", "email_verified", "updated_at"])
        if email and user.email != email:
            user.email = email
            user.save(update_fields=["email"])
        return user_roles_set(
            actor=Actor.system(f"sso-{source}"),
            user=user,
            roles=roles_from_groups(groups),
            source=source,
            reason=f"roles from {source} groups at login",
        )


def sso_username(source: str, subject: str, preferred: str = "") -> str:
    """A username for a new IdP account: the IdP's preferred name when free, else one
    derived from the subject (never the name of an existing local account)."""
    User = get_user_model()
    name = (preferred or "").strip()[:150]
    taken = (
        not name
        or User.objects.filter(username=name)
        .exclude(identity__source=source, identity__subject=subject)
        .exists()
    )
    return f"{source}-{subject}"[:150] if taken else name
