"""Placement: bin packing with a ledger, spread/pack ranking, group preference,
determinism, explanations, and the shortcuts giving the exhaustive answer."""

from migrations_app.checks.snapshot import snapshot_load
from migrations_app.placement import placement_run
from migrations_app.policy import Policy
from migrations_app.services.plans import plan_add_vms, plan_create
from tests.migrations_app.snapshots import make_host, make_item, make_snapshot, make_vm


def _plan(hosts, vms, policy=None):
    items = [make_item(vm, iid=vm.id, source_id=vm.host_id, dest_id=None) for vm in vms]
    return make_snapshot(hosts, items, policy=policy)


def _chosen(placements):
    return [p.note.get("chosen") for p in placements]


def test_it_never_puts_two_vms_into_the_last_free_space():
    source = make_host(1, "src", memory_free_mib=0)
    a = make_host(2, "a", memory_free_mib=9 * 1024 + 1024)  # room for one 8 GiB VM
    b = make_host(3, "b", memory_free_mib=9 * 1024 + 1024)
    vms = [make_vm(i, f"vm{i}", memory_mib=8192) for i in (1, 2, 3)]
    placements = placement_run(_plan([source, a, b], vms))
    assert sorted(c for c in _chosen(placements) if c) == ["a", "b"]
    unplaced = [p for p in placements if p.destination_id is None]
    assert len(unplaced) == 1 and unplaced[0].note["rejected"]["capacity.memory"] == 3


def test_it_spreads_by_default_and_packs_on_request():
    source = make_host(1, "src")
    roomy = make_host(2, "roomy", memory_free_mib=100_000)
    snug = make_host(3, "snug", memory_free_mib=10_000)
    vm = make_vm(1, "vm1", memory_mib=4096)
    assert _chosen(placement_run(_plan([source, roomy, snug], [vm]))) == ["roomy"]
    packed = placement_run(_plan([source, roomy, snug], [vm], Policy(placement_strategy="pack")))
    assert _chosen(packed) == ["snug"] and "least memory" in packed[0].note["reason"]


def test_it_prefers_the_source_group_then_breaks_ties_by_name():
    source = make_host(1, "src", group="site-a")
    far = make_host(2, "far", group="site-b", memory_free_mib=200_000)
    near_b = make_host(4, "near-b", group="site-a")
    near_a = make_host(3, "near-a", group="site-a")
    placements = placement_run(_plan([source, far, near_b, near_a], [make_vm()]))
    assert _chosen(placements) == ["near-a"] and "site-a" in placements[0].note["reason"]


def test_it_is_deterministic_and_keeps_anti_affinity_members_apart():
    hosts = [make_host(1, "src", memory_free_mib=0)] + [make_host(i, f"h{i}") for i in (2, 3, 4)]
    vms = [make_vm(i, f"db{i}", tags=("anti:db",)) for i in (1, 2, 3)]
    first = _chosen(placement_run(_plan(hosts, vms)))
    again = _chosen(
        placement_run(_plan(hosts, [make_vm(i, f"db{i}", tags=("anti:db",)) for i in (1, 2, 3)]))
    )
    assert first == again and sorted(first) == ["h2", "h3", "h4"]
    four = vms + [make_vm(4, "db4", tags=("anti:db",))]
    placements = placement_run(_plan(hosts, four))
    assert placements[-1].destination_id is None
    assert placements[-1].note["rejected"]["affinity"] == 3


def test_it_explains_vms_that_cannot_move_anywhere():
    vm = make_vm(hostdevs=[{"type": "pci", "id": "0000:3b:00.0"}])
    placement = placement_run(_plan([make_host(1), make_host(2)], [vm]))[0]
    assert placement.destination_id is None
    assert "cannot move anywhere" in placement.note["reason"]
    assert placement.note["item_blockers"][0]["check"] == "devices.passthrough"


def test_it_counts_host_check_rejections_per_check():
    source = make_host(1, "src")
    old = make_host(2, "old", libvirt_version=9_000_000)
    down = make_host(3, "down", state="maintenance")
    good = make_host(4, "good")
    placement = placement_run(_plan([source, old, down, good], [make_vm()]))[0]
    assert placement.note["chosen"] == "good"
    assert placement.note["rejected"] == {"host.state": 1, "hypervisor.version": 1}


def test_its_shortcuts_give_the_exhaustive_answer_on_the_demo_inventory(demo, db):
    plan = plan_create(actor=None, name="all", policy={"memory_reserve_mib": 0})
    from inventory.models import VirtualMachine

    plan_add_vms(
        plan=plan, vms=list(VirtualMachine.objects.values_list("pk", flat=True)), actor=None
    )
    fast = placement_run(snapshot_load(plan))
    slow = placement_run(snapshot_load(plan), exhaustive=True)
    assert [(p.item_id, p.destination_id, p.note.get("rejected")) for p in fast] == [
        (p.item_id, p.destination_id, p.note.get("rejected")) for p in slow
    ]
    assert any(p.destination_id for p in fast) and any(p.destination_id is None for p in fast)
