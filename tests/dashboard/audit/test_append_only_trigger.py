"""On PostgreSQL the audit table refuses UPDATE, DELETE and TRUNCATE."""

import os

import pytest
from django.db import DatabaseError, connection, transaction

from dashboard.audit.models import AuditEvent
from dashboard.audit.record import Actor, audit_record

pytestmark = [pytest.mark.django_db, pytest.mark.postgres]


@pytest.fixture(autouse=True)
def _postgresql_only():
    if connection.vendor != "postgresql":
        if os.environ.get("CI"):
            pytest.fail("CI runs on PostgreSQL: the append-only trigger must be tested there")
        pytest.skip("the append-only trigger exists only on PostgreSQL (set DATABASE_URL)")


def _event():
    return audit_record(actor=Actor.system(), action="test.event", object_type="thing")


@pytest.mark.parametrize(
    "sql",
    [
        "UPDATE dashboard_auditevent SET actor_name = 'mallory'",
        "DELETE FROM dashboard_auditevent",
        "TRUNCATE dashboard_auditevent",
    ],
)
def test_it_refuses_changes_to_recorded_events(sql):
    _event()
    with (
        pytest.raises(DatabaseError, match="append-only"),
        transaction.atomic(),
        connection.cursor() as cursor,
    ):
        cursor.execute(sql)
    assert AuditEvent.objects.get().actor_name == "system"


def test_it_refuses_changes_through_the_orm_too():
    event = _event()
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        AuditEvent.objects.filter(pk=event.pk).update(reason="edited")
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        event.delete()


def test_it_refuses_truncate_even_with_the_old_maintenance_setting():
    # Migration 0004 had a hatch: any role could SET LOCAL ferry.audit_maintenance and
    # TRUNCATE. 0006 removed it (security review M3).
    _event()
    with (
        pytest.raises(DatabaseError, match="append-only"),
        transaction.atomic(),
        connection.cursor() as cursor,
    ):
        cursor.execute("SET LOCAL ferry.audit_maintenance = 'on'")
        cursor.execute("TRUNCATE dashboard_auditevent")
    assert AuditEvent.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_it_still_lets_the_test_suite_flush_between_transactional_tests():
    # This test's own teardown is the check: a flush TRUNCATEs the audit table.
    _event()
    assert AuditEvent.objects.count() == 1
