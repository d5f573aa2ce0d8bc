"""Shared fixtures: users in each role, API clients, and the rule that CI never skips."""

import os
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from rest_framework.test import APIClient

REPO = Path(__file__).resolve().parent.parent
DEMO_NODES = REPO / "inventory" / "demo" / "nodes"
IN_CI = bool(os.environ.get("CI"))


def skip_or_fail(reason: str):
    """Outside CI a missing service skips the test with the reason; in CI it fails loudly."""
    if IN_CI:
        pytest.fail(f"required for CI but unavailable: {reason}", pytrace=False)
    pytest.skip(reason)


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
