"""Fixtures of the reliability suite."""

import pytest


@pytest.fixture
def _fast_passwords():
    """Keep the production hasher: a real server subprocess checks these users' passwords
    with its own settings, which do not accept the fast test hasher."""
