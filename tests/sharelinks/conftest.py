"""Fixtures of the status link tests (people and plans come from the workflow tests)."""

from tests.workflow.conftest import (  # noqa: F401
    _fast_passwords,
    api_urls,
    people,
    validated_plan,
)
