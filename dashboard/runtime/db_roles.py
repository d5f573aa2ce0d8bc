"""The runtime role's privileges on PostgreSQL (security review M3).

Ferry runs with two database roles: an owner that runs the migrations (and so owns the
tables, and alone may disable their triggers), and the runtime role of DATABASE_URL that
the web and worker processes use. The runtime role may read and write Ferry's tables, but
on the audit table only SELECT and INSERT: it cannot UPDATE, DELETE, TRUNCATE, or disable
the append-only trigger (it is not the owner). `manage.py ferry_migrate` applies these
grants after every migration.
"""

AUDIT_TABLE = "dashboard_auditevent"


def runtime_grants_sql(role: str, quote) -> list[str]:
    """The statements that give `role` the runtime privileges (`quote` quotes a name)."""
    who = quote(role)
    audit = quote(AUDIT_TABLE)
    return [
        f"GRANT USAGE ON SCHEMA public TO {who}",
        f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {who}",
        f"REVOKE UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER ON {audit} FROM {who}",
        f"REVOKE TRUNCATE, TRIGGER, REFERENCES ON ALL TABLES IN SCHEMA public FROM {who}",
        f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {who}",
    ]


def runtime_grants_apply(connection, role: str) -> None:
    """Apply the runtime grants for `role` on `connection` (run as the owner)."""
    with connection.cursor() as cursor:
        for statement in runtime_grants_sql(role, connection.ops.quote_name):
            cursor.execute(statement)
