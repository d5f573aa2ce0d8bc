"""Shared fixtures: users in each role, a validated plan, API clients, and the rule that CI
never skips."""

import os
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from rest_framework.test import APIClient

from tests.factories import plan_make, plan_validate_stub

REPO = Path(__file__).resolve().parent.parent
DEMO_NODES = REPO / "inventory" / "demo" / "nodes"
IN_CI = bool(os.environ.get("CI"))


def skip_or_fail(reason: str):
    """Outside CI a missing service skips the test with the reason; in CI it fails loudly."""
    if IN_CI:
        pytest.fail(f"required for CI but unavailable: {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session", autouse=True)
def _demo_server_environment(tmp_path_factory):
    """The suite runs Ferry as a demo server: libvirt's test driver is allowed for the demo
    nodes and for node files tests write under pytest's temporary directory. The
    environment carries it to the servers and workers tests start as processes."""
    base = tmp_path_factory.getbasetemp()
    dirs = os.pathsep.join([str(DEMO_NODES), str(base)])
    keys = ("FERRY_DEMO", "FERRY_DEMO_NODES", "FERRY_AUDIT_ANCHOR_DIR")
    saved = {k: os.environ.get(k) for k in keys}
    os.environ.update(
        {
            "FERRY_DEMO": "true",
            "FERRY_DEMO_NODES": dirs,
            # Servers the tests start anchor the audit head here, not in the repo's var/.
            "FERRY_AUDIT_ANCHOR_DIR": str(base / "audit-anchors-servers"),
        }
    )
    yield dirs.split(os.pathsep)
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(autouse=True)
def _demo_server(settings, _demo_server_environment, tmp_path_factory):
    settings.FERRY_DEMO = True
    settings.FERRY_DEMO_NODES = list(_demo_server_environment)[:2]
    # Each test's audit anchors are its own (the database is new for each test as well).
    settings.FERRY_AUDIT_ANCHOR_DIR = str(tmp_path_factory.mktemp("audit-anchors"))


@pytest.fixture(autouse=True)
def _fast_passwords(settings):
    # Several users per test: the production hasher would dominate the run time.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def make_user(db):
    def _make(username: str, *roles: str, superuser: bool = False):
        User = get_user_model()
        if superuser:
            user = User.objects.create_superuser(username, "", "pw-" + username)
        else:
            user = User.objects.create_user(username, "", "pw-" + username)
        for role in roles:
            user.groups.add(Group.objects.get_or_create(name=role)[0])
        return user

    return _make


@pytest.fixture
def people(make_user):
    """One user per role, plus a second approver and an admin."""
    return {
        "planner": make_user("pat", "planner"),
        "approver": make_user("ann", "approver"),
        "approver2": make_user("abe", "approver"),
        "operator": make_user("oli", "operator"),
        "viewer": make_user("vic", "viewer"),
        "auditor": make_user("aud", "auditor"),
        "admin": make_user("ada", "admin"),
    }


@pytest.fixture
def validated_plan(people):
    """A draft plan by the planner with a passing validation of its current content."""
    plan = plan_make(people["planner"])
    plan_validate_stub(plan)
    return plan


@pytest.fixture
def api_as(make_user):
    """An APIClient signed in with a fresh user holding the given roles."""

    def _client(*roles: str, username: str | None = None):
        user = make_user(username or ("u-" + "-".join(roles or ("none",))), *roles)
        client = APIClient()
        client.force_authenticate(user)
        client.user = user
        return client

    return _client


@pytest.fixture
def demo_uri():
    def _uri(name: str) -> str:
        return f"test://{DEMO_NODES / (name + '.xml')}"

    return _uri


def _allow_audit_truncate_in_test_flushes():
    """The test suite's way through the audit trail's append-only trigger.

    Transactional tests end with a flush, which on PostgreSQL is one TRUNCATE of every
    table; the trigger (dashboard migrations 0004, 0006) refuses TRUNCATE of the audit
    table from anyone. The suite connects as the test database's owner, the one role that
    may disable a trigger (Ferry's runtime role may not: tests/security/test_audit_roles.py),
    so a flush disables the TRUNCATE trigger for its own transaction and enables it again.
    """
    from django.db.backends.postgresql.operations import DatabaseOperations

    original = DatabaseOperations.sql_flush
    if getattr(original, "ferry_patched", False):
        return

    def sql_flush(self, style, tables, *, reset_sequences=False, allow_cascade=False):
        statements = original(
            self, style, tables, reset_sequences=reset_sequences, allow_cascade=allow_cascade
        )
        if statements and "dashboard_auditevent" in tables:
            trigger = "ALTER TABLE dashboard_auditevent {} TRIGGER ferry_audit_no_truncate"
            statements = [trigger.format("DISABLE"), *statements, trigger.format("ENABLE")]
        return statements

    sql_flush.ferry_patched = True
    DatabaseOperations.sql_flush = sql_flush


_allow_audit_truncate_in_test_flushes()
