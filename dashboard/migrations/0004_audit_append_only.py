"""On PostgreSQL, make dashboard_auditevent append-only with triggers.

UPDATE and DELETE are always refused. TRUNCATE is refused unless the transaction set
`ferry.audit_maintenance = 'on'` (SET LOCAL): the one escape hatch, used only by the test
suite's flush between transactional tests (tests/conftest.py). A superuser can still drop
or disable the triggers; tamper evidence ultimately comes from the hash chain and
`manage.py audit_verify`. SQLite has no equivalent that a file owner cannot bypass, so
nothing is installed there.
"""

from django.db import migrations

INSTALL = """
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
DROP TRIGGER IF EXISTS ferry_audit_no_update_delete ON dashboard_auditevent;
CREATE TRIGGER ferry_audit_no_update_delete
    BEFORE UPDATE OR DELETE ON dashboard_auditevent
    FOR EACH ROW EXECUTE FUNCTION ferry_audit_append_only();
DROP TRIGGER IF EXISTS ferry_audit_no_truncate ON dashboard_auditevent;
CREATE TRIGGER ferry_audit_no_truncate
    BEFORE TRUNCATE ON dashboard_auditevent
    FOR EACH STATEMENT EXECUTE FUNCTION ferry_audit_append_only();
"""

REMOVE = """
DROP TRIGGER IF EXISTS ferry_audit_no_update_delete ON dashboard_auditevent;
DROP TRIGGER IF EXISTS ferry_audit_no_truncate ON dashboard_auditevent;
DROP FUNCTION IF EXISTS ferry_audit_append_only();
"""


def _run(schema_editor, sql):
    # A cursor without parameters, so the '%' of RAISE is not taken for a placeholder.
    if schema_editor.connection.vendor == "postgresql":
        with schema_editor.connection.cursor() as cursor:
            cursor.execute(sql)


def install(apps, schema_editor):
    _run(schema_editor, INSTALL)


def remove(apps, schema_editor):
    _run(schema_editor, REMOVE)


class Migration(migrations.Migration):
    dependencies = [("dashboard", "0003_sharelinks_notifications_login_throttle")]
    operations = [migrations.RunPython(install, remove)]
