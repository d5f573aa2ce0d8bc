"""A1: measure `audit_verify` on a large trail: bulk-load N chained events, then verify them.

    .venv/bin/python bench/audit_verify.py 1000000            # SQLite file in a temp dir
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/ferry_bench \\
        .venv/bin/python bench/audit_verify.py 1000000

It refuses to run against a database that already holds audit events (it would add to a
real trail); give it an empty scratch database. The temporary SQLite directory is removed
at exit (a million events take ~650 MB).
"""

import atexit
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dashboard.settings")
if not os.environ.get("DATABASE_URL"):
    scratch = tempfile.mkdtemp(prefix="ferry-bench-")
    os.environ["FERRY_DATA_DIR"] = scratch
    atexit.register(shutil.rmtree, scratch, ignore_errors=True)

# The figure the issue asks for: a million events, verified well within a minute.
TARGET_SECONDS_PER_MILLION = 60.0


def main(count: int) -> None:
    import django
    from django.core.management import call_command

    django.setup()
    from common import report
    from django.db import connection

    from dashboard.audit.bulk import audit_bulk_append
    from dashboard.audit.models import AuditEvent
    from dashboard.audit.verify import audit_chain_verify

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
    if not result.ok:
        raise SystemExit(f"the freshly loaded chain does not verify: {result.problem}")
    per_million = result.seconds * 1_000_000 / max(result.checked, 1)
    report(
        f"audit_verify of {count:,} events ({connection.vendor})",
        round(result.seconds, 1),
        "s",
        target=f"< {TARGET_SECONDS_PER_MILLION:.0f} s per 1,000,000",
        met=per_million < TARGET_SECONDS_PER_MILLION,
        notes=f"{result.checked / max(result.seconds, 1e-9):,.0f} events/s; bulk load {load:.0f} s",
    )


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000)
