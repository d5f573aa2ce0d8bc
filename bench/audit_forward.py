"""F1: audit forwarding to a real rsyslogd over TLS: per-event latency (recorded → written
by rsyslog) while events are recorded one by one, and how fast a backlog drains (the
outbox after a receiver outage).

    .venv/bin/python bench/audit_forward.py [--events 300] [--backlog 5000]

Uses a scratch SQLite database (or DATABASE_URL, which must have no audit events) and
rsyslogd from Debian (scripts/system-deps.sh --test), started like the tests start it.
"""

import argparse
import atexit
import os
import shutil
import statistics
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dashboard.settings")
if not os.environ.get("DATABASE_URL"):
    scratch = tempfile.mkdtemp(prefix="ferry-bench-")
    os.environ["FERRY_DATA_DIR"] = scratch
    atexit.register(shutil.rmtree, scratch, ignore_errors=True)

TARGET_S = 5.0  # the issue: every event at the receiver within 5 s


def main(events: int, backlog: int) -> None:
    import django
    from django.core.management import call_command

    django.setup()
    import re

    from common import report
    from django.conf import settings

    from dashboard.audit import forward
    from dashboard.audit.bulk import audit_bulk_append
    from dashboard.audit.forward import AuditForwarder
    from dashboard.audit.models import AuditEvent, AuditOutbox
    from dashboard.audit.record import Actor, audit_record
    from tests.dashboard.audit.rsyslog_server import Rsyslog

    call_command("migrate", verbosity=0)
    if AuditEvent.objects.exists():
        raise SystemExit("the database already has audit events: use an empty scratch database")
    base = Path(tempfile.mkdtemp(prefix="ferry-rsyslog-"))
    atexit.register(shutil.rmtree, base, ignore_errors=True)
    server = Rsyslog(base).start()
    atexit.register(server.stop)
    settings.FERRY_AUDIT_SYSLOG_URL = f"tls://127.0.0.1:{server.tls_port}"
    settings.FERRY_AUDIT_SYSLOG_CA_FILE = str(server.tls_dir / "ca.pem")
    forwarder = AuditForwarder().start()
    seq = re.compile(r'seq="(\d+)"')

    def wait_for(count):
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if len(server.lines()) >= count and not AuditOutbox.objects.exists():
                return
            time.sleep(0.01)
        raise SystemExit(f"only {len(server.lines())} of {count} arrived")

    for n in range(events):
        audit_record(actor=Actor.worker("bench"), action="bench.forward", object_id=str(n))
        time.sleep(0.02)
    wait_for(events)
    created = dict(AuditEvent.objects.values_list("sequence", "created_at"))
    latency = sorted(
        (
            datetime.fromisoformat(line.split(" ", 1)[0]) - created[int(seq.search(line)[1])]
        ).total_seconds()
        for line in server.lines()
    )
    p95 = latency[int(len(latency) * 0.95) - 1]
    report("F1 forward latency p50", statistics.median(latency) * 1000, "ms")
    report("F1 forward latency p95", p95 * 1000, "ms")
    report(
        "F1 forward latency max",
        latency[-1] * 1000,
        "ms",
        target=f"< {TARGET_S * 1000:.0f} ms",
        met=latency[-1] < TARGET_S,
        notes=f"{events} events recorded one by one, 20 ms apart, TLS, "
        f"{forward.stats['connects']} connection(s)",
    )

    forwarder.stop()  # a receiver outage as far as Ferry knows: the backlog waits
    audit_bulk_append({"action": "bench.backlog", "object_id": str(n)} for n in range(backlog))
    started = time.monotonic()
    AuditForwarder().start()
    wait_for(events + backlog)
    seconds = time.monotonic() - started
    report(
        "F1 backlog drain",
        backlog / seconds,
        "events/s",
        notes=f"{backlog} waiting events sent in {seconds:.2f} s, in order, over TLS",
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=300)
    parser.add_argument("--backlog", type=int, default=5000)
    args = parser.parse_args()
    main(args.events, args.backlog)
