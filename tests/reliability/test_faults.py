"""Faults outside the lab (issue 9): real Daphne and `manage.py ferry_worker` processes over
the test database run a rehearsal plan while the test breaks PostgreSQL connections,
restarts Redis, or SIGKILLs the worker holding a claim. Afterwards every item is in a true
terminal state, no attempt made its transfer call twice, and the audit chain verifies.

Loopback only: the server binds 127.0.0.1, Redis and PostgreSQL are the local CI services.
"""

import json
import os
import signal
import subprocess
import threading
import time
from contextlib import suppress

import pytest
from django.db import connection

from dashboard.audit.verify import audit_chain_verify
from inventory.services import host_add
from inventory.sync import host_sync
from migrations_app.models import ItemAttempt, PlanItem, PlanRun, RunEvent
from migrations_app.services.plans import plan_create, plan_evacuate_host
from migrations_app.services.validation import plan_validate
from migrations_app.workflow.services import plan_approve, plan_start, plan_submit
from tests.browser.conftest import SERVER_APP_NAME, FerryServer
from tests.conftest import skip_or_fail

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(170)]

REDIS_HOST = "127.0.0.1"
REDIS_START = [
    "redis-server",
    "--daemonize",
    "yes",
    "--bind",
    "127.0.0.1",
    "-::1",
    "--port",
    "6379",
    "--save",
    "",
    "--appendonly",
    "no",
    "--dir",
    "/var/lib/redis",
    "--logfile",
    "/var/log/redis/ci.log",
]

# --------------------------------------------------------------------------- inventory

POOL = (
    "<pool type='netfs'><name>nfs</name><uuid>5b1c0e8e-7d2e-4f37-9a51-7c1d2b3e4f50</uuid>"
    "<capacity unit='GiB'>2000</capacity><allocation unit='GiB'>0</allocation>"
    "<available unit='GiB'>2000</available><source><host name='nfs.lab.internal'/>"
    "<dir path='/export'/><format type='nfs'/></source><target><path>/srv/nfs</path></target>"
    "{vols}</pool>"
)
VOL = (
    "<volume type='file'><name>{n}.qcow2</name><capacity unit='GiB'>10</capacity>"
    "<allocation unit='GiB'>1</allocation><target><path>/srv/nfs/{n}.qcow2</path>"
    "<format type='qcow2'/></target></volume>"
)
DOMAIN = (
    "<domain type='test'><name>{n}</name><uuid>{u}</uuid><memory unit='MiB'>{mem}</memory>"
    "<vcpu>1</vcpu><os><type arch='x86_64' machine='pc-q35-8.2'>hvm</type></os>"
    "<cpu mode='host-model'/><devices><disk type='file' device='disk'>"
    "<driver name='qemu' type='qcow2'/><source file='/srv/nfs/{n}.qcow2'/>"
    "<target dev='vda' bus='virtio'/></disk><interface type='network'>"
    "<mac address='52:54:00:aa:00:{m:02x}'/><source network='prod'/><model type='virtio'/>"
    "</interface></devices></domain>"
)
NET = "<network><name>prod</name><forward mode='bridge'/><bridge name='br-prod'/></network>"
CPU = (
    "<cpu><mhz>2600</mhz><model>Skylake-Server</model><active>16</active><total>16</total>"
    "<nodes>1</nodes><sockets>1</sockets><cores>8</cores><threads>2</threads></cpu>"
    "<memory>67108864</memory>"
)


def node(names, mem=2048) -> str:
    """libvirt test-driver node XML: one host, these VMs, one shared NFS pool."""
    domains = "".join(
        DOMAIN.format(n=n, u=f"00000000-0000-4000-8000-{i:012d}", mem=mem, m=i)
        for i, n in enumerate(names, start=1)
    )
    vols = "".join(VOL.format(n=n) for n in names)
    return f"<node>{CPU}{domains}{POOL.format(vols=vols)}{NET}</node>"


@pytest.fixture
def site(tmp_path, make_user):
    """Build a two-host rehearsal site; returns a function that drafts and starts a plan."""

    def _started_plan(vm_names, mem=2048):
        (tmp_path / "src.xml").write_text(node(vm_names, mem))
        (tmp_path / "dst.xml").write_text(node([]))
        hosts = {}
        for name in ("src", "dst"):
            host = host_add(name=name, uri=f"test://{tmp_path / (name + '.xml')}", actor=None)
            assert host_sync(host=host).ok
            hosts[name] = host
        planner = make_user("planner1", "planner")
        approver = make_user("approver1", "approver")
        operator = make_user("operator1", "operator")
        plan = plan_create(actor=planner, name="Fault drill", change_ticket="CHG-9")
        plan_evacuate_host(plan=plan, host=hosts["src"], actor=planner)
        plan.refresh_from_db()
        assert plan.items.count() == len(vm_names)
        plan_validate(plan=plan, actor=planner)
        plan.refresh_from_db()
        plan_submit(plan=plan, actor=planner)
        plan.refresh_from_db()
        plan_approve(plan=plan, actor=approver, comment="drill")
        plan.refresh_from_db()
        return plan, operator

    return _started_plan


# --------------------------------------------------------------------------- helpers


def wait_for(check, timeout, what, interval=0.25):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with suppress(Exception):
            value = check()
            if value:
                return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def items_terminal(plan) -> bool:
    statuses = list(PlanItem.objects.filter(plan=plan).values_list("status", flat=True))
    return bool(statuses) and all(s in ItemAttempt.TERMINAL for s in statuses)


def describe(plan) -> str:
    rows = []
    for a in ItemAttempt.objects.filter(item__plan=plan).order_by("item_id", "number"):
        rows.append(
            f"item {a.item_id} attempt {a.pk}#{a.number}: {a.status}/{a.phase} "
            f"claimed_by={a.claimed_by} migrate_called_at={a.migrate_called_at} "
            f"error={a.error_class}: {a.error_message}"
        )
    items = list(PlanItem.objects.filter(plan=plan).values_list("pk", "status", "status_reason"))
    return "\n".join([f"items: {items}", *rows])


def assert_true_end_state(plan, server):
    """Every item completed; one transfer call per attempt; the audit chain verifies."""
    detail = describe(plan)
    items = list(PlanItem.objects.filter(plan=plan))
    assert {i.status for i in items} == {"completed"}, f"{detail}\nsee {server.log}"
    for item in items:
        attempts = list(ItemAttempt.objects.filter(item=item))
        assert len(attempts) == 1, f"item {item.pk} ran {len(attempts)} attempts\n{detail}"
        for attempt in attempts:
            assert attempt.status == "completed", detail
            assert attempt.migrate_called_at is not None, detail
            transfers = [
                e
                for e in RunEvent.objects.filter(item=item, kind="item.phase")
                if e.payload.get("attempt") == attempt.pk and e.payload.get("phase") == "transfer"
            ]
            # The runner enters the transfer phase right after the one conditional
            # mark_migrate_called; a re-attach follows the job without entering it again.
            assert len(transfers) == 1, f"attempt {attempt.pk}: {len(transfers)} transfer calls"
            started = [
                e
                for e in RunEvent.objects.filter(item=item, kind="item.started")
                if e.payload.get("attempt") == attempt.pk
            ]
            # A worker lost before the transfer call is requeued by design (nothing moved
            # yet) and the attempt starts again; any other second start is a double run.
            requeued = [
                e
                for e in RunEvent.objects.filter(item=item, kind="item.requeued")
                if e.payload.get("attempt") == attempt.pk
            ]
            assert len(started) == 1 + len(requeued), (
                f"attempt {attempt.pk} started {len(started)} times, requeued {len(requeued)}"
            )
            finished = [
                e
                for e in RunEvent.objects.filter(item=item, kind="item.finished")
                if e.payload.get("attempt") == attempt.pk
            ]
            assert len(finished) == 1, f"attempt {attempt.pk} finished {len(finished)} times"
    run = PlanRun.objects.get(plan=plan)
    seqs = list(RunEvent.objects.filter(run=run).order_by("seq").values_list("seq", flat=True))
    assert seqs == list(range(1, run.event_seq + 1)), "stored run events have gaps"
    verdict = audit_chain_verify()
    assert verdict.ok, verdict


def reset_pool():
    """Drop this process's connection and its psycopg pool (their backends may be gone)."""
    connection.close()
    if hasattr(connection, "close_pool"):
        connection.close_pool()


def worker_pid(claimed_by: str) -> int:
    """claims.worker_name(): host:pid:thread:random."""
    return int(claimed_by.split(":")[1])


def fault_env(**extra) -> dict:
    env = {
        "FERRY_TICK_SECONDS": "2",
        "FERRY_LEASE_SECONDS": "5",
        "FERRY_SAMPLE_SECONDS": "0.5",
    }
    env.update({k: str(v) for k, v in extra.items()})
    return env


def require_redis():
    if not os.environ.get("REDIS_URL"):
        skip_or_fail("REDIS_URL is not set (separate workers need Redis)")
    try:
        out = subprocess.run(
            ["redis-cli", "-h", REDIS_HOST, "ping"], capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        skip_or_fail(f"redis-cli unavailable: {exc}")
    if out.stdout.strip() != "PONG":
        skip_or_fail(f"Redis does not answer at {REDIS_HOST}:6379")


def redis_up() -> bool:
    out = subprocess.run(
        ["redis-cli", "-h", REDIS_HOST, "ping"], capture_output=True, text=True, timeout=5
    )
    return out.stdout.strip() == "PONG"


def redis_start():
    subprocess.run(REDIS_START, check=False, timeout=15)
    wait_for(redis_up, 15, "Redis to answer again")


# --------------------------------------------------------------------------- 1. PostgreSQL


def test_plan_survives_postgres_connections_being_terminated(site):
    if connection.vendor != "postgresql":
        skip_or_fail("pg_terminate_backend needs PostgreSQL (DATABASE_URL=postgres://...)")
    require_redis()
    plan, operator = site(["app-1", "app-2", "app-3"])
    server = FerryServer(
        workers=2, redis=True, extra_env=fault_env(FERRY_REHEARSAL_SPEED=8)
    ).start()
    killed = 0
    try:
        plan_start(plan=plan, actor=operator)
        wait_for(
            lambda: ItemAttempt.objects.filter(item__plan=plan, status="running").exists(),
            30,
            "the first attempt to run",
        )
        # ~1 s apart, while the three items move one after the other (one outbound per host)
        for _ in range(10):
            with connection.cursor() as cur:
                # Only the system under test (server and workers): terminating the test's
                # own connections would break the tests that run after this one.
                cur.execute(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid() "
                    "AND application_name = %s",
                    [SERVER_APP_NAME],
                )
                killed += cur.fetchone()[0]
            time.sleep(1.0)
        assert killed > 0, "no connection was terminated"
        # This process's own idle pooled connections were terminated too: start afresh.
        reset_pool()
        wait_for(lambda: items_terminal(plan), 90, "every item to end\n" + describe(plan))
        assert_true_end_state(plan, server)
    finally:
        server.stop()
        reset_pool()
    print(f"terminated {killed} PostgreSQL connections; {describe(plan)}")


# --------------------------------------------------------------------------- 2. Redis


class LiveClient(threading.Thread):
    """A websocket subscriber that behaves like static/js/live.js: snapshot, numbered
    events, gaps filled from the REST range, reconnect when the socket drops."""

    def __init__(self, server, plan_id: int, cookie: str):
        super().__init__(daemon=True)
        self.server = server
        self.plan_id = plan_id
        self.cookie = cookie
        self.seqs: set[int] = set()
        self.run_id = None
        self.last_seq = 0
        self.connections = 0
        self.drops: list[str] = []
        self.stop_event = threading.Event()

    def fetch_after(self, after: int):
        import requests

        while True:
            resp = requests.get(
                f"{self.server.url}/api/v1/runs/{self.run_id}/events/",
                params={"after": after, "limit": 500},
                cookies={"sessionid": self.cookie},
                timeout=10,
            )
            resp.raise_for_status()
            body = resp.json()
            for ev in body["events"]:
                self.seqs.add(ev["seq"])
                after = max(after, ev["seq"])
            self.last_seq = max(self.last_seq, after)
            if not body["more"]:
                return

    def handle(self, msg: dict):
        if msg.get("type") == "snapshot":
            run = msg.get("run")
            if run:
                self.run_id = run["id"]
                if msg["last_seq"] > self.last_seq:
                    self.fetch_after(self.last_seq)
        elif msg.get("type") == "event" and msg.get("seq") is not None:
            self.run_id = msg["run"]
            if msg["seq"] > self.last_seq + 1:
                self.fetch_after(self.last_seq)
            self.seqs.add(msg["seq"])
            self.last_seq = max(self.last_seq, msg["seq"])

    def run(self):
        from websockets.sync.client import connect

        uri = f"ws://127.0.0.1:{self.server.port}/ws/plans/{self.plan_id}/"
        while not self.stop_event.is_set():
            try:
                with connect(
                    uri,
                    origin=self.server.url,
                    additional_headers={"Cookie": f"sessionid={self.cookie}"},
                    open_timeout=5,
                ) as ws:
                    self.connections += 1
                    while not self.stop_event.is_set():
                        try:
                            raw = ws.recv(timeout=0.5)
                        except TimeoutError:
                            continue
                        self.handle(json.loads(raw))
            except Exception as exc:  # dropped: reconnect like the page does
                self.drops.append(repr(exc))
                time.sleep(0.5)


def test_workers_and_live_stream_survive_a_redis_restart(site, client):
    require_redis()
    plan, operator = site(["app-1", "app-2"])
    client.force_login(operator)
    cookie = client.cookies["sessionid"].value
    server = FerryServer(
        workers=2, redis=True, extra_env=fault_env(FERRY_REHEARSAL_SPEED=4)
    ).start()
    live = LiveClient(server, plan.pk, cookie)
    try:
        live.start()
        wait_for(lambda: live.connections >= 1, 15, "the websocket to connect")
        plan_start(plan=plan, actor=operator)
        wait_for(lambda: live.last_seq >= 5, 30, "live events before the restart")
        seen_before = live.last_seq
        try:
            subprocess.run(
                ["redis-cli", "-h", REDIS_HOST, "shutdown", "nosave"],
                capture_output=True,
                timeout=10,
            )
            time.sleep(2.0)
        finally:
            redis_start()
        run = PlanRun.objects.get(plan=plan)
        wait_for(lambda: items_terminal(plan), 90, "every item to end after the restart")
        run.refresh_from_db()
        # the subscriber catches up to the end through its stream (and the REST range)
        wait_for(
            lambda: live.seqs == set(range(1, run.event_seq + 1)),
            30,
            f"the subscriber to hold 1..{run.event_seq} "
            f"(has {len(live.seqs)}, last {live.last_seq}, drops {live.drops[-3:]})",
        )
        assert live.last_seq > seen_before
        assert_true_end_state(plan, server)
        print(f"connections {live.connections}, drops {live.drops}, events {run.event_seq}")
    finally:
        live.stop_event.set()
        live.join(timeout=5)
        server.stop()
        if not redis_up():
            redis_start()


# --------------------------------------------------------------------------- 3. SIGKILL


def test_another_worker_takes_over_a_claim_whose_worker_was_killed(site):
    require_redis()
    plan, operator = site(["app-1"])
    server = FerryServer(
        workers=2, redis=True, extra_env=fault_env(FERRY_REHEARSAL_SPEED=2)
    ).start()
    try:
        plan_start(plan=plan, actor=operator)
        attempt = wait_for(
            lambda: ItemAttempt.objects.filter(
                item__plan=plan, status="running", phase="transfer"
            ).first(),
            30,
            "the attempt to be mid-transfer",
        )
        time.sleep(1.0)
        victim_pid = worker_pid(attempt.claimed_by)
        victim = next((p for p in server.procs if p.pid == victim_pid), None)
        assert victim is not None and victim is not server.procs[0], (
            f"claim {attempt.claimed_by} is not held by one of the worker processes"
        )
        os.kill(victim_pid, signal.SIGKILL)
        victim.wait(timeout=10)
        attempt.refresh_from_db()
        assert attempt.status == "running", "the killed worker's attempt ended by itself"
        wait_for(lambda: items_terminal(plan), 90, "the item to end after the takeover")
        attempt.refresh_from_db()
        assert attempt.claimed_by and worker_pid(attempt.claimed_by) != victim_pid, describe(plan)
        reattached = RunEvent.objects.filter(item=attempt.item, kind="item.reattached")
        assert reattached.count() == 1, describe(plan)
        assert_true_end_state(plan, server)
    finally:
        server.stop()
