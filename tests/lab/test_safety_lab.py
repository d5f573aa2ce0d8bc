"""Failure paths on the real lab, each with the fault really injected (issue 14).

Every test ends by checking the promise on both hosts through libvirt and on the guest
itself: the VM runs exactly once (or, where a guest died, nowhere and nothing restarted
it), its disks are intact (the disk heartbeat continues where it was, markers written
before the move read back), the inventory says where it is, and no definition that could
autostart is left on the other host. Each test adds a row to the fault campaign table
printed at the end of the session (scenario, VMs lost, VMs running twice, definitions left).

Faults whose timing matters (between two pivots, the moment verify starts) are injected
through the engine's fault points (migrations_app.execution.faults): the fault itself is
real (a daemon killed, a block job aborted by another client, a guest paused or
panicked), only its moment is chosen there.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import pytest
from django.utils import timezone

libvirt = pytest.importorskip("libvirt")

from inventory.models import PoolShareProof, VirtualMachine  # noqa: E402
from lab import labctl  # noqa: E402
from lab.guest import vm  # noqa: E402
from migrations_app.execution import faults  # noqa: E402
from migrations_app.execution.drivers.libvirt.blockcopy import disk_sources  # noqa: E402
from migrations_app.execution.reconciler import reconcile_attempt  # noqa: E402
from migrations_app.execution.services import item_cancel  # noqa: E402
from migrations_app.models import ItemAttempt, ProgressSample, RunEvent  # noqa: E402
from tests.lab.test_execution_lab import (  # noqa: E402,F401
    ferry,
    lab_plan,
    only_on,
    pool_id,
    run_settled,
    start_plan,
    sync,
    worker_process,
)
from tests.migrations_app.execution.conftest import WorkerThreads, wait_for  # noqa: E402

pytestmark = [pytest.mark.lab, pytest.mark.django_db(transaction=True)]

CAMPAIGN: list[dict] = []
INACTIVE = libvirt.VIR_DOMAIN_XML_INACTIVE


@pytest.fixture(scope="module", autouse=True)
def _campaign_table(request):
    yield
    if not CAMPAIGN:
        return
    lines = [
        "[ferry-lab] fault campaign (issue 14):",
        f"  {'scenario':<58} runs lost twice left wall_s",
    ]
    for row in CAMPAIGN:
        lines.append(
            f"  {row['scenario']:<58} {row['runs']:>4} {row['lost']:>4} {row['twice']:>5} "
            f"{row['left']:>4} {row['wall_s']:>6.1f}"
        )
    # Through the terminal reporter, so CI's output (captured tests) shows the table too.
    reporter = request.config.pluginmanager.getplugin("terminalreporter")
    for line in ["", *lines]:
        reporter.write_line(line) if reporter is not None else print(line)


def promise(conns, name, *, runs_on, scenario, t0, runs=1) -> dict:
    """The promise on both hosts, recorded for the campaign table. `runs_on` is the host
    the VM must run on, or None when it must run nowhere."""
    where = vm.where_running(name)
    twice = int(len(where) > 1)
    lost = 0
    if runs_on is not None:
        lost = int(where != [runs_on])
    left = 0
    for host, conn in conns.items():
        if host == runs_on:
            continue
        try:
            dom = conn.lookupByName(name)
        except libvirt.libvirtError:
            continue
        if dom.isPersistent() and dom.autostart():
            left += 1
    row = {
        "scenario": scenario,
        "runs": runs,
        "lost": lost,
        "twice": twice,
        "left": left,
        "wall_s": time.monotonic() - t0,
    }
    CAMPAIGN.append(row)
    assert not twice, f"{name} runs on {where}"
    assert not lost, f"{name} runs on {where}, expected {runs_on}"
    assert not left, f"an autostarting definition of {name} is left outside {runs_on}"
    return row


def root_path(lab_env, pool: str, host: str, path: str) -> Path:
    """A pool file as the root namespace sees it (local and twin are per-host mounts)."""
    name = Path(path).name
    if pool == "shared":
        return Path(lab_env["shared_pool_path"]) / name
    key = "local_dir" if pool == "local" else "twin_dir"
    return Path(lab_env["hosts"][host][key]) / name


def data_disk(guest, name, target="vdb") -> dict:
    """The guest's cold-defined data disk (vm.guest_start extra_disks: the lab's machine
    cannot hot-plug one) with the marker written at its start."""
    return guest.facts[name]["extra_disks"][target]


def marker_at(lab_env, pool, host, path, marker) -> bool:
    with open(root_path(lab_env, pool, host, path), "rb") as f:
        return f.read(len(marker)) == marker


def run_plan(plan, people, timeout=180, fault=None):
    """Start the plan with one worker thread and wait until it settles."""
    name, action = fault or (None, None)
    with WorkerThreads(1):
        if name:
            with faults.armed(name, action):
                run = start_plan(plan, people)
                wait_for(lambda: run_settled(run.pk), timeout=timeout, interval=0.5)
        else:
            run = start_plan(plan, people)
            wait_for(lambda: run_settled(run.pk), timeout=timeout, interval=0.5)
    return ItemAttempt.objects.filter(run=run).order_by("-number").first()


def failure_of(attempt) -> dict:
    return (attempt.evidence or {}).get("failure") or {}


# ----------------------------------------------------------------------- storage moves


def test_it_hands_over_a_partial_pivot_without_deleting_live_disks(
    ferry, guest, people, lab_env, conns
):
    t0 = time.monotonic()
    name = guest("lab-a", memory_mib=256, pool="shared", extra_disks=[("shared", 16)])
    before = vm.wait_heartbeat(name, timeout=60, after=1)
    vdb = data_disk(guest, name)
    original = disk_sources(conns["lab-a"].lookupByName(name).XMLDesc(0))
    sync(ferry)
    storage_map = {str(pool_id("lab-a", "shared")): pool_id("lab-a", "local")}
    plan = lab_plan(
        people, [(name, "lab-a", "lab-a", "storage_only", storage_map)], {"bandwidth_mib_s": 200}
    )

    def another_client_aborts_vdb(session, pivoted):
        # Between the two pivots, another client of the host cancels vdb's copy.
        assert pivoted == {"vda"}
        conns["lab-a"].lookupByName(name).blockJobAbort("vdb", 0)

    attempt = run_plan(plan, people, fault=("blockcopy.between_pivots", another_client_aborts_vdb))
    assert attempt.status == "needs_attention", (attempt.status, attempt.error_message)
    assert attempt.error_class == "partial_storage_move"
    copies = attempt.evidence["prepare"]["block_copy_destinations"]
    dom = conns["lab-a"].lookupByName(name)
    live, config = disk_sources(dom.XMLDesc(0)), disk_sources(dom.XMLDesc(INACTIVE))
    # vda runs on its copy and its next boot uses it too; vdb stayed on its file.
    assert live["vda"] == config["vda"] == copies["vda"]
    assert live["vdb"] == config["vdb"] == original["vdb"]
    # Nothing the VM references was deleted; the cancelled copy of vdb is gone.
    assert root_path(lab_env, "shared", "lab-a", original["vda"]).exists()
    assert root_path(lab_env, "local", "lab-a", copies["vda"]).exists()
    assert not root_path(lab_env, "local", "lab-a", copies["vdb"]).exists()
    assert marker_at(lab_env, "shared", "lab-a", vdb["path"], vdb["marker"])
    decision = failure_of(attempt)["safety"]["decision"]
    assert decision["verdict"] == "needs_attention" and "vda on" in decision["reason"]
    only_on(name, "lab-a", before)
    heartbeat = vm.disk_heartbeat(name, path=root_path(lab_env, "local", "lab-a", copies["vda"]))
    time.sleep(2.5)
    again = vm.disk_heartbeat(name, path=root_path(lab_env, "local", "lab-a", copies["vda"]))
    assert again["counter"] > heartbeat["counter"]
    # The inventory was read again: vda in local, vdb still in shared.
    pools = {d.target: d.pool.name for d in VirtualMachine.objects.get(name=name).disks.all()}
    assert pools == {"vda": "local", "vdb": "shared"}, pools
    promise(conns, name, runs_on="lab-a", scenario="storage-only: 2nd pivot fails", t0=t0)


def test_it_follows_the_copies_across_a_daemon_restart_between_two_pivots(
    ferry, guest, people, lab_env, conns
):
    t0 = time.monotonic()
    name = guest("lab-a", memory_mib=256, pool="shared", extra_disks=[("shared", 16)])
    before = vm.wait_heartbeat(name, timeout=60, after=1)
    vdb = data_disk(guest, name)
    sync(ferry)
    storage_map = {str(pool_id("lab-a", "shared")): pool_id("lab-a", "local")}
    plan = lab_plan(
        people, [(name, "lab-a", "lab-a", "storage_only", storage_map)], {"bandwidth_mib_s": 200}
    )

    def kill_the_daemon(session, pivoted):
        labctl.daemon_kill("lab-a")
        threading.Timer(3.0, labctl.daemon_start, args=("lab-a",)).start()

    attempt = run_plan(plan, people, fault=("blockcopy.between_pivots", kill_the_daemon))
    wait_for(lambda: labctl.status()["up"], timeout=30)
    copies = attempt.evidence["prepare"]["block_copy_destinations"]
    dom = conns["lab-a"].lookupByName(name)
    live, config = disk_sources(dom.XMLDesc(0)), disk_sources(dom.XMLDesc(INACTIVE))
    print(f"\n[ferry-lab] daemon restart between pivots: {attempt.status} {live}")
    assert attempt.status in ("completed", "needs_attention"), attempt.error_message
    for target in ("vda", "vdb"):
        assert live[target] == config[target]  # the next boot uses what runs now
        if live[target] == copies[target]:
            assert root_path(lab_env, "local", "lab-a", copies[target]).exists()
        else:
            assert root_path(lab_env, "shared", "lab-a", live[target]).exists()
    if attempt.status == "completed":
        assert live == {"vda": copies["vda"], "vdb": copies["vdb"]}
        assert marker_at(lab_env, "local", "lab-a", copies["vdb"], vdb["marker"])
    only_on(name, "lab-a", before)
    promise(
        conns, name, runs_on="lab-a", scenario="storage-only: daemon dies between pivots", t0=t0
    )


def test_it_keeps_the_copies_when_verify_fails_after_the_pivot(
    ferry, guest, people, lab_env, conns
):
    t0 = time.monotonic()
    name = guest("lab-a", memory_mib=256, pool="shared")
    before = vm.wait_heartbeat(name, timeout=60, after=1)
    original = disk_sources(conns["lab-a"].lookupByName(name).XMLDesc(0))["vda"]
    sync(ferry)
    storage_map = {str(pool_id("lab-a", "shared")): pool_id("lab-a", "local")}
    plan = lab_plan(
        people,
        [(name, "lab-a", "lab-a", "storage_only", storage_map)],
        {"bandwidth_mib_s": 200, "verify_seconds": 6, "remove_source_disks": True},
    )

    def someone_pauses_the_guest(session, attempt):
        conns["lab-a"].lookupByName(name).suspend()

    attempt = run_plan(plan, people, fault=("verify.started", someone_pauses_the_guest))
    assert attempt.status == "needs_attention", (attempt.status, attempt.error_message)
    assert attempt.error_class == "guest_died_after_switchover"
    copy = attempt.evidence["prepare"]["block_copy_destinations"]["vda"]
    dom = conns["lab-a"].lookupByName(name)
    assert dom.state()[0] == libvirt.VIR_DOMAIN_PAUSED  # not resumed by Ferry: not its pause
    assert disk_sources(dom.XMLDesc(0))["vda"] == copy == disk_sources(dom.XMLDesc(INACTIVE))["vda"]
    # Neither the copy the VM runs on nor the old file was deleted (remove-source did not run).
    assert root_path(lab_env, "local", "lab-a", copy).exists()
    assert root_path(lab_env, "shared", "lab-a", original).exists()
    dom.resume()  # the operator's decision
    only_on(name, "lab-a", before)
    promise(conns, name, runs_on="lab-a", scenario="storage-only: verify fails after pivot", t0=t0)


# ----------------------------------------------------------------------- live moves


def test_it_copies_only_the_local_disk_and_leaves_the_shared_one(
    ferry, guest, people, lab_env, conns
):
    t0 = time.monotonic()
    name = guest("lab-a", memory_mib=256, pool="shared", extra_disks=[("local", 16)])
    before = vm.wait_heartbeat(name, timeout=60, after=1)
    vdb = data_disk(guest, name)
    vda = disk_sources(conns["lab-a"].lookupByName(name).XMLDesc(0))["vda"]
    sync(ferry)
    plan = lab_plan(
        people,
        [(name, "lab-a", "lab-b", "live_copy", None)],
        {"bandwidth_mib_s": 200, "remove_source_disks": True},
    )
    attempt = run_plan(plan, people)
    assert attempt.status == "completed", (attempt.error_class, attempt.error_message)
    prepared = attempt.evidence["prepare"]
    assert prepared["copied_disks"] == ["vdb"] and prepared["kept_disks"] == ["vda"]
    assert prepared["params"]["migrate_disks"] == ["vdb"]
    cleanup = attempt.evidence["cleanup"]
    assert cleanup["disks_removed"] == [vdb["path"]]
    # Same path on both hosts: deleted only after a probe showed two storages.
    (probe,) = cleanup["same_path_probes"]
    assert probe["path"] == vdb["path"] and probe["deleted"] and "path_on_b" not in probe
    # The shared disk is the one the destination runs on: untouched.
    assert root_path(lab_env, "shared", "lab-a", vda).exists()
    assert disk_sources(conns["lab-b"].lookupByName(name).XMLDesc(0))["vda"] == vda
    # The local disk moved to lab-b's own local pool, marker intact, and left lab-a.
    assert marker_at(lab_env, "local", "lab-b", vdb["path"], vdb["marker"])
    assert not root_path(lab_env, "local", "lab-a", vdb["path"]).exists()
    only_on(name, "lab-b", before)
    assert VirtualMachine.objects.get(name=name).host.name == "lab-b"
    promise(conns, name, runs_on="lab-b", scenario="live_copy: shared + local disk", t0=t0)


def test_it_refuses_a_look_alike_shared_pool(ferry, guest, people, lab_env, conns):
    t0 = time.monotonic()
    name = guest("lab-a", memory_mib=256, pool="twin")
    before = vm.wait_heartbeat(name, timeout=60, after=1)
    sync(ferry)
    assert VirtualMachine.objects.get(name=name).disks.get(target="vda").pool.shared
    plan = lab_plan(people, [(name, "lab-a", "lab-b", "live", None)], {"bandwidth_mib_s": 200})
    attempt = run_plan(plan, people)
    assert attempt.status == "failed" and attempt.error_class == "shared_storage_unproven", (
        attempt.status,
        attempt.error_message,
    )
    assert "not shared storage" in attempt.error_message
    blocker = [f for f in attempt.evidence["preflight"] if f["check_id"] == "live.shared_storage"]
    assert blocker[0]["severity"] == "blocker" and "live_copy" in blocker[0]["remedy"]
    assert attempt.migrate_called_at is None
    proof = PoolShareProof.objects.get(pool__name="twin")
    assert proof.shared is False and proof.evidence.get("seen_on_b") is False
    only_on(name, "lab-a", before)
    promise(conns, name, runs_on="lab-a", scenario="look-alike shared pool refused", t0=t0)


def test_it_moves_a_uefi_guest_with_autostart_and_leaves_no_definition_behind(
    ferry, guest, people, lab_env, conns
):
    t0 = time.monotonic()
    name = guest("lab-a", memory_mib=256, pool="shared", uefi=True)
    before = vm.wait_heartbeat(name, timeout=90, after=1)
    conns["lab-a"].lookupByName(name).setAutostart(1)
    source_nvram = vm.nvram_file(name, "lab-a")
    assert source_nvram.exists()
    sync(ferry)
    plan = lab_plan(people, [(name, "lab-a", "lab-b", "live", None)], {"bandwidth_mib_s": 200})
    attempt = run_plan(plan, people)
    assert attempt.status == "completed", (attempt.error_class, attempt.error_message)
    assert attempt.evidence["prepare"]["source_autostart"] is True
    assert attempt.evidence["cleanup"]["source_undefined"] is True
    assert attempt.evidence["cleanup"]["destination_autostart"] is True
    with pytest.raises(libvirt.libvirtError):
        conns["lab-a"].lookupByName(name)  # the source definition is gone
    assert not source_nvram.exists()  # and its NVRAM with it
    dst = conns["lab-b"].lookupByName(name)
    assert dst.isPersistent() and dst.autostart() == 1
    assert vm.nvram_file(name, "lab-b").exists()
    only_on(name, "lab-b", before)
    promise(conns, name, runs_on="lab-b", scenario="UEFI + autostart", t0=t0)


def test_it_keeps_the_network_map_across_a_cold_boot(ferry, guest, people, lab_env, conns):
    t0 = time.monotonic()
    network = "labnet-alt"
    conns["lab-b"].networkCreateXML(
        f"<network><name>{network}</name><bridge name='labalt0'/></network>"
    )
    try:
        name = guest("lab-a", memory_mib=256, pool="shared")
        before = vm.wait_heartbeat(name, timeout=60, after=1)
        sync(ferry)
        plan = lab_plan(
            people,
            [(name, "lab-a", "lab-b", "live", None)],
            {"bandwidth_mib_s": 200},
            network_maps={name: {"labnet": network}},
        )
        attempt = run_plan(plan, people)
        assert attempt.status == "completed", (attempt.error_class, attempt.error_message)
        only_on(name, "lab-b", before)
        dom = conns["lab-b"].lookupByName(name)
        assert f"network='{network}'" in dom.XMLDesc(0).replace('"', "'")
        assert f"network='{network}'" in dom.XMLDesc(INACTIVE).replace('"', "'")
        # A cold boot on the destination: the persistent definition carries the map.
        dom.destroy()
        dom.create()
        assert f"network='{network}'" in dom.XMLDesc(0).replace('"', "'")
        wait_for(lambda: vm.where_running(name) == ["lab-b"], timeout=30)
        promise(conns, name, runs_on="lab-b", scenario="network map + cold boot", t0=t0)
    finally:
        try:
            conns["lab-b"].networkLookupByName(network).destroy()
        except libvirt.libvirtError:
            pass


def test_it_tells_the_truth_when_the_guest_dies_after_arriving(
    ferry, guest, people, lab_env, conns
):
    t0 = time.monotonic()
    name = guest("lab-a", memory_mib=256, pool="shared")
    vm.wait_heartbeat(name, timeout=60, after=1)
    conns["lab-a"].lookupByName(name).setAutostart(1)
    sync(ferry)
    plan = lab_plan(
        people,
        [(name, "lab-a", "lab-b", "live", None)],
        {"bandwidth_mib_s": 200, "verify_seconds": 8},
    )

    def panic_on_arrival(session, attempt):
        vm.panic(name, host="lab-b")

    attempt = run_plan(plan, people, fault=("verify.started", panic_on_arrival))
    assert attempt.status == "needs_attention", (attempt.status, attempt.error_message)
    assert attempt.error_class == "guest_died_after_switchover"
    assert vm.where_running(name) == []  # nothing restarted anywhere
    assert vm.domain_state(name, "lab-b")[0] == "shut off"
    src = conns["lab-a"].lookupByName(name)
    assert src.state()[0] == libvirt.VIR_DOMAIN_SHUTOFF and src.autostart() == 0
    decision = failure_of(attempt)["safety"]["decision"]
    assert decision["verdict"] == "needs_attention" and "runs nowhere" in decision["reason"]
    assert "resume_source" not in decision["actions"]
    promise(conns, name, runs_on=None, scenario="guest panics right after arrival", t0=t0)


# ----------------------------------------------------------------------- post-copy


def _postcopy_plan(ferry, guest, people):
    name = guest("lab-a", memory_mib=256, pool="shared", dirty_ws=96, dirty_rate=120)
    before = vm.wait_heartbeat(name, timeout=60, after=1)
    sync(ferry)
    plan = lab_plan(
        people,
        [(name, "lab-a", "lab-b", "live", None)],
        {"bandwidth_mib_s": 40, "on_no_convergence": "postcopy"},
    )
    return name, before, plan


def test_it_never_resumes_the_source_after_post_copy_and_follows_its_recovery(
    ferry, guest, people, lab_env, conns, settings
):
    settings.FERRY_POSTCOPY_RECOVER_SECONDS = 180
    t0 = time.monotonic()
    name, before, plan = _postcopy_plan(ferry, guest, people)
    with WorkerThreads(1):
        run = start_plan(plan, people)
        wait_for(
            lambda: ItemAttempt.objects.filter(run=run, postcopy_at__isnull=False).exists(),
            timeout=120,
            interval=0.2,
        )
        # Ferry asked; the fault is for a post-copy QEMU really runs (the source paused).
        wait_for(lambda: "post-copy" in (vm.domain_state(name, "lab-a") or ("", ""))[1], 30, 0.1)
        qmp = vm.QMP(name, "lab-b")  # opened while the destination still answers
        labctl.link_down("lab-b", "all")
        try:
            wait_for(
                lambda: vm.domain_state(name, "lab-a") == ("paused", "post-copy failed"),
                timeout=60,
            )
            # An operator's cancel now would lose the guest: refused, noted.
            item_cancel(item=plan.items.get(), actor=people["operator"], reason="lab: cancel")
            wait_for(
                lambda: RunEvent.objects.filter(run=run, kind="item.abort_refused").exists(),
                timeout=30,
            )
            time.sleep(5)
            assert vm.domain_state(name, "lab-a") == ("paused", "post-copy failed")
        finally:
            labctl.link_up("lab-b", "all")
        # libvirt 11.3.0 cannot resume a post-copy: the operator does it at QEMU level
        # (docs/safety.md); Ferry follows the VM to the destination and finishes the move.
        wait_for(lambda: vm.migration_status(name, "lab-a") == "postcopy-paused", timeout=30)
        vm.postcopy_recover_qemu(name, "lab-a", "lab-b", dst_qmp=qmp)
        wait_for(lambda: run_settled(run.pk), timeout=180, interval=0.5)
        qmp.close()
    attempt = ItemAttempt.objects.get(run=run)
    assert attempt.status == "completed", (attempt.status, attempt.error_message)
    kinds = set(RunEvent.objects.filter(run=run).values_list("kind", flat=True))
    assert {"item.postcopy", "item.postcopy_failed", "item.abort_refused"} <= kinds
    with pytest.raises(libvirt.libvirtError):
        conns["lab-a"].lookupByName(name)  # cleanup undefined the source after verify
    only_on(name, "lab-b", before)
    promise(conns, name, runs_on="lab-b", scenario="post-copy, link cut, recovered", t0=t0)


def test_it_leaves_both_sides_paused_when_the_link_stays_down(
    ferry, guest, people, lab_env, conns, settings
):
    settings.FERRY_POSTCOPY_RECOVER_SECONDS = 15
    t0 = time.monotonic()
    name, _before, plan = _postcopy_plan(ferry, guest, people)
    with WorkerThreads(1):
        run = start_plan(plan, people)
        wait_for(
            lambda: ItemAttempt.objects.filter(run=run, postcopy_at__isnull=False).exists(),
            timeout=120,
            interval=0.2,
        )
        # Ferry asked; the fault is for a post-copy QEMU really runs (the source paused).
        wait_for(lambda: "post-copy" in (vm.domain_state(name, "lab-a") or ("", ""))[1], 30, 0.1)
        qmp = vm.QMP(name, "lab-b")
        labctl.link_down("lab-b", "all")
        try:
            wait_for(lambda: run_settled(run.pk), timeout=120, interval=0.5)
            attempt = ItemAttempt.objects.get(run=run)
            assert attempt.status == "needs_attention", (attempt.status, attempt.error_message)
            assert attempt.error_class == "postcopy_failed"
            assert "both sides are left paused" in attempt.error_message
            assert vm.domain_state(name, "lab-a") == ("paused", "post-copy failed")
            # The destination's QEMU learns that the stream is gone by itself (its socket
            # read fails when TCP gives up); one CI run saw it still in "post-copy" when
            # Ferry had settled, with lab-b's libvirtd still inside the migration's finish
            # call. Its vCPUs wait for pages either way; wait for it to say so.
            wait_for(
                lambda: (vm.domain_state(name, "lab-b") or ("", ""))[1] == "post-copy failed",
                timeout=120,
                interval=1,
            )
            assert vm.where_running(name) in ([], ["lab-b"])  # vCPUs wait for pages
            decision = failure_of(attempt)["safety"]["decision"]
            assert "resume_source" not in decision["actions"]
            row = promise(conns, name, runs_on=None, scenario="post-copy, link kept down", t0=t0)
        finally:
            labctl.link_up("lab-b", "all")
        # Give the guest back to the lab for the next test: recover at QEMU level.
        wait_for(lambda: vm.migration_status(name, "lab-a") == "postcopy-paused", timeout=30)
        vm.postcopy_recover_qemu(name, "lab-a", "lab-b", dst_qmp=qmp)
        qmp.close()
        wait_for(lambda: vm.where_running(name) == ["lab-b"], timeout=60)
    assert row["twice"] == 0


# ----------------------------------------------------------------------- workers and connections


def test_it_reattaches_when_its_own_connection_is_dropped(ferry, guest, people, lab_env, conns):
    t0 = time.monotonic()
    name = guest("lab-a", memory_mib=256, pool="shared", dirty_ws=32, dirty_rate=5)
    before = vm.wait_heartbeat(name, timeout=60, after=1)
    sync(ferry)
    plan = lab_plan(people, [(name, "lab-a", "lab-b", "live", None)], {"bandwidth_mib_s": 8})
    with WorkerThreads(1):
        run = start_plan(plan, people)
        wait_for(lambda: ProgressSample.objects.filter(attempt__run=run).count() >= 2, timeout=60)
        dropped = labctl.disconnect_clients("lab-a")
        print(f"\n[ferry-lab] dropped clients of lab-a: {dropped}")
        wait_for(lambda: run_settled(run.pk), timeout=180, interval=0.5)
    attempt = ItemAttempt.objects.get(run=run)
    assert attempt.status == "completed", (attempt.status, attempt.error_message)
    only_on(name, "lab-b", before)
    promise(conns, name, runs_on="lab-b", scenario="worker's own connection dropped", t0=t0)


def test_it_fences_a_worker_stopped_beyond_its_lease(
    ferry, guest, people, lab_env, conns, tmp_path
):
    t0 = time.monotonic()
    name = guest("lab-a", memory_mib=256, pool="shared", dirty_ws=32, dirty_rate=5)
    before = vm.wait_heartbeat(name, timeout=60, after=1)
    sync(ferry)
    plan = lab_plan(people, [(name, "lab-a", "lab-b", "live", None)], {"bandwidth_mib_s": 6})
    log_path = tmp_path / "worker.log"
    log = open(log_path, "ab")  # noqa: SIM115 - closed at the end
    proc = worker_process(log)
    try:
        run = start_plan(plan, people)
        wait_for(
            lambda: ProgressSample.objects.filter(attempt__run=run).count() >= 2,
            timeout=90,
        )
        os.killpg(proc.pid, signal.SIGSTOP)
        attempt = ItemAttempt.objects.get(run=run)
        stale_epoch = attempt.lease_epoch
        wait_for(
            lambda: ItemAttempt.objects.get(pk=attempt.pk).lease_expires_at < timezone.now(),
            timeout=30,
        )
        outcome: dict = {}
        reconciler = threading.Thread(
            target=lambda: outcome.setdefault("result", reconcile_attempt(attempt.pk))
        )
        reconciler.start()
        wait_for(
            lambda: ItemAttempt.objects.get(pk=attempt.pk).lease_epoch > stale_epoch, timeout=30
        )
        time.sleep(2)
        os.killpg(proc.pid, signal.SIGCONT)  # the stale worker wakes up mid-migration
        reconciler.join(timeout=180)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        log.close()
    attempt.refresh_from_db()
    text = log_path.read_text(errors="replace")
    print(f"\n[ferry-lab] reconciler: {outcome.get('result')}")
    if not outcome.get("result", "").startswith("reattached: completed"):
        print(attempt.status, attempt.error_class, attempt.error_message, attempt.libvirt_error)
        print(json.dumps(failure_of(attempt), indent=1, default=str)[-6000:])
        print(text[-6000:])
    assert outcome.get("result", "").startswith("reattached: completed"), outcome
    assert attempt.status == "completed" and attempt.lease_epoch == stale_epoch + 1
    assert "fencing:" in text and "lost its lease" in text, text[-3000:]
    assert "fencing: refused" in text or "acts no more" in text
    only_on(name, "lab-b", before)
    promise(conns, name, runs_on="lab-b", scenario="worker SIGSTOPped past its lease", t0=t0)
