"""capacity.memory, capacity.cpu, storage.shared, storage.capacity, storage.devices."""

from migrations_app.checks.capacity import check_capacity_cpu, check_capacity_memory
from migrations_app.checks.snapshot import DiskInfo, PoolInfo
from migrations_app.checks.storage import (
    check_storage_capacity,
    check_storage_devices,
    check_storage_shared,
)
from tests.migrations_app.snapshots import (
    GIB,
    ctx_of,
    make_host,
    make_item,
    make_snapshot,
    make_vm,
    two_hosts,
)


def test_it_fits_memory_after_the_reserve_and_blocks_when_it_does_not():
    snap, item, dest = two_hosts(memory_free_mib=5120)
    finding = check_capacity_memory(ctx_of(snap), item, dest)
    assert finding.severity == "ok" and finding.evidence["room_mib"] == 4096
    dest.memory_free_mib = 5000
    finding = check_capacity_memory(ctx_of(snap), item, dest)
    assert finding.blocks and "1.0 GiB reserve" in finding.message


def test_it_counts_what_the_plan_already_sends_and_takes_away():
    snap, item, dest = two_hosts(memory_free_mib=9216)
    ctx = ctx_of(snap)
    ctx.ledger.in_mem[dest.id] = 8192  # an earlier item of this plan goes there
    finding = check_capacity_memory(ctx, item, dest)
    assert finding.blocks and "this plan already sends 8.0 GiB" in finding.message
    ctx.ledger.out_mem[dest.id] = 4096  # and a VM leaves that host in the same plan
    assert check_capacity_memory(ctx, item, dest).severity == "ok"


def test_it_keeps_the_vcpu_ratio_within_the_policy():
    snap, item, dest = two_hosts(cpus=4, vcpus_allocated=14)
    finding = check_capacity_cpu(ctx_of(snap), item, dest)
    assert finding.severity == "ok" and finding.evidence["ratio_after"] == 4.0
    item.vm.vcpus = 4
    finding = check_capacity_cpu(ctx_of(snap), item, dest)
    assert finding.blocks and "4.5:1" in finding.message.replace("4.50:1", "4.5:1")


def _local_setup(mode="live", dest_local_available=100 * GIB, storage_map=None):
    source = make_host(1, "src", pool_ids={1, 10})
    dest = make_host(2, "dst", pool_ids={1, 20})
    pools = [
        PoolInfo(1, "nfs-vms", "netfs", True, True, 4000 * GIB),
        PoolInfo(10, "local", "dir", False, True, 500 * GIB),
        PoolInfo(20, "local", "dir", False, True, dest_local_available),
    ]
    disk = DiskInfo("vda", "disk", "file", "/var/lib/x.qcow2", 10, 40 * GIB, 30 * GIB, False, False)
    vm = make_vm(disks=[disk])
    item = make_item(vm, mode=mode, storage_map=storage_map or {})
    return make_snapshot([source, dest], [item], pools=pools), item, dest


def test_it_passes_storage_shared_when_disks_are_on_shared_storage():
    snap, item, dest = two_hosts()
    finding = check_storage_shared(ctx_of(snap), item, dest)
    assert finding.severity == "ok" and finding.evidence["disks"][0]["pool"] == "nfs-vms"


def test_it_blocks_local_disks_in_live_mode_and_plans_a_copy_in_live_copy_mode():
    snap, item, dest = _local_setup()
    finding = check_storage_shared(ctx_of(snap), item, dest)
    assert finding.blocks and "live with storage copy" in finding.remedy
    snap, item, dest = _local_setup(mode="live_copy")
    finding = check_storage_shared(ctx_of(snap), item, dest)
    assert finding.severity == "info"
    assert finding.evidence["copies"] == [
        {"disk": "vda", "from_pool": "local", "to_pool": "local", "gib": 30.0}
    ]


def test_it_blocks_a_copy_without_a_target_pool():
    snap, item, dest = _local_setup(mode="live_copy")
    snap.pools[20].name = "scratch"  # no pool of the same name on the destination
    snap.pool_index.clear()
    finding = check_storage_shared(ctx_of(snap), item, dest)
    assert finding.blocks and "storage map" in finding.remedy


def test_it_checks_room_in_the_target_pool_including_the_plans_other_copies():
    snap, item, dest = _local_setup(mode="live_copy")
    assert check_storage_capacity(ctx_of(snap), item, dest).severity == "ok"
    ctx = ctx_of(snap)
    ctx.ledger.pool_copy[20] = 80 * GIB
    finding = check_storage_capacity(ctx, item, dest)
    assert finding.blocks and finding.evidence["pools"][0]["already_copied_by_plan_gib"] == 80
    snap, item, dest = _local_setup(mode="live_copy", dest_local_available=35 * GIB)
    assert check_storage_capacity(ctx_of(snap), item, dest).severity == "warning"  # thin


def test_it_moves_only_disks_in_storage_only_mode():
    snap, item, dest = _local_setup(mode="storage_only", storage_map={10: 1})
    source = snap.hosts[1]
    finding = check_storage_shared(ctx_of(snap), item, source)
    assert finding.severity == "info" and finding.evidence["copies"][0]["to_pool"] == "nfs-vms"
    snap, item, _ = _local_setup(mode="storage_only")
    assert check_storage_shared(ctx_of(snap), item, source).blocks


def test_it_flags_local_media_raw_block_devices_and_shareable_disks():
    snap, item, dest = two_hosts()
    assert check_storage_devices(ctx_of(snap), item, dest).severity == "ok"
    cdrom = DiskInfo(
        "sda", "cdrom", "file", "/var/lib/libvirt/iso/d.iso", None, None, None, False, True
    )
    item.vm.disks.append(cdrom)
    finding = check_storage_devices(ctx_of(snap), item, dest)
    assert finding.severity == "warning" and "d.iso" in finding.message
    block = DiskInfo("vdb", "disk", "block", "/dev/sdz", None, None, None, False, False)
    item.vm.disks.append(block)
    finding = check_storage_devices(ctx_of(snap), item, dest)
    assert finding.blocks and "/dev/sdz" in finding.message
    item.vm.disks = [DiskInfo("vdc", "disk", "file", "/x", None, None, None, True, False)]
    assert check_storage_devices(ctx_of(snap), item, dest).blocks


def test_it_ignores_host_checks_for_a_pool_copy_within_one_host():
    source = make_host(1)
    item = make_item(make_vm(), mode="storage_only", dest_id=1)
    snap = make_snapshot([source], [item])
    assert check_capacity_memory(ctx_of(snap), item, source).severity == "ok"
    assert check_capacity_cpu(ctx_of(snap), item, source).severity == "ok"


def test_it_blocks_a_look_alike_shared_pool_a_probe_found_not_shared():
    snap, item, dest = two_hosts()
    assert check_storage_shared(ctx_of(snap), item, dest).severity == "ok"
    # Same pool UUID and path on both hosts, but a file written on one is not on the other.
    snap.share_disproven = {(1, 1, 2)}
    finding = check_storage_shared(ctx_of(snap), item, dest)
    assert finding.blocks and "probe" in finding.message
    assert "live with storage copy" in finding.remedy
