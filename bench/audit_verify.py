"""Measure `audit_verify` on a large trail: bulk-load N chained events, then verify them.

    .venv/bin/python bench/audit_verify.py 1000000            # SQLite file in a temp dir
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/ferry_bench \\
        .venv/bin/python bench/audit_verify.py 1000000

It refuses to run against a database that already holds audit events (it would add to a
real trail); give it an empty scratch database. PostgreSQL databases are created fresh by
`manage.py migrate` when they exist and are empty.
"""

import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dashboard.settings")
if not os.environ.get("DATABASE_URL"):
    os.environ["FERRY_DATA_DIR"] = tempfile.mkdtemp(prefix="ferry-bench-")


def main(count: int) -> None:
    import django
    from django.core.management import call_command

    django.setup()
    from django.db import connection

    from dashboard.audit_bulk import audit_bulk_append
    from dashboard.audit_verify import audit_chain_verify
    from dashboard.models import AuditEvent

    call_command("migrate", verbosity=0)
    if AuditEvent.objects.exists():
        raise SystemExit("the database already has audit events: use an empty scratch database")

    def events():
        for n in range(count):
            yield {
                "action": "bench.event",
                "actor_type": "worker",
                "actor_name": "bench",
                "object_type": "migrations_app.migrationplan",
                "object_id": str(n % 1000),
                "object_repr": f"plan {n % 1000}",
                "before": {"status": "running", "n": n},
                "after": {"status": "paused", "n": n},
                "request_id": f"{n:032x}",
                "source_address": "127.0.0.1",
            }

    started = time.perf_counter()
    audit_bulk_append(events())
    load = time.perf_counter() - started
    result = audit_chain_verify()
    print(
        f"{connection.vendor}: loaded {count} events in {load:.1f} s; "
        f"audit_verify checked {result.checked} in {result.seconds:.1f} s "
        f"({result.checked / max(result.seconds, 1e-9):,.0f} events/s), ok={result.ok}"
    )


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000)
