"""LDAP sign-in against a real OpenLDAP server (slapd, started by the fixture): the
directory's groups become Ferry roles at every login, by group DN or short name, and a
group membership removed in the directory removes the role at the next login."""

import pytest
from django.contrib.auth import authenticate
from django.test import Client

from dashboard.accounts.roles import user_roles_get
from dashboard.audit.models import AuditEvent
from tests.sso.conftest import ROOT_DN, ROOT_PW, SUFFIX

pytestmark = pytest.mark.django_db

LDAP_BACKENDS = [
    "dashboard.accounts.ldap.FerryLDAPBackend",
    "dashboard.accounts.backend.LockoutModelBackend",
]


@pytest.fixture
def directory(ldap_directory, settings):
    import ldap
    from django_auth_ldap.config import GroupOfNamesType, LDAPSearch

    settings.AUTH_LDAP_SERVER_URI = ldap_directory.uri
    settings.AUTH_LDAP_BIND_DN = ROOT_DN
    settings.AUTH_LDAP_BIND_PASSWORD = ROOT_PW
    settings.AUTH_LDAP_USER_SEARCH = LDAPSearch(
        f"ou=people,{SUFFIX}", ldap.SCOPE_SUBTREE, "(uid=%(user)s)"
    )
    settings.AUTH_LDAP_GROUP_SEARCH = LDAPSearch(
        f"ou=groups,{SUFFIX}", ldap.SCOPE_SUBTREE, "(objectClass=groupOfNames)"
    )
    settings.AUTH_LDAP_GROUP_TYPE = GroupOfNamesType()
    settings.AUTH_LDAP_USER_ATTR_MAP = {"email": "mail"}
    settings.AUTHENTICATION_BACKENDS = LDAP_BACKENDS
    # One group by its short name, one by its full DN (PegaProx #940: both must match).
    settings.FERRY_SSO_GROUP_ROLES = {
        "site-a-planners": "planner@site-a",
        f"cn=approvers,ou=groups,{SUFFIX}": ["approver", "viewer"],
    }
    lena = ldap_directory.person("lena", "lena-pw-1", "lena@example.org")
    ldap_directory.person("max", "max-pw-1", "max@example.org")
    ldap_directory.group("site-a-planners", [lena])
    ldap_directory.group("approvers", [lena])
    return ldap_directory


def test_it_signs_in_with_ldap_and_maps_groups_to_roles(directory):
    user = authenticate(None, username="lena", password="lena-pw-1")
    assert user is not None
    assert user_roles_get(user) == {
        "approver": "all",
        "planner": ["site-a"],
        "viewer": "all",
    }
    assert user.identity.source == "ldap"
    assert user.identity.subject == f"uid=lena,ou=people,{SUFFIX}"
    assert user.identity.email_verified and user.email == "lena@example.org"
    event = AuditEvent.objects.filter(action="user.roles_set").latest("sequence")
    assert event.actor_name == "sso-ldap" and event.after["source"] == "ldap"
    assert authenticate(None, username="lena", password="wrong") is None
    # A directory account in no mapped group signs in with no role at all.
    assert user_roles_get(authenticate(None, username="max", password="max-pw-1")) == {}


def test_it_removes_a_role_at_the_next_login_when_the_group_is_removed(directory):
    user = authenticate(None, username="lena", password="lena-pw-1")
    assert "planner" in user_roles_get(user)
    directory.modify(
        f"""
        dn: cn=site-a-planners,ou=groups,{SUFFIX}
        changetype: modify
        replace: member
        member: uid=max,ou=people,{SUFFIX}
        """
    )
    again = authenticate(None, username="lena", password="lena-pw-1")
    assert again.pk == user.pk
    assert user_roles_get(again) == {"approver": "all", "viewer": "all"}
    assert user_roles_get(authenticate(None, username="max", password="max-pw-1")) == {
        "planner": ["site-a"]
    }


def test_it_signs_in_through_the_login_page_with_local_accounts_switched_off(
    directory, settings, make_user
):
    settings.FERRY_LOCAL_LOGIN = False
    make_user("local-lou")  # password "pw-local-lou"
    page = Client()
    refused = page.post("/login/", {"username": "local-lou", "password": "pw-local-lou"})
    assert refused.status_code == 200 and "_auth_user_id" not in page.session
    answer = page.post("/login/", {"username": "lena", "password": "lena-pw-1"})
    assert answer.status_code == 302, answer.content[:500]
    assert page.get("/").status_code == 200
