"""Login audit, per-account lockout, logout everywhere, API tokens."""

import pytest
from django.contrib.sessions.models import Session
from django.test import Client
from knox.models import AuthToken
from rest_framework.test import APIClient

from dashboard.accounts.tokens import user_logout_everywhere
from dashboard.audit.models import AuditEvent

pytestmark = pytest.mark.django_db


def _login(username, password, address="127.0.0.1", forwarded=None):
    extra = {"REMOTE_ADDR": address}
    if forwarded:
        extra["HTTP_X_FORWARDED_FOR"] = forwarded
    return Client().post("/login/", {"username": username, "password": password}, **extra)


def test_it_audits_login_success_and_failure(make_user):
    make_user("alice", "viewer")
    assert _login("alice", "wrong").status_code == 200
    assert _login("alice", "pw-alice").status_code == 302
    failed = AuditEvent.objects.get(action="auth.login_failed")
    assert failed.actor_name == "alice" and failed.after["failures"] == 1
    assert "wrong" not in str(failed.after)
    ok = AuditEvent.objects.get(action="auth.login")
    assert ok.actor_name == "alice" and ok.source_address == "127.0.0.1"


def test_it_locks_the_account_after_repeated_failures_from_rotating_addresses(make_user, settings):
    settings.FERRY_LOGIN_MAX_FAILURES = 3
    make_user("bob", "viewer")
    for n in range(3):
        _login("bob", "guess", address=f"10.0.0.{n}", forwarded=f"192.0.2.{n}")
    answer = _login("bob", "pw-bob", address="10.9.9.9", forwarded="198.51.100.7")
    assert answer.status_code == 200 and "locked" in answer.content.decode()
    assert AuditEvent.objects.filter(action="auth.login_locked").count() == 1
    assert not AuditEvent.objects.filter(action="auth.login").exists()


def test_it_locks_unknown_usernames_the_same_way(db, settings):
    settings.FERRY_LOGIN_MAX_FAILURES = 2
    for _ in range(2):
        _login("nobody", "x")
    assert "locked" in _login("nobody", "x").content.decode()


def test_it_resets_the_count_after_a_successful_login(make_user, settings):
    settings.FERRY_LOGIN_MAX_FAILURES = 3
    make_user("carol", "viewer")
    _login("carol", "x")
    _login("carol", "x")
    assert _login("carol", "pw-carol").status_code == 302
    _login("carol", "x")
    _login("carol", "x")
    assert _login("carol", "pw-carol").status_code == 302


def test_it_ends_every_session_and_the_token_when_logging_out_everywhere(make_user):
    dave = make_user("dave", "viewer")
    admin = make_user("root", "admin")
    first, second = Client(), Client()
    first.force_login(dave)
    second.force_login(dave)
    other = Client()
    other.force_login(admin)
    AuthToken.objects.create(user=dave)
    assert first.get("/").status_code == 200
    assert user_logout_everywhere(actor=admin, user=dave) == 2
    assert first.get("/").status_code == 302 and second.get("/").status_code == 302
    assert other.get("/").status_code == 200
    assert not AuthToken.objects.filter(user=dave).exists()
    assert Session.objects.count() == 1
    assert AuditEvent.objects.get(action="auth.logout_everywhere").actor_name == "root"


def test_it_gives_each_user_a_rotatable_api_token(make_user):
    erin = make_user("erin", "viewer")
    client = APIClient()
    client.force_authenticate(erin)
    assert client.get("/api/v1/auth/token/").json()["exists"] is False
    key = client.post("/api/v1/auth/token/").json()["key"]
    by_token = APIClient()
    by_token.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    assert by_token.get("/api/v1/hosts/").status_code == 200
    newer = client.post("/api/v1/auth/token/").json()["key"]
    assert newer != key and by_token.get("/api/v1/hosts/").status_code in (401, 403)
    assert client.delete("/api/v1/auth/token/").status_code == 204
    assert not AuthToken.objects.filter(user=erin).exists()


def test_it_offers_logout_everywhere_in_the_user_admin(make_user):
    root = make_user("root", superuser=True)
    victim = make_user("frank", "viewer")
    session = Client()
    session.force_login(victim)
    admin = Client()
    admin.force_login(root)
    answer = admin.post(
        "/admin/auth/user/",
        {"action": "logout_everywhere", "_selected_action": [victim.pk]},
        follow=True,
    )
    assert answer.status_code == 200 and "session(s) ended" in answer.content.decode()
    assert session.get("/").status_code == 302
