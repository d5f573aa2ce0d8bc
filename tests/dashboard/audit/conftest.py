"""Fixtures of the audit tests."""

import pytest
from django.db import connection


def tamper(sql: str, params=()) -> None:
    """Run raw SQL against the audit table as a superuser would: triggers disabled first."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("ALTER TABLE dashboard_auditevent DISABLE TRIGGER USER")
        cursor.execute(sql, params)
        if connection.vendor == "postgresql":
            cursor.execute("ALTER TABLE dashboard_auditevent ENABLE TRIGGER USER")


@pytest.fixture
def chain(db):
    """Ten chained events from services-like calls."""
    from dashboard.audit.record import Actor, audit_record

    for n in range(10):
        audit_record(
            actor=Actor.worker("w"),
            action="test.step",
            object_type="thing",
            object_id=str(n),
            before={"n": n},
            after={"n": n + 1, "nested": {"b": [1, 2.5, None], "a": "é"}},
        )
