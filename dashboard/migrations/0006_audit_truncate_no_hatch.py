"""The audit table's TRUNCATE escape hatch is gone (security review M3).

Migration 0004 let any role TRUNCATE the audit table after `SET LOCAL
ferry.audit_maintenance = 'on'` (any role may set a custom setting). Now the trigger refuses
TRUNCATE, UPDATE and DELETE whoever asks; only the table's owner (the migration role, not
Ferry's runtime role, see docs/deployment.md) can disable the trigger, and the test suite's
flush does exactly that as the test database's owner (tests/conftest.py).
"""

import importlib

from django.db import migrations

INSTALL = """
CREATE OR REPLACE FUNCTION ferry_audit_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the audit trail is append-only: % on % refused', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege';
END;
$$;
"""

# Back to 0004's function, hatch included.
REMOVE = """
CREATE OR REPLACE FUNCTION ferry_audit_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'TRUNCATE' AND current_setting('ferry.audit_maintenance', true) = 'on' THEN
        RETURN NULL;
    END IF;
    RAISE EXCEPTION 'the audit trail is append-only: % on % refused', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege';
END;
$$;
"""


# 0004's helper (PostgreSQL only, a cursor without parameters for RAISE's '%').
_run = importlib.import_module("dashboard.migrations.0004_audit_append_only")._run


def install(apps, schema_editor):
    _run(schema_editor, INSTALL)


def remove(apps, schema_editor):
    _run(schema_editor, REMOVE)


class Migration(migrations.Migration):
    dependencies = [("dashboard", "0005_move_plan_features")]
    operations = [migrations.RunPython(install, remove)]
