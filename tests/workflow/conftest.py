"""Fixtures of the workflow tests: people in each role and a validated draft plan."""

import pytest

from tests.workflow.factories import plan_make, plan_validate_stub


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


@pytest.fixture(autouse=True)
def _fast_passwords(settings):
    # Several users per test: the production hasher would dominate the run time.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def api_urls(settings):
    """Use the real /api/v1/plans/ when PlanViewSet is registered, else a stand-in."""
    from migrations_app.api.urls import router

    if not any(prefix == "plans" for prefix, *_ in router.registry):
        settings.ROOT_URLCONF = "tests.workflow.urls_fallback"
