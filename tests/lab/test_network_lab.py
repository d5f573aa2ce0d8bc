"""The migration network and parallel connections on the real lab, driven by Ferry.

A host's migration network address (10.78.0.x, the lab's second bridge) takes QEMU's data
stream while the libvirt daemons talk over the management network (10.77.0.x); with TLS the
certificate is checked against the host name (the lab's certificates name lab-b and
10.77.0.2, never 10.78.0.2). Byte counters on both interfaces of both hosts show where the
data went. Parallel connections over TLS move the same busy guest as one connection did; the
times of both are printed and recorded (the closing note compares them).
"""

from __future__ import annotations

import pytest

libvirt = pytest.importorskip("libvirt")
from inventory.models import Host  # noqa: E402
from lab import labctl  # noqa: E402
from lab.guest import vm  # noqa: E402
from migrations_app.models import ItemAttempt  # noqa: E402
from tests.lab.test_execution_lab import (  # noqa: E402
    ferry,  # noqa: F401 - the fixture
    lab_plan,
    only_on,
    record,
    run_completed,
    run_settled,
    start_plan,
    sync,
)
from tests.migrations_app.execution.conftest import WorkerThreads, wait_for  # noqa: E402

pytestmark = [pytest.mark.lab, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def on_migration_network(ferry, lab_env):  # noqa: F811 - the imported fixture
    """The lab's hosts with their migration network addresses set, as an admin would."""
    for name, host in lab_env["hosts"].items():
        Host.objects.filter(name=name).update(migration_network_address=host["migration_ip"])
    return ferry


def move(people, name, src, dst, policy):
    return run_completed(lab_plan(people, [(name, src, dst, "live", None)], policy), people)


def test_it_sends_the_data_over_the_migration_network_with_tls_checked_against_the_host_name(
    on_migration_network, guest, people, lab_env
):
    name = guest("lab-a", memory_mib=256, dirty_ws=32, dirty_rate=10)
    before = vm.wait_heartbeat(name, timeout=60, after=1)
    sync(on_migration_network)
    assert Host.objects.get(name="lab-b").hostname == "lab-b"
    a0, b0 = labctl.link_counters("lab-a"), labctl.link_counters("lab-b")
    attempt, wall = move(people, name, "lab-a", "lab-b", {"require_tls": True})
    a1, b1 = labctl.link_counters("lab-a"), labctl.link_counters("lab-b")
    prepared = attempt.evidence["prepare"]
    assert "TLS" in prepared["flags"] and prepared["data_path"] == "migration network"
    assert prepared["destination_uri"] == "qemu+tls://10.77.0.2/system"
    assert prepared["params"][libvirt.VIR_MIGRATE_PARAM_URI] == "tcp://10.78.0.2"
    # verified against the name the certificate carries, not the migration address
    assert prepared["params"][libvirt.VIR_MIGRATE_PARAM_TLS_DESTINATION] == "lab-b"
    sent = {n: a1[n]["tx_bytes"] - a0[n]["tx_bytes"] for n in a0}
    got = {n: b1[n]["rx_bytes"] - b0[n]["rx_bytes"] for n in b0}
    print(f"\n[ferry-lab] lab-a sent {sent}, lab-b received {got}")
    memory = attempt.bytes_transferred
    assert memory and memory > 32 * 2**20
    assert sent["migration"] >= memory and got["migration"] >= memory
    # the management link carried only libvirt's control talk (and Ferry's own calls go
    # through unix sockets, outside these links)
    assert sent["mgmt"] < sent["migration"] / 10
    only_on(name, "lab-b", before)
    record(
        lab_env,
        "tls-migration-network",
        attempt,
        wall,
        migration_bytes=sent["migration"],
        mgmt_bytes=sent["mgmt"],
    )


def test_it_moves_a_busy_guest_over_parallel_tls_connections_and_times_one_against_four(
    on_migration_network, guest, people, lab_env
):
    name = guest("lab-a", memory_mib=256, dirty_ws=64, dirty_rate=30)
    before = vm.wait_heartbeat(name, timeout=60, after=1)
    sync(on_migration_network)
    policy = {"require_tls": True, "bandwidth_mib_s": 1000}
    one, wall_one = move(people, name, "lab-a", "lab-b", policy)
    assert "PARALLEL" not in one.evidence["prepare"]["flags"]
    before = only_on(name, "lab-b", before)
    sync(on_migration_network)
    four, wall_four = move(people, name, "lab-b", "lab-a", {**policy, "parallel_connections": 4})
    prepared = four.evidence["prepare"]
    assert "PARALLEL" in prepared["flags"] and "TLS" in prepared["flags"]
    assert prepared["params"][libvirt.VIR_MIGRATE_PARAM_PARALLEL_CONNECTIONS] == 4
    assert prepared["params"][libvirt.VIR_MIGRATE_PARAM_URI] == "tcp://10.78.0.1"
    only_on(name, "lab-a", before)
    ratio = one.total_time_ms / four.total_time_ms if four.total_time_ms else None
    print(f"\n[ferry-lab] TLS one connection {one.total_time_ms} ms, four {four.total_time_ms} ms")
    record(lab_env, "tls-one-connection", one, wall_one, dirty_rate=30)
    record(lab_env, "tls-four-connections", four, wall_four, dirty_rate=30, one_over_four=ratio)


def test_it_names_the_migration_network_when_its_address_does_not_answer(
    on_migration_network, guest, people, lab_env
):
    # 10.78.0.254 is the switch's side of the migration bridge: routed, but no QEMU listens
    name = guest("lab-a", memory_mib=256)
    before = vm.wait_heartbeat(name, timeout=60, after=1)
    sync(on_migration_network)
    Host.objects.filter(name="lab-b").update(migration_network_address="10.78.0.254")
    plan = lab_plan(people, [(name, "lab-a", "lab-b", "live", None)], {"require_tls": True})
    with WorkerThreads(1):
        run = start_plan(plan, people)
        wait_for(lambda: run_settled(run.pk), timeout=180, interval=0.5)
    attempt = ItemAttempt.objects.filter(run=run).earliest("pk")
    print(f"\n[ferry-lab] {attempt.status}: {attempt.error_message} | {attempt.libvirt_error}")
    assert attempt.status == "failed"
    assert "migration network address 10.78.0.254" in attempt.error_message
    only_on(name, "lab-a", before)
