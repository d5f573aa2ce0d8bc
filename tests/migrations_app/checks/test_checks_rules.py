"""The placement-rule checks on in-memory snapshots: anti-affinity and affinity by tag,
what the plan sends and takes away, a rule that was already split, placement units, and
the ledger's undo being the exact inverse of add (the balance planner relies on it)."""

from migrations_app.balance.rules import with_rules
from migrations_app.checks import checks_run
from migrations_app.checks.context import Ledger
from migrations_app.checks.rules import ANTI, TOGETHER, Rule, check_rule_anti, check_rule_together
from migrations_app.placement import affinity_units, placement_run
from tests.migrations_app.snapshots import ctx_of, make_host, make_item, make_snapshot, make_vm

DB = Rule(ANTI, "db", name="db apart")
WEB = Rule(TOGETHER, "web", name="web tier")


def world(rules, vms, dests=None):
    """Hosts h1..h3; every VM is an item (destination from `dests`, else none)."""
    hosts = [make_host(i, f"h{i}") for i in (1, 2, 3)]
    dests = dests or {}
    items = [
        make_item(vm, iid=vm.id, source_id=vm.host_id, dest_id=dests.get(vm.name)) for vm in vms
    ]
    return with_rules(make_snapshot(hosts, items), tuple(rules)), {i.vm.name: i for i in items}


def test_anti_affinity_refuses_a_host_where_a_vm_of_the_rule_stays_and_names_the_rule():
    snap, items = world(
        [DB], [make_vm(1, "db1", 1, tags=("db",)), make_vm(2, "db2", 2, tags=("db",))]
    )
    ctx = ctx_of(snap)
    finding = check_rule_anti(ctx, items["db1"], snap.hosts[2])
    assert finding.blocks and "anti-affinity rule 'db apart': db2" in finding.message
    assert not check_rule_anti(ctx, items["db1"], snap.hosts[3]).blocks
    # db2 leaves h2 in the same plan: h2 is free of the rule for db1.
    ctx.ledger.add_outbound(items["db2"], snap.hosts[3])
    assert not check_rule_anti(ctx, items["db1"], snap.hosts[2]).blocks
    # ...but not h3, where db2 now arrives.
    ctx.ledger.add_inbound(snap, items["db2"], snap.hosts[3])
    assert check_rule_anti(ctx, items["db1"], snap.hosts[3]).blocks


def test_affinity_requires_the_destination_of_the_vms_that_stay_or_went_first():
    vms = [make_vm(1, "web1", 1, tags=("web",)), make_vm(2, "web2", 1, tags=("web",))]
    snap, items = world([WEB], vms)
    ctx = ctx_of(snap)
    alone = check_rule_together(ctx, items["web1"], snap.hosts[2])
    assert alone.blocks and "affinity rule 'web tier': web2 on h1" in alone.message
    ctx.ledger.add(snap, items["web1"], snap.hosts[2])
    assert not check_rule_together(ctx, items["web2"], snap.hosts[2]).blocks
    assert check_rule_together(ctx, items["web2"], snap.hosts[3]).blocks


def test_affinity_only_warns_when_the_rule_was_split_before_the_plan():
    vms = [make_vm(1, "web1", 1, tags=("web",)), make_vm(2, "web2", 2, tags=("web",))]
    snap, items = world([WEB], vms)
    finding = check_rule_together(ctx_of(snap), items["web1"], snap.hosts[3])
    assert finding.severity == "warning" and "already split" in finding.message


def test_validation_accepts_a_plan_that_moves_an_affinity_group_together():
    vms = [make_vm(1, "web1", 1, tags=("web",)), make_vm(2, "web2", 1, tags=("web",))]
    together, _ = world([WEB], vms, dests={"web1": 2, "web2": 2})
    apart, _ = world([WEB], vms, dests={"web1": 2, "web2": 3})
    verdict = {
        name: {i.vm.name: [f.check_id for f in fs if f.blocks] for i, fs in checks_run(snap)}
        for name, snap in (("together", together), ("apart", apart))
    }
    assert verdict["together"] == {"web1": [], "web2": []}
    assert verdict["apart"]["web2"] == ["rule.affinity"]


def test_placement_groups_affinity_members_by_source_and_places_them_on_one_host():
    vms = [make_vm(i, f"web{i}", 1, tags=("web",)) for i in (1, 2)] + [
        make_vm(3, "web3", 2, tags=("web",))
    ]
    snap, items = world([WEB], vms)
    units = affinity_units(snap, list(items.values()))
    assert [[i.vm.name for i in unit] for unit in units] == [["web1", "web2"], ["web3"]]
    snap, _ = world([WEB], vms[:2])
    placements = placement_run(snap)
    assert len({p.destination_id for p in placements}) == 1 and placements[0].destination_id != 1
    assert "which move together (affinity rule 'web tier')" in placements[0].note["reason"]


def test_the_ledger_undo_is_the_exact_inverse_of_add():
    vms = [make_vm(1, "db1", 1, tags=("db", "anti:pair")), make_vm(2, "x", 1)]
    snap, items = world([DB], vms)
    ledger = Ledger()

    def state():
        return (
            {k: v for k, v in ledger.in_mem.items() if v},
            {k: v for k, v in ledger.out_mem.items() if v},
            {k: v for k, v in ledger.in_vcpus.items() if v},
            {k: v for k, v in ledger.out_vcpus.items() if v},
            {(k, g): m for k, d in ledger.arriving.items() for g, m in d.items() if m},
            {k: v for k, v in ledger.arriving_tags.items() if v},
            set(ledger.leaving),
            {k: v for k, v in ledger.pool_copy.items() if v},
        )

    ledger.add(snap, items["x"], snap.hosts[3])
    before = state()
    ledger.add(snap, items["db1"], snap.hosts[2])
    assert ledger.arriving_tags["db"] == {1: (2, "db1")}
    ledger.undo(snap, items["db1"], snap.hosts[2])
    assert state() == before
