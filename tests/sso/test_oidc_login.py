"""OpenID Connect sign-in through the real login redirect: a Ferry server (Daphne, its own
process) and django-oidc-provider (a second Django process), both on loopback. The HTTP
tests follow every redirect as a browser does (Ferry → provider login → provider authorize
→ Ferry callback, which fetches the token, the signed ID token's keys and userinfo from
the provider); the `browser` test does the same in Chromium."""

import json
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from dashboard.accounts.roles import user_roles_get
from dashboard.audit.models import AuditEvent
from tests.browser.conftest import FerryServer, screenshot
from tests.factories import plan_make, plan_validate_stub

CLIENT_ID = "ferry-test"
CLIENT_SECRET = "ferry-test-secret"  # noqa: S105 - a throwaway test client
GROUP_ROLES = {"ferry-approvers": "approver", "site-a-planners": ["planner@site-a", "viewer"]}


@pytest.fixture
def ferry_sso(oidc_provider, transactional_db):
    server = FerryServer(
        workers=0,
        redis=False,
        extra_env={
            **oidc_provider.ferry_env(CLIENT_ID, CLIENT_SECRET),
            "FERRY_SSO_GROUP_ROLES": json.dumps(GROUP_ROLES),
            "FERRY_LOCAL_LOGIN": "false",
        },
    )
    oidc_provider.client(CLIENT_ID, CLIENT_SECRET, f"{server.url}/oidc/callback/")
    server.start()
    yield server
    server.stop()


def sso_login(server, provider, username: str, password: str) -> httpx.Client:
    """Sign in as a browser would: start at Ferry, sign in at the provider, come back."""
    browser = httpx.Client(follow_redirects=True, timeout=60)
    page = browser.get(f"{server.url}/oidc/authenticate/")
    assert str(page.url).startswith(f"{provider.url}/accounts/login/"), page.url
    following = parse_qs(urlsplit(str(page.url)).query)["next"][0]
    assert following.startswith("/openid/authorize")
    answer = browser.post(
        str(page.url),
        data={
            "username": username,
            "password": password,
            "next": following,
            "csrfmiddlewaretoken": browser.cookies["op_csrftoken"],
        },
    )
    assert answer.status_code == 200, answer.text[:500]
    assert str(answer.url).rstrip("/") == server.url, f"ended at {answer.url}"
    return browser


def _user(username):
    from django.contrib.auth import get_user_model

    return get_user_model().objects.get(username=username)


def test_it_signs_in_through_the_provider_and_maps_the_groups_claim(ferry_sso, oidc_provider):
    oidc_provider.user("olga", "olga-pw-1", "olga@example.org", ["site-a-planners", "other"])
    browser = sso_login(ferry_sso, oidc_provider, "olga", "olga-pw-1")
    olga = _user("olga")
    assert olga.identity.source == "oidc" and olga.identity.email_verified
    assert user_roles_get(olga) == {"planner": ["site-a"], "viewer": "all"}
    assert browser.get(f"{ferry_sso.url}/api/v1/hosts/").status_code == 200
    event = AuditEvent.objects.filter(action="user.roles_set").latest("sequence")
    assert event.actor_name == "sso-oidc" and event.after["roles"]["planner"] == ["site-a"]
    # The IdP admin moves olga from the planners to the approvers: at the next login the
    # planner role is gone and approver is there.
    oidc_provider.user("olga", "olga-pw-1", "olga@example.org", ["ferry-approvers"])
    sso_login(ferry_sso, oidc_provider, "olga", "olga-pw-1")
    assert user_roles_get(_user("olga")) == {"approver": "all"}
    # Local accounts are switched off on this server: a password login signs nobody in.
    local = httpx.Client(timeout=30)
    form = local.get(f"{ferry_sso.url}/login/")
    assert 'name="password"' not in form.text and 'id="sso-login"' in form.text


def test_it_refuses_the_idp_account_of_the_plans_author_as_a_second_person(
    ferry_sso, oidc_provider, make_user
):
    pat = make_user("pat", "planner")
    pat.email = "pat@example.org"
    pat.save()
    plan = plan_make(pat)
    plan_validate_stub(plan)
    from migrations_app.workflow.services import plan_submit

    plan_submit(plan=plan, actor=pat)
    oidc_provider.user("pat-idp", "pat-pw-1", "pat@example.org", ["ferry-approvers"])
    browser = sso_login(ferry_sso, oidc_provider, "pat-idp", "pat-pw-1")
    assert user_roles_get(_user("pat-idp")) == {"approver": "all"}
    browser.get(f"{ferry_sso.url}/plans/{plan.pk}/")  # sets Ferry's CSRF cookie
    answer = browser.post(
        f"{ferry_sso.url}/api/v1/plans/{plan.pk}/approve/",
        json={},
        headers={"X-CSRFToken": browser.cookies["csrftoken"], "Referer": ferry_sso.url},
    )
    assert answer.status_code == 403, answer.text
    assert "another account of yours" in answer.text
    plan.refresh_from_db()
    assert plan.status == "submitted"


@pytest.mark.browser
def test_it_signs_in_with_single_sign_on_in_a_browser(ferry_sso, oidc_provider, new_page):
    oidc_provider.user("bea", "bea-pw-1", "bea@example.org", ["site-a-planners"])
    page = new_page()
    page.goto(f"{ferry_sso.url}/login/")
    page.click("#sso-login")
    page.wait_for_url(lambda url: url.startswith(oidc_provider.url))
    page.fill("#op-username", "bea")
    page.fill("#op-password", "bea-pw-1")
    page.click("#op-submit")
    page.wait_for_url(lambda url: url.rstrip("/") == ferry_sso.url)
    screenshot(page, "sso-signed-in")
    assert user_roles_get(_user("bea")) == {"planner": ["site-a"], "viewer": "all"}
