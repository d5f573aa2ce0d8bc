"""L3 (security review): the lockout could keep an account locked forever with one request
per lock period, a burst of parallel guesses all passed the lock check, and every failure
for any typed name wrote a permanent audit row. Now failures decay when a lock ends, each
attempt is counted before its password is checked, unknown names are audited only when they
lock, and one address has a soft limit of its own.
"""

import threading
from datetime import timedelta

import pytest
from django.contrib.auth import authenticate
from django.contrib.auth.backends import ModelBackend
from django.db import connection
from django.test import Client
from django.utils import timezone

from dashboard.accounts.lockout import login_attempt_begin
from dashboard.accounts.models import LoginThrottle
from dashboard.audit.models import AuditEvent


def _login(username, password, address="127.0.0.1"):
    return Client().post(
        "/login/", {"username": username, "password": password}, REMOTE_ADDR=address
    )


@pytest.mark.django_db
def test_it_lets_failures_decay_when_a_lock_ends(make_user, settings):
    settings.FERRY_LOGIN_MAX_FAILURES = 3
    make_user("erin", "viewer")
    for _ in range(3):
        _login("erin", "guess")
    assert "locked" in _login("erin", "pw-erin").content.decode()
    # The lock ends. One more wrong guess must not lock the account again at once.
    LoginThrottle.objects.filter(username="erin").update(
        locked_until=timezone.now() - timedelta(seconds=1)
    )
    _login("erin", "guess-after-the-lock")
    assert LoginThrottle.objects.get(username="erin").locked_until is None
    assert _login("erin", "pw-erin").status_code == 302


@pytest.mark.django_db
def test_it_counts_each_attempt_before_checking_its_password(settings):
    settings.FERRY_LOGIN_MAX_FAILURES = 3
    # Attempts that started together, none finished yet: only three may check a password.
    answers = [login_attempt_begin(username="frank", address=f"10.0.0.{n}") for n in range(8)]
    assert answers.count("") == 3 and answers.count("account") == 5


@pytest.mark.django_db(transaction=True)
def test_it_checks_at_most_the_limit_of_passwords_under_a_parallel_burst(
    make_user, settings, monkeypatch
):
    if connection.vendor != "postgresql":
        pytest.skip("concurrent writers need PostgreSQL (SQLite serializes them anyway)")
    settings.FERRY_LOGIN_MAX_FAILURES = 3
    make_user("gina", "viewer")
    checked = []
    real = ModelBackend.authenticate

    def counting(self, request, username=None, password=None, **kwargs):
        checked.append(username)
        return real(self, request, username=username, password=password, **kwargs)

    monkeypatch.setattr(ModelBackend, "authenticate", counting)
    start = threading.Barrier(10)

    def guess(n):
        start.wait()
        try:
            authenticate(None, username="gina", password=f"guess-{n}")
        finally:
            connection.close()

    threads = [threading.Thread(target=guess, args=(n,)) for n in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(checked) <= 3, checked


@pytest.mark.django_db
def test_it_does_not_write_an_audit_row_per_failure_for_unknown_names(settings):
    settings.FERRY_LOGIN_MAX_FAILURES = 5
    for n in range(20):
        _login(f"ghost-{n}", "x", address=f"10.1.0.{n}")
    assert not AuditEvent.objects.filter(action="auth.login_failed").exists()
    for _ in range(5):
        _login("ghost-x", "x", address="10.2.0.1")
    assert AuditEvent.objects.filter(action="auth.login_locked").count() == 1


@pytest.mark.django_db
def test_it_softly_limits_one_address_without_locking_accounts_elsewhere(make_user, settings):
    settings.FERRY_LOGIN_MAX_FAILURES_PER_ADDRESS = 4
    make_user("hank", "viewer")
    for n in range(4):
        _login(f"user-{n}", "x", address="203.0.113.9")
    answer = _login("hank", "pw-hank", address="203.0.113.9")
    assert answer.status_code == 200 and "from your address" in answer.content.decode()
    assert _login("hank", "pw-hank", address="198.51.100.1").status_code == 302
