"""Execution on the real lab: plans carried out by Ferry's workers through libvirt.

Every test checks the guest itself, not only Ferry's records: after a move the guest's
in-RAM heartbeat keeps counting on the host Ferry says it is on, and nowhere else.
Figures (total time, downtime, iterations) are printed and appended to the lab's
measurements file.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest

libvirt = pytest.importorskip("libvirt")
from django.db import connection  # noqa: E402
from django.utils import timezone  # noqa: E402

from dashboard.audit.models import AuditEvent  # noqa: E402
from dashboard.audit.record import Actor  # noqa: E402
from inventory.models import Host, StoragePool, VirtualMachine  # noqa: E402
from inventory.services import host_add  # noqa: E402
from inventory.sync import host_sync  # noqa: E402
from lab.guest import vm  # noqa: E402
from migrations_app.execution.reconciler import reconcile_attempt  # noqa: E402
from migrations_app.models import (  # noqa: E402
    ItemAttempt,
    MigrationPlan,
    PlanItem,
    PlanRun,
    ProgressSample,
    RunEvent,
)
from migrations_app.services.plan_hooks import plan_hook_add  # noqa: E402
from migrations_app.services.transport_override import plan_transport_override_set  # noqa: E402
from migrations_app.workflow.services import plan_approve, plan_start, plan_submit  # noqa: E402
from tests.factories import plan_validate_stub  # noqa: E402
from tests.migrations_app.execution.conftest import WorkerThreads, wait_for  # noqa: E402

pytestmark = [pytest.mark.lab, pytest.mark.django_db(transaction=True)]
REPO = Path(__file__).resolve().parents[2]
FIGURES: list[dict] = []


@pytest.fixture
def ferry(lab_env, settings):
    """The lab's hosts registered in Ferry's test database (host_add + host_sync)."""
    settings.FERRY_SAMPLE_SECONDS = 0.5
    settings.FERRY_LEASE_SECONDS = 6
    settings.FERRY_WATCHDOG_SECONDS = 40
    settings.FERRY_TICK_SECONDS = 3600
    # The lab's daemons listen on unix sockets. A host's URI never carries `socket=` (a URI
    # is code): the server's FERRY_LIBVIRT_SOCKETS names each socket, the host is
    # registered as qemu+unix://NAME/system.
    settings.FERRY_LIBVIRT_SOCKETS = {name: h["socket"] for name, h in lab_env["hosts"].items()}
    hosts = {}
    for name in lab_env["hosts"]:
        host = host_add(name=name, uri=f"qemu+unix://{name}/system", actor=Actor.system("lab"))
        # The client URI is a unix socket; peers reach the host on its lab address. The
        # lab's qemu.conf runs virtlockd and lists the shared pool in shared_filesystems:
        # the host records say so, as an admin would declare them.
        ip = lab_env["hosts"][name]["ip"]
        Host.objects.filter(pk=host.pk).update(
            migration_address=ip,
            lock_manager=lab_env.get("lock_manager", "lockd"),
            shared_paths=list(lab_env.get("shared_filesystems") or [lab_env["shared_pool_path"]]),
        )
        hosts[name] = host
    return hosts


def sync(ferry):
    # Inventory sync is not under test here; one full run saw a sync of lab-b end with
    # "End of file while reading data" right after a killed worker's connection dropped,
    # so a failed sync is retried twice before the test gives up.
    for host in ferry.values():
        for attempt in range(3):
            result = host_sync(host=Host.objects.get(pk=host.pk), actor=Actor.system("lab"))
            if result.ok:
                break
            print(f"\n[ferry-lab] sync of {host.name} failed (try {attempt + 1}): {result.error}")
            time.sleep(2)
        assert result.ok, result.error


def lab_plan(people, items, policy, network_maps=None, hooks=()):
    """An approved plan of `items` [(vm name, src, dst, mode, storage_map)] in the test DB
    (`network_maps`: {vm name: {source network: destination network}}; `hooks`: the
    planner's plan_hook_add arguments, approved with the rest)."""
    plan = MigrationPlan.objects.create(
        name=f"lab-{uuid.uuid4().hex[:6]}",
        change_ticket="CHG-LAB",
        author=people["planner"],
        author_name="pat",
        policy={"require_tls": False, "verify_seconds": 3, **policy},
    )
    for position, (name, src, dst, mode, storage_map) in enumerate(items):
        PlanItem.objects.create(
            plan=plan,
            vm=VirtualMachine.objects.get(name=name),
            source_host=Host.objects.get(name=src),
            destination_host=Host.objects.get(name=dst),
            mode=mode,
            storage_map=storage_map or {},
            network_map=(network_maps or {}).get(name, {}),
            position=position,
        )
    for hook in hooks:
        plan_hook_add(plan=plan, actor=people["planner"], **hook)
    # The lab migrates over qemu+tcp:// inside its own network namespaces: an admin records
    # that unencrypted moves are acceptable there (security.transport blocks them otherwise).
    plan_transport_override_set(
        plan=plan, actor=people["admin"], reason="lab: migration network inside namespaces"
    )
    plan.refresh_from_db()
    plan_validate_stub(plan)
    plan_submit(plan=plan, actor=people["planner"])
    plan_approve(plan=plan, actor=people["approver"])
    plan.refresh_from_db()
    return plan


def start_plan(plan, people) -> PlanRun:
    plan_start(plan=plan, actor=people["operator"])
    return PlanRun.objects.get(plan=plan)


def run_settled(run_id, statuses=("completed", "paused", "cancelled", "failed")):
    return (
        PlanRun.objects.get(pk=run_id).status in statuses
        and not ItemAttempt.objects.filter(run_id=run_id, status__in=["queued", "running"]).exists()
    )


def run_completed(plan, people, timeout=240) -> tuple[ItemAttempt, float]:
    """Start a one-item plan with one worker; its attempt, which must have completed, and
    the wall time from start to settled."""
    t0 = time.monotonic()
    with WorkerThreads(1):
        run = start_plan(plan, people)
        wait_for(lambda: run_settled(run.pk), timeout=timeout, interval=0.5)
    attempt = ItemAttempt.objects.get(run=run)
    assert attempt.status == "completed", (
        attempt.error_class,
        attempt.error_message,
        attempt.libvirt_error,
    )
    return attempt, time.monotonic() - t0


def only_on(name, host, after, conns=None, beats=3):
    """The guest counts on past `after` and runs on `host` only."""
    hb = vm.wait_heartbeat(name, timeout=40, after=after + beats)
    seq = vm.console_heartbeats(name)
    assert seq[0] == 1 and seq == list(range(1, seq[-1] + 1)), (
        f"heartbeat reset or gap: {seq[-20:]}"
    )
    assert not vm.console_problems(name), vm.console_problems(name)
    assert vm.where_running(name) == [host]
    return hb


def record(lab_env, case, attempt: ItemAttempt, wall_s: float, **extra) -> dict:
    row = {
        "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "case": f"ferry-{case}",
        "total_ms": attempt.total_time_ms,
        "downtime_ms": attempt.downtime_ms,
        "iterations": attempt.iterations,
        "bytes": attempt.bytes_transferred,
        "wall_s": round(wall_s, 2),
        "status": attempt.status,
        **extra,
    }
    FIGURES.append(row)
    print(
        f"\n[ferry-lab] {case}: {attempt.status}, total {row['total_ms']} ms, downtime "
        f"{row['downtime_ms']} ms, iterations {row['iterations']}, wall {row['wall_s']} s {extra}"
    )
    with open(lab_env["measurements"], "a") as f:
        f.write(json.dumps(row) + "\n")
    return row


def pool_id(host, name):
    return (
        StoragePool.objects.filter(hosts__name=host, name=name).values_list("pk", flat=True).get()
    )


# ----------------------------------------------------------------------------- tests


def test_it_moves_a_two_item_plan_through_the_api_and_keeps_the_guests_alive(
    ferry, guest, people, lab_env, api_as
):
    names = [guest("lab-a", memory_mib=256), guest("lab-a", memory_mib=256)]
    before = {n: vm.wait_heartbeat(n, timeout=60, after=1) for n in names}
    sync(ferry)
    plan = lab_plan(
        people,
        [(n, "lab-a", "lab-b", "live", None) for n in names],
        {"bandwidth_mib_s": 200, "max_outbound_per_host": 1, "max_concurrent": 2},
    )
    operator = api_as("operator", username="op-lab")
    t0 = time.monotonic()
    with WorkerThreads(2):
        assert (
            operator.post(f"/api/v1/plans/{plan.pk}/start/", {}, format="json").status_code == 200
        )
        run = PlanRun.objects.get(plan=plan)
        wait_for(lambda: run_settled(run.pk), timeout=180, interval=0.5)
    wall = time.monotonic() - t0
    body = operator.get(f"/api/v1/runs/{run.pk}/").json()
    assert body["status"] == "completed", json.dumps(body, default=str)[:3000]
    for name in names:
        only_on(name, "lab-b", before[name])
        assert VirtualMachine.objects.get(name=name).host.name == "lab-b"
    attempts = list(ItemAttempt.objects.filter(run=run).order_by("started_at"))
    for attempt in attempts:
        assert attempt.driver == "libvirt" and attempt.status == "completed"
        # The shared pool is proven one storage (a probe) and declared in the destination's
        # shared_filesystems, so libvirt needs no VIR_MIGRATE_UNSAFE.
        assert "UNSAFE" not in attempt.evidence["prepare"]["flags"]
        proof = [f for f in attempt.evidence["preflight"] if f["check_id"] == "live.shared_storage"]
        assert proof and proof[0]["severity"] == "ok" and proof[0]["evidence"]["libvirt_knows"]
        assert attempt.evidence["cleanup"]["source_undefined"] is True
        assert ProgressSample.objects.filter(attempt=attempt).exists()
    # max_outbound_per_host=1: the samples of the two attempts never overlap in time.
    spans = [
        (ProgressSample.objects.filter(attempt=a).earliest("at").at, a.finished_at)
        for a in attempts
    ]
    assert spans[0][1] <= spans[1][0]
    seqs = list(RunEvent.objects.filter(run=run).values_list("seq", flat=True))
    assert seqs == list(range(1, len(seqs) + 1))
    # Ferry records the moves itself (host syncs may also notice a move: actor "system")
    assert AuditEvent.objects.filter(action="vm.moved", actor_name="worker").count() == 2
    assert AuditEvent.objects.filter(action="attempt.completed", actor_name="worker").count() == 2
    record(lab_env, "idle-256MiB", attempts[0], wall / 2, dirty_rate=0)


def test_it_converges_a_guest_dirtying_faster_than_the_bandwidth_cap_with_postcopy(
    ferry, guest, people, lab_env
):
    name = guest("lab-a", memory_mib=256, dirty_ws=96, dirty_rate=120)
    before = vm.wait_heartbeat(name, timeout=60, after=1)
    sync(ferry)
    plan = lab_plan(
        people,
        [(name, "lab-a", "lab-b", "live", None)],
        {"bandwidth_mib_s": 40, "on_no_convergence": "postcopy"},
    )
    t0 = time.monotonic()
    with WorkerThreads(1):
        run = start_plan(plan, people)
        wait_for(lambda: run_settled(run.pk), timeout=180, interval=0.5)
    attempt = ItemAttempt.objects.get(run=run)
    assert attempt.status == "completed", (
        attempt.error_class,
        attempt.error_message,
        attempt.libvirt_error,
    )
    assert "POSTCOPY" in attempt.evidence["prepare"]["flags"]
    assert RunEvent.objects.filter(run=run, kind="item.converge").exists()
    only_on(name, "lab-b", before)
    record(
        lab_env,
        "busy-256MiB-120MBps-cap40-postcopy",
        attempt,
        time.monotonic() - t0,
        dirty_rate=120,
    )


def test_it_copies_a_non_shared_disk_over_tls(ferry, guest, people, lab_env):
    name = guest("lab-a", memory_mib=256, pool="local")
    before = vm.wait_heartbeat(name, timeout=60, after=1)
    sync(ferry)
    storage_map = {str(pool_id("lab-a", "local")): pool_id("lab-b", "local")}
    plan = lab_plan(
        people,
        [(name, "lab-a", "lab-b", "live_copy", storage_map)],
        {"require_tls": True, "bandwidth_mib_s": 200},
    )
    t0 = time.monotonic()
    with WorkerThreads(1):
        run = start_plan(plan, people)
        wait_for(lambda: run_settled(run.pk), timeout=180, interval=0.5)
    attempt = ItemAttempt.objects.get(run=run)
    assert attempt.status == "completed", (
        attempt.error_class,
        attempt.error_message,
        attempt.libvirt_error,
    )
    flags = attempt.evidence["prepare"]["flags"]
    assert "NON_SHARED_DISK" in flags and "TLS" in flags and "UNSAFE" not in flags
    assert attempt.evidence["prepare"]["destination_uri"].startswith("qemu+tls://")
    only_on(name, "lab-b", before)
    assert vm.disk_heartbeat(name, path=vm.disk_path(name, "local", "lab-b"))["counter"] > 0
    record(lab_env, "live-copy-tls-64MiB-disk", attempt, time.monotonic() - t0)


def test_it_moves_a_running_guests_disk_from_the_shared_to_the_local_pool(
    ferry, guest, people, lab_env
):
    name = guest("lab-a", memory_mib=256, pool="shared")
    before = vm.wait_heartbeat(name, timeout=60, after=1)
    sync(ferry)
    storage_map = {str(pool_id("lab-a", "shared")): pool_id("lab-a", "local")}
    plan = lab_plan(
        people, [(name, "lab-a", "lab-a", "storage_only", storage_map)], {"bandwidth_mib_s": 100}
    )
    with WorkerThreads(1):
        run = start_plan(plan, people)
        wait_for(lambda: run_settled(run.pk), timeout=180, interval=0.5)
    attempt = ItemAttempt.objects.get(run=run)
    assert attempt.status == "completed", (
        attempt.error_class,
        attempt.error_message,
        attempt.libvirt_error,
    )
    new_path = attempt.evidence["prepare"]["block_copy_destinations"]["vda"]
    only_on(name, "lab-a", before)
    local_file = Path(lab_env["hosts"]["lab-a"]["local_dir"]) / Path(new_path).name
    first = vm.disk_heartbeat(name, path=local_file)
    time.sleep(3)
    assert vm.disk_heartbeat(name, path=local_file)["counter"] > first["counter"]
    disk = VirtualMachine.objects.get(name=name).disks.get(target="vda")
    assert disk.pool.name == "local"


def test_it_cancels_mid_transfer_and_leaves_the_guest_on_its_source(ferry, guest, people, lab_env):
    name = guest("lab-a", memory_mib=256, dirty_ws=64, dirty_rate=20)
    before = vm.wait_heartbeat(name, timeout=60, after=1)
    sync(ferry)
    plan = lab_plan(people, [(name, "lab-a", "lab-b", "live", None)], {"bandwidth_mib_s": 5})
    from migrations_app.execution.services import item_cancel

    with WorkerThreads(1):
        run = start_plan(plan, people)
        wait_for(lambda: ProgressSample.objects.filter(attempt__run=run).count() >= 2, timeout=60)
        item_cancel(item=plan.items.get(), actor=people["operator"], reason="lab cancel")
        wait_for(lambda: run_settled(run.pk), timeout=90, interval=0.5)
    attempt = ItemAttempt.objects.get(run=run)
    assert attempt.status == "cancelled" and attempt.error_class == "aborted_by_operator"
    # What libvirt says about the aborted job depends on where QEMU was when the abort
    # arrived ("operation aborted", or a channel error on a multi-connection stream);
    # Ferry keeps it word for word, and its own classification is what people read.
    assert attempt.libvirt_error
    only_on(name, "lab-a", before)
    assert VirtualMachine.objects.get(name=name).host.name == "lab-a"


def database_url() -> str:
    settings = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{settings['NAME']}"
    user = settings.get("USER") or "postgres"
    host = settings.get("HOST") or "127.0.0.1"
    return f"postgres://{user}@{host}:{settings.get('PORT') or 5432}/{settings['NAME']}"


WORKER_APP_NAME = "ferry-lab-worker"


def worker_process(log, **extra_env) -> subprocess.Popen:
    """A db_worker process on the test database; on PostgreSQL its connections are named
    WORKER_APP_NAME, so a test can cut it off its database and not itself."""
    env = dict(os.environ)
    from django.conf import settings

    url = database_url()
    if url.startswith("postgres"):
        url += f"?application_name={WORKER_APP_NAME}"
    env.update(
        DATABASE_URL=url,
        FERRY_TASK_BACKEND="db",
        FERRY_SAMPLE_SECONDS="0.5",
        FERRY_LEASE_SECONDS="6",
        FERRY_WATCHDOG_SECONDS="40",
        # The lab's sockets, named as the ferry fixture named them for this process.
        FERRY_LIBVIRT_SOCKETS=",".join(
            f"{name}={path}" for name, path in settings.FERRY_LIBVIRT_SOCKETS.items()
        ),
    )
    env.update(extra_env)
    env.pop("REDIS_URL", None)
    return subprocess.Popen(
        # What production runs (deployment guide): it restarts its task loop after a lost
        # database connection, where django-tasks-db's own db_worker would exit.
        [sys.executable, "manage.py", "ferry_worker"],
        cwd=REPO,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def test_it_recovers_the_true_state_after_the_worker_is_killed_mid_transfer(
    ferry, guest, people, lab_env, tmp_path
):
    name = guest("lab-a", memory_mib=256, dirty_ws=32, dirty_rate=5)
    last = vm.wait_heartbeat(name, timeout=60, after=1)
    rounds, recovered = 3, 0
    src, dst = "lab-a", "lab-b"
    log = open(tmp_path / "worker.log", "ab")  # noqa: SIM115 - closed at the end
    for number in range(rounds):
        sync(ferry)
        plan = lab_plan(people, [(name, src, dst, "live", None)], {"bandwidth_mib_s": 12})
        proc = worker_process(log)
        try:
            run = start_plan(plan, people)
            wait_for(
                lambda: ProgressSample.objects.filter(attempt__run=run).count() >= 3,  # noqa: B023
                timeout=90,
            )
        finally:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        attempt = ItemAttempt.objects.get(run=run)
        assert attempt.status == "running" and attempt.migrate_called_at is not None
        # The worker is gone; its lease runs out and the reconciler asks libvirt.
        wait_for(
            lambda: ItemAttempt.objects.get(pk=attempt.pk).lease_expires_at < timezone.now(),  # noqa: B023
            timeout=20,
        )
        outcome = reconcile_attempt(attempt.pk)
        attempt.refresh_from_db()
        where = vm.where_running(name)
        truth = {"completed": [dst], "failed": [src]}.get(attempt.status)
        print(
            f"\n[ferry-lab] kill round {number + 1}: {outcome} -> {attempt.status}, runs on {where}"
        )
        if truth is not None and where == truth:
            recovered += 1
        assert attempt.status in ("completed", "failed"), (attempt.status, attempt.error_message)
        assert where == truth
        last = only_on(name, where[0], last, beats=2)
        if attempt.status == "completed":
            src, dst = dst, src
        assert not ItemAttempt.objects.filter(status="running").exists()
    log.close()
    FIGURES.append({"case": "worker-kill", "rounds": rounds, "recovered": recovered})
    print(f"\n[ferry-lab] worker kills recovered: {recovered}/{rounds}")
    assert recovered == rounds


def test_it_fails_clearly_when_the_destination_daemon_dies_and_a_retry_succeeds(
    ferry, guest, people, lab_env
):
    from lab import labctl
    from migrations_app.execution.services import item_retry

    name = guest("lab-a", memory_mib=256, dirty_ws=32, dirty_rate=5)
    before = vm.wait_heartbeat(name, timeout=60, after=1)
    sync(ferry)
    plan = lab_plan(people, [(name, "lab-a", "lab-b", "live", None)], {"bandwidth_mib_s": 8})
    with WorkerThreads(1):
        run = start_plan(plan, people)
        wait_for(lambda: ProgressSample.objects.filter(attempt__run=run).count() >= 2, timeout=60)
        labctl.daemon_kill("lab-b")
        # A service manager restarts a dead libvirtd within seconds: Ferry asks the host
        # again before it decides, and clears the move only with both sides in view.
        restart = threading.Timer(5.0, labctl.daemon_start, args=("lab-b",))
        restart.start()
        try:
            wait_for(lambda: run_settled(run.pk), timeout=150, interval=0.5)
        finally:
            restart.join()
        attempt = ItemAttempt.objects.get(run=run)
        safety_record = attempt.evidence.get("failure", {}).get("safety", {})
        assert attempt.status == "failed", (attempt.status, attempt.error_message, safety_record)
        assert safety_record["decision"]["verdict"] == "on_source", safety_record
        assert attempt.error_class == "connection_lost", (
            attempt.error_class,
            attempt.libvirt_error,
        )
        assert attempt.libvirt_error
        after = only_on(name, "lab-a", before)
        wait_for(lambda: vm.where_running(name) == ["lab-a"], timeout=30)
        item_retry(item=plan.items.get(), actor=people["operator"])
        wait_for(lambda: run_settled(run.pk, ("completed",)), timeout=120, interval=0.5)
    retried = ItemAttempt.objects.filter(run=run).order_by("-number").first()
    assert retried.number == 2 and retried.status == "completed"
    only_on(name, "lab-b", after)
