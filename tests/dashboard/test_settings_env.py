"""Settings helpers parse strictly and say what is wrong."""

import pytest
from django.core.exceptions import ImproperlyConfigured

from dashboard.env import env_bool, env_choice, env_int, env_list


def test_it_parses_booleans_strictly(monkeypatch):
    monkeypatch.setenv("X", "yes")
    assert env_bool("X", False) is True
    monkeypatch.setenv("X", "0")
    assert env_bool("X", True) is False
    monkeypatch.setenv("X", "maybe")
    with pytest.raises(ImproperlyConfigured, match="not a boolean"):
        env_bool("X", False)


def test_it_parses_integers_lists_and_choices(monkeypatch):
    monkeypatch.setenv("N", "12")
    assert env_int("N", 1) == 12
    monkeypatch.setenv("N", "twelve")
    with pytest.raises(ImproperlyConfigured, match="not an integer"):
        env_int("N", 1)
    monkeypatch.setenv("N", "0")
    with pytest.raises(ImproperlyConfigured, match="below the minimum"):
        env_int("N", 1, minimum=1)
    monkeypatch.setenv("L", "a, b,,c")
    assert env_list("L", []) == ["a", "b", "c"]
    monkeypatch.setenv("C", "rq")
    assert env_choice("C", "db", ("db", "rq")) == "rq"
    monkeypatch.setenv("C", "celery")
    with pytest.raises(ImproperlyConfigured, match="must be one of"):
        env_choice("C", "db", ("db", "rq"))
