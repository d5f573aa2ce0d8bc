"""vm.state, devices.passthrough, host.distinct, host.state, hypervisor.type,
hypervisor.version and machine.type: each passes and fails."""

from migrations_app.checks.hosts import (
    check_host_distinct,
    check_host_state,
    check_hypervisor_type,
    check_hypervisor_version,
    check_machine_type,
)
from migrations_app.checks.vm import check_devices_passthrough, check_vm_state
from tests.migrations_app.snapshots import ctx_of, make_host, two_hosts


def test_it_passes_vm_state_when_the_vm_runs_and_is_in_no_other_plan():
    snap, item, dest = two_hosts()
    assert check_vm_state(ctx_of(snap), item, dest).severity == "ok"
    item.vm.state = "paused"
    assert check_vm_state(ctx_of(snap), item, dest).severity == "ok"


def test_it_blocks_vm_state_when_the_vm_is_stopped_missing_moved_or_in_another_plan():
    snap, item, dest = two_hosts()
    item.vm.state = "shutoff"
    finding = check_vm_state(ctx_of(snap), item, dest)
    assert (
        finding.blocks and "shutoff" in finding.message and finding.evidence["state"] == "shutoff"
    )
    item.vm.state = "running"
    snap.other_plans[item.vm.id] = (9, "other plan", "approved")
    finding = check_vm_state(ctx_of(snap), item, dest)
    assert finding.blocks and "other plan" in finding.message
    snap.other_plans.clear()
    item.vm.host_id = 2
    finding = check_vm_state(ctx_of(snap), item, dest)
    assert finding.blocks and finding.evidence["now_on"] == "dst"
    item.vm.missing = True
    assert "not seen" in check_vm_state(ctx_of(snap), item, dest).message


def test_it_blocks_passthrough_devices_and_lists_them():
    snap, item, dest = two_hosts()
    assert check_devices_passthrough(ctx_of(snap), item, dest).severity == "ok"
    item.vm.hostdevs = [{"type": "pci", "id": "0000:3b:00.0", "mode": "subsystem"}]
    finding = check_devices_passthrough(ctx_of(snap), item, dest)
    assert finding.blocks and "0000:3b:00.0" in finding.message and finding.remedy


def test_it_blocks_host_distinct_when_destination_is_source_or_missing():
    snap, item, dest = two_hosts()
    assert check_host_distinct(ctx_of(snap), item, dest).severity == "ok"
    source = snap.hosts[1]
    assert check_host_distinct(ctx_of(snap), item, source).blocks
    finding = check_host_distinct(ctx_of(snap), item, None)
    assert finding.blocks and "no destination" in finding.message


def test_it_blocks_host_state_when_destination_is_not_active_or_source_unreachable():
    snap, item, dest = two_hosts()
    assert check_host_state(ctx_of(snap), item, dest).severity == "ok"
    snap.hosts[1].state = "maintenance"  # evacuating a host in maintenance is the point
    assert check_host_state(ctx_of(snap), item, dest).severity == "ok"
    for state in ("maintenance", "unreachable", "disabled"):
        dest.state = state
        finding = check_host_state(ctx_of(snap), item, dest)
        assert finding.blocks and state in finding.message
    dest.state = "active"
    snap.hosts[1].state = "unreachable"
    assert check_host_state(ctx_of(snap), item, dest).blocks


def test_it_blocks_hypervisor_type_when_hypervisors_or_domain_types_differ():
    snap, item, dest = two_hosts()
    assert check_hypervisor_type(ctx_of(snap), item, dest).severity == "ok"
    dest.hypervisor_type = "Xen"
    assert check_hypervisor_type(ctx_of(snap), item, dest).blocks
    dest.hypervisor_type = "QEMU"
    dest.domain_types = frozenset({"qemu"})
    finding = check_hypervisor_type(ctx_of(snap), item, dest)
    assert finding.blocks and "'kvm'" in finding.message


def test_it_blocks_an_older_destination_and_warns_on_a_newer_one():
    snap, item, dest = two_hosts()
    assert check_hypervisor_version(ctx_of(snap), item, dest).severity == "ok"
    dest.libvirt_version = 9_000_000
    finding = check_hypervisor_version(ctx_of(snap), item, dest)
    assert finding.blocks and "libvirt 9.0.0 < 10.0.0" in finding.message
    assert finding.evidence["libvirt_source"] == "10.0.0"
    dest.libvirt_version = 11_003_000
    dest.hypervisor_version = 10_000_002
    finding = check_hypervisor_version(ctx_of(snap), item, dest)
    assert finding.severity == "warning"
    dest.hypervisor_version = None
    assert check_hypervisor_version(ctx_of(snap), item, dest).severity == "warning"


def test_it_blocks_a_machine_type_the_destination_does_not_offer():
    snap, item, dest = two_hosts()
    assert check_machine_type(ctx_of(snap), item, dest).severity == "ok"
    dest.machine_types = frozenset({"pc-q35-7.2", "pc-i440fx-7.2"})
    finding = check_machine_type(ctx_of(snap), item, dest)
    assert finding.blocks and "pc-q35-8.2" in finding.message
    assert finding.evidence["destination_similar"] == ["pc-q35-7.2"]
    dest.machine_types = frozenset()
    assert check_machine_type(ctx_of(snap), item, dest).severity == "info"


def test_it_reads_machine_types_from_real_capabilities_xml():
    from inventory.libvirt_read import read_capabilities
    from tests.migrations_app.snapshots import fixture

    caps = read_capabilities(fixture("lab-a-capabilities.xml"))
    snap, item, _ = two_hosts()
    dest = make_host(2, "lab-a", machine_types=frozenset(caps["machine_types"]))
    snap.hosts[2] = dest
    item.vm.machine_type = "pc-q35-10.0"
    assert check_machine_type(ctx_of(snap), item, dest).severity == "ok"
    item.vm.machine_type = "pc-q35-99.0"
    assert check_machine_type(ctx_of(snap), item, dest).blocks
