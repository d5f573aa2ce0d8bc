"""M3 (security review): on PostgreSQL, Ferry's runtime role may append to the audit trail
and read it, and nothing more: it cannot update, delete, truncate, or disable the
append-only trigger (it does not own the table; the migration role does).

The role is created inside the test's transaction (rolled back with it) and the grants are
the ones `manage.py ferry_migrate` applies.
"""

import os
import uuid

import pytest
from django.core.management import call_command
from django.db import DatabaseError, connection, transaction

from dashboard.audit.models import AuditEvent
from dashboard.audit.record import Actor, audit_record

pytestmark = pytest.mark.django_db


@pytest.fixture
def runtime_role():
    if connection.vendor != "postgresql":
        if os.environ.get("CI"):
            pytest.fail("CI runs on PostgreSQL: the runtime role must be tested there")
        pytest.skip("database roles exist only on PostgreSQL (set DATABASE_URL)")
    role = f"ferry_rt_{uuid.uuid4().hex[:8]}"
    with connection.cursor() as cursor:
        cursor.execute(f'CREATE ROLE "{role}" NOLOGIN')
    call_command("ferry_migrate", "--grants-only", "--runtime-role", role)
    return role


def _as(role, sql):
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(f'SET LOCAL ROLE "{role}"')
        cursor.execute(sql)


@pytest.mark.parametrize(
    "sql",
    [
        "UPDATE dashboard_auditevent SET actor_name = 'mallory'",
        "DELETE FROM dashboard_auditevent",
        "TRUNCATE dashboard_auditevent",
        "ALTER TABLE dashboard_auditevent DISABLE TRIGGER ferry_audit_no_update_delete",
        "ALTER TABLE dashboard_auditevent DISABLE TRIGGER ALL",
        "DROP TRIGGER ferry_audit_no_truncate ON dashboard_auditevent",
        "SET LOCAL ferry.audit_maintenance = 'on'; TRUNCATE dashboard_auditevent",
        "CREATE OR REPLACE FUNCTION ferry_audit_append_only() RETURNS trigger "
        "LANGUAGE plpgsql AS $$ BEGIN RETURN NULL; END; $$",
        "ALTER TABLE dashboard_auditevent OWNER TO CURRENT_USER",
    ],
)
def test_it_refuses_the_runtime_role_every_way_to_change_the_trail(runtime_role, sql):
    audit_record(actor=Actor.system(), action="test.event", object_type="thing")
    with pytest.raises(DatabaseError):
        _as(runtime_role, sql)
    assert AuditEvent.objects.get().actor_name == "system"


def test_it_lets_the_runtime_role_append_and_read(runtime_role):
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(f'SET LOCAL ROLE "{runtime_role}"')
        audit_record(actor=Actor.system(), action="test.event", object_type="thing")
        audit_record(actor=Actor.system(), action="test.event", object_type="thing")
        assert AuditEvent.objects.count() == 2
        cursor.execute("SELECT has_table_privilege(current_user, 'dashboard_auditevent', 'UPDATE')")
        assert cursor.fetchone()[0] is False
