"""Audit forwarding against a real rsyslogd from Debian (tests/dashboard/audit/
rsyslog_server.py): RFC 5424 over TLS (gtls, a CA made by the fixture), over plain TCP and
UDP for a local relay; every event arrives once, in order, although the receiver is
restarted while events are being recorded."""

import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path

import pytest
from django.db import connection

from dashboard.audit import forward
from dashboard.audit.forward import AuditForwarder, syslog_message
from dashboard.audit.models import AuditEvent, AuditOutbox
from dashboard.audit.record import Actor, audit_record
from dashboard.audit.verify import audit_chain_verify
from tests.conftest import skip_or_fail
from tests.dashboard.audit.rsyslog_server import RSYSLOGD, Rsyslog

SEQ = re.compile(r'seq="(\d+)"')
HASH = re.compile(r' hash="([0-9a-f]{64})"')


@pytest.fixture
def rsyslog():
    if not os.path.exists(RSYSLOGD):
        skip_or_fail("rsyslogd is not installed (scripts/system-deps.sh --test)")
    # Not under pytest's 0700 directory: rsyslogd runs as nobody when the tests run as root.
    base = Path(tempfile.mkdtemp(prefix="ferry-rsyslog-"))
    server = Rsyslog(base).start()
    yield server
    server.stop()
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def forward_worker(transactional_db, settings):
    """The forwarding thread as the workers run it (dashboard.runtime / ferry_worker)."""
    settings.FERRY_AUDIT_SYSLOG_POLL_SECONDS = 0.2
    forwarders = []

    def _start(url, **extra):
        settings.FERRY_AUDIT_SYSLOG_URL = url
        for key, value in extra.items():
            setattr(settings, key, value)
        forwarders.append(AuditForwarder().start())

    yield _start
    for forwarder in forwarders:
        forwarder.stop()


def _record(n, *, actor=None, tag="t"):
    for index in range(n):
        audit_record(
            actor=actor or Actor.worker("w"),
            action="test.forward",
            object_type="thing",
            object_id=f"{tag}{index}",
            after={"i": index},
        )


def _wait_for(server, count, *, input_name=None, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        lines = [ln for ln in server.lines() if input_name is None or f" {input_name} " in ln]
        if len(lines) >= count and not AuditOutbox.objects.exists():
            time.sleep(0.3)  # anything extra (a duplicate) would show up now
            return [ln for ln in server.lines() if input_name is None or f" {input_name} " in ln]
        time.sleep(0.05)
    pytest.fail(f"only {len(server.lines())} of {count} events arrived: {server.lines()[-3:]}")


def _latencies(lines):
    created = dict(AuditEvent.objects.values_list("sequence", "created_at"))
    out = []
    for line in lines:
        received = datetime.fromisoformat(line.split(" ", 1)[0])
        out.append((received - created[int(SEQ.search(line).group(1))]).total_seconds())
    return out


def test_it_forwards_every_event_once_in_order_across_a_receiver_restart(
    rsyslog, forward_worker, people
):
    forward_worker(
        f"tls://127.0.0.1:{rsyslog.tls_port}",
        FERRY_AUDIT_SYSLOG_CA_FILE=str(rsyslog.tls_dir / "ca.pem"),
    )
    total, restart_at = 120, 40

    down = {}

    def restart_later():
        try:
            while AuditEvent.objects.count() < restart_at:
                time.sleep(0.01)
        finally:
            connection.close()  # this thread's own connection
        down["from"] = time.monotonic()
        rsyslog.restart()  # SIGTERM, then a new rsyslogd on the same ports
        down["for"] = time.monotonic() - down["from"]

    restarter = threading.Thread(target=restart_later)
    restarter.start()
    for index in range(total):
        _record(1, actor=people["operator"] if index % 2 else None, tag=f"r{index}-")
        time.sleep(0.01)
    restarter.join()
    lines = _wait_for(rsyslog, total, input_name="tls")
    sequences = [int(SEQ.search(line).group(1)) for line in lines]
    expected = list(AuditEvent.objects.order_by("sequence").values_list("sequence", flat=True))
    assert sequences == expected and len(expected) >= total  # each once, in order
    hashes = dict(AuditEvent.objects.values_list("sequence", "hash"))
    assert all(HASH.search(line).group(1) == hashes[seq] for line, seq in zip(lines, sequences))
    assert audit_chain_verify().ok  # forwarding leaves the chain as it was
    operator_lines = [ln for ln in lines if 'actor="oli"' in ln]
    assert operator_lines and all('role="operator"' in ln for ln in operator_lines)
    latency = _latencies(lines)
    steady = latency[: restart_at - 5]
    print(  # figures, not assertions: end to end, recorded → written by rsyslog
        f"\nforwarding latency, recorded → written by rsyslog: before the restart "
        f"median {statistics.median(steady) * 1000:.1f} ms, max {max(steady) * 1000:.1f} ms; "
        f"all {len(latency)} events median {statistics.median(latency) * 1000:.1f} ms, "
        f"max {max(latency) * 1000:.0f} ms; receiver down for {down['for'] * 1000:.0f} ms; "
        f"{forward.stats['connects']} connection(s) in this process"
    )


@pytest.mark.parametrize("scheme", ["tcp", "udp"])
def test_it_forwards_to_a_local_relay_over_plain_tcp_or_udp(rsyslog, forward_worker, scheme):
    port = rsyslog.tcp_port if scheme == "tcp" else rsyslog.udp_port
    forward_worker(f"{scheme}://127.0.0.1:{port}")
    _record(5)
    lines = _wait_for(rsyslog, 5, input_name=scheme)
    assert [int(SEQ.search(line).group(1)) for line in lines] == [1, 2, 3, 4, 5]
    assert all(" test.forward [ferry@32473 " in line for line in lines)


def test_it_writes_the_outbox_row_in_the_audit_transaction_only(db, settings):
    settings.FERRY_AUDIT_SYSLOG_URL = "tcp://127.0.0.1:9"
    _record(2)
    rows = list(AuditOutbox.objects.order_by("sequence"))
    events = list(AuditEvent.objects.order_by("sequence"))
    assert [r.sequence for r in rows] == [e.sequence for e in events]
    assert rows[0].message == syslog_message(events[0])
    settings.FERRY_AUDIT_SYSLOG_URL = ""
    _record(1)
    assert AuditOutbox.objects.count() == 2  # forwarding off: nothing queued


def test_it_keeps_rows_and_counts_a_failure_when_the_receiver_is_down(db, settings):
    settings.FERRY_AUDIT_SYSLOG_URL = "tcp://127.0.0.1:9"
    _record(3)
    transport = forward.SyslogTransport(settings.FERRY_AUDIT_SYSLOG_URL, timeout=1)
    with pytest.raises(OSError):
        forward.outbox_drain(transport)
    head = AuditOutbox.objects.order_by("sequence").first()
    assert AuditOutbox.objects.count() == 3 and head.attempts == 1 and head.last_error


def test_it_escapes_structured_data_and_frames_by_octet_count(db, settings):
    settings.FERRY_AUDIT_SYSLOG_HOSTNAME = "ferry-1"
    event = audit_record(
        actor=Actor.system('a"b]c\\'), action="test.escape", object_type="thing", object_id="1"
    )
    message = syslog_message(event)
    assert message.startswith("<109>1 ") and " ferry-1 ferry - test.escape [ferry@32473 " in message
    assert 'actor="a\\"b\\]c\\\\"' in message
    framed = forward.frame(message)
    length, _, rest = framed.partition(b" ")
    assert int(length) == len(rest) == len(message.encode())


@pytest.mark.postgres
def test_a_ferry_worker_process_forwards_what_this_process_records(
    rsyslog, transactional_db, settings
):
    """The wiring: `manage.py ferry_worker` (what `serve` starts with Redis) runs the
    forwarder; events recorded in another process reach rsyslog over TLS."""
    if connection.vendor != "postgresql":
        pytest.skip("a second process shares the test database on PostgreSQL only")
    db = connection.settings_dict
    env = {
        **os.environ,
        "DATABASE_URL": f"postgres://{db.get('USER') or 'postgres'}@{db.get('HOST') or '127.0.0.1'}"
        f":{db.get('PORT') or 5432}/{db['NAME']}",
        "FERRY_TASK_BACKEND": "db",
        "FERRY_AUDIT_SYSLOG_URL": f"tls://127.0.0.1:{rsyslog.tls_port}",
        "FERRY_AUDIT_SYSLOG_CA_FILE": str(rsyslog.tls_dir / "ca.pem"),
    }
    env.pop("REDIS_URL", None)
    log = rsyslog.base / "worker.log"
    with open(log, "wb") as out:
        worker = subprocess.Popen(
            [sys.executable, "manage.py", "ferry_worker"],
            cwd=Path(__file__).resolve().parents[3],
            env=env,
            stdout=out,
            stderr=out,
        )
    try:
        settings.FERRY_AUDIT_SYSLOG_URL = env["FERRY_AUDIT_SYSLOG_URL"]
        _record(10)
        lines = _wait_for(rsyslog, 10, input_name="tls")
        expected = list(AuditEvent.objects.order_by("sequence").values_list("sequence", flat=True))
        sequences = [int(SEQ.search(line).group(1)) for line in lines]
        assert sequences == expected, log.read_text()[-2000:]
    finally:
        worker.terminate()
        worker.wait(timeout=15)
        _wait_for_other_sessions_to_end()


def _wait_for_other_sessions_to_end(timeout=10.0):
    # The worker's backends outlive its process for a moment; the test database is dropped
    # at the end of the session and refuses while anyone is connected.
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND pid <> pg_backend_pid()"
            )
            if cursor.fetchone()[0] == 0:
                return
        time.sleep(0.1)


def test_it_exports_the_waiting_events_as_metrics(db, settings, client):
    settings.FERRY_AUDIT_SYSLOG_URL = "tcp://127.0.0.1:9"
    _record(2)
    body = client.get("/metrics").content.decode()
    assert "ferry_audit_forward_pending 2" in body
    assert "ferry_audit_forward_oldest_seconds " in body
