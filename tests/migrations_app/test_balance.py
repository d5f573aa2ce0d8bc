"""Balance planner: constraints never violated (checked independently of the planner and
through plan validation), the target reached when it can be, the reason when it cannot,
rules named, budgets kept, the same plan for the same group."""

import math
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from migrations_app.balance import (
    ALLOCATED,
    MEASURED,
    RSS_AT_SYNC,
    BalanceInputError,
    HostLoad,
    Rule,
    VmLoad,
    balance_group,
    plan_snapshot,
)
from migrations_app.balance.model import BalanceModel
from migrations_app.balance.rules import ANTI, rules_of
from migrations_app.checks import checks_run
from migrations_app.checks.snapshot import ANTI_PREFIX
from migrations_app.errors import PlanError
from migrations_app.policy import Policy
from tests.migrations_app.snapshots import make_host, make_item, make_snapshot, make_vm

GIB = 1024


def group_of(hosts, vms, *, policy=None):
    """A snapshot of one group with every VM as an item, host figures consistent with the
    VMs on them (free memory, vCPUs allocated, anti: residents)."""
    policy = policy or Policy()
    for host in hosts:
        resident = [v for v in vms if v.host_id == host.id]
        host.memory_free_mib = host.memory_total_mib - sum(v.memory_mib for v in resident)
        host.vcpus_allocated = sum(v.vcpus for v in resident)
        host.anti_members = {}
        for vm in resident:
            for tag in vm.tags:
                if tag.startswith(ANTI_PREFIX):
                    host.anti_members.setdefault(tag[len(ANTI_PREFIX) :], {})[vm.id] = vm.name
    items = [
        make_item(vm, iid=vm.id, source_id=vm.host_id, dest_id=None, policy=policy) for vm in vms
    ]
    return make_snapshot(hosts, items, policy=policy)


def hosts_of(count, *, memory_gib=64, cpus=16):
    return [
        make_host(i, f"h{i}", memory_total_mib=memory_gib * GIB, memory_free_mib=0, cpus=cpus)
        for i in range(1, count + 1)
    ]


def vm(vid, host_id, memory_gib=4, vcpus=2, **kw):
    return make_vm(
        vid,
        kw.pop("name", f"vm{vid}"),
        host_id=host_id,
        memory_mib=memory_gib * GIB,
        vcpus=vcpus,
        **kw,
    )


def loads_of(vms, cpu=1.0, used=0.75):
    return {
        v.id: VmLoad(cpu_cores=cpu * v.vcpus / 2, memory_used_mib=v.memory_mib * used) for v in vms
    }


def final_hosts(snapshot, result):
    where = {item.vm.id: item.vm.host_id for item in snapshot.items}
    for move in result.moves:
        where[move.vm_id] = move.destination_id
    return where


def assert_plan_is_sound(snapshot, result, rules=(), max_moves=None, max_mib=None):
    """Everything a balance plan promises, checked without the planner's own code."""
    by_vm = {item.vm.id: item for item in snapshot.items}
    hosts = snapshot.hosts
    policy = snapshot.plan.policy
    moved = [m.vm_id for m in result.moves]
    assert len(moved) == len(set(moved)), "a VM moves at most once"
    # Sequential capacity: each move fits with the earlier ones applied (stricter than
    # validation, which credits every departure up front).
    free = {h.id: h.memory_free_mib for h in hosts.values()}
    vcpus = {h.id: h.vcpus_allocated for h in hosts.values()}
    where = {item.vm.id: item.vm.host_id for item in snapshot.items}
    anti_rules = [r.tag for r in rules_of(rules) if r.kind == ANTI]
    for move in result.moves:
        item = by_vm[move.vm_id]
        v = item.vm
        assert where[v.id] == move.source_id != move.destination_id
        dest = hosts[move.destination_id]
        assert dest.group == result.group
        assert v.memory_mib <= free[dest.id] - policy.memory_reserve_mib
        assert (vcpus[dest.id] + v.vcpus) / dest.cpus <= policy.cpu_allocation_ratio
        neighbours = [by_vm[o] for o, h in where.items() if h == dest.id and o != v.id]
        for other in neighbours:
            assert not set(v.anti_groups) & set(other.vm.anti_groups), "anti: tag shared"
            for tag in anti_rules:
                assert not (tag in v.tags and tag in other.vm.tags), f"rule on {tag} broken"
        free[dest.id] -= v.memory_mib
        free[move.source_id] += v.memory_mib
        vcpus[dest.id] += v.vcpus
        vcpus[move.source_id] -= v.vcpus
        where[v.id] = dest.id
    # Affinity: VMs of a rule that started together end together.
    for rule in rules_of(rules):
        if rule.kind != "affinity":
            continue
        members = [i.vm for i in snapshot.items if rule.tag in i.vm.tags]
        if len({m.host_id for m in members}) == 1:
            assert len({where[m.id] for m in members}) == 1, f"{rule.label} split"
    # Budget.
    if max_moves is not None:
        assert len(result.moves) <= max_moves
    if max_mib is not None:
        assert result.memory_moved_mib <= max_mib
    assert result.memory_moved_mib == sum(by_vm[m].vm.memory_mib for m in moved)
    # Validation of the moves as a plan's items, in plan order: no blocker.
    found = checks_run(plan_snapshot(snapshot, result.moves))
    assert [f.message for _, findings in found for f in findings if f.blocks] == []


def assert_in_band(snapshot, result, loads):
    """Recompute every host's use after the plan and compare with the band."""
    where = final_hosts(snapshot, result)
    hosts = [h for h in snapshot.hosts.values() if h.group == result.group]
    mem = {h.id: 0.0 for h in hosts}
    cpu = {h.id: 0.0 for h in hosts}
    for item in snapshot.items:
        mem[where[item.vm.id]] += loads[item.vm.id].memory_used_mib
        cpu[where[item.vm.id]] += loads[item.vm.id].cpu_cores
    mean_m = sum(mem.values()) / sum(h.memory_total_mib for h in hosts)
    mean_c = sum(cpu.values()) / sum(h.cpus for h in hosts)
    x = result.target_pct / 100
    for h in hosts:
        assert abs(mem[h.id] / h.memory_total_mib - mean_m) <= x + 1e-9, h.name
        assert abs(cpu[h.id] / h.cpus - mean_c) <= x + 1e-9, h.name


# -- reaching the target ------------------------------------------------------------------


def test_it_reaches_the_spread_with_the_fewest_moves_when_it_can():
    hosts = hosts_of(4)
    vms = [vm(i, 1) for i in range(1, 9)] + [vm(9, 2), vm(10, 3)]
    snapshot = group_of(hosts, vms)
    loads = loads_of(vms)
    result = balance_group(snapshot, group="site-a", vm_loads=loads)
    assert result.reached and result.stop == "reached" and result.why_not == []
    assert_in_band(snapshot, result, loads)
    assert_plan_is_sound(snapshot, result)
    assert len(result.moves) == result.lower_bound["moves"] == 4
    assert all(m.source == "h1" for m in result.moves)
    first = result.moves[0]
    assert "h1 memory" in first.reason and "hosts outside ±10 pts" in first.reason
    assert first.improves and first.improves[0]["host"] == "h1"
    assert result.spread_after_pts["memory"] <= 10 < result.spread_before_pts["memory"]


def test_it_moves_nothing_when_the_group_is_already_in_band():
    hosts = hosts_of(2)
    vms = [vm(1, 1), vm(2, 2)]
    result = balance_group(group_of(hosts, vms), group="site-a", vm_loads=loads_of(vms))
    assert result.reached and result.stop == "already" and result.moves == []


def test_it_takes_the_vm_that_fits_the_excess_not_the_largest():
    # h1 must shed 19.2 GiB and h2 may take up to 36.8: its 24 and 32 GiB VMs both do it
    # in one move; ProxLB would move the largest, the planner moves less memory.
    hosts = hosts_of(3, memory_gib=128)
    vms = [vm(1, 1, 32), vm(2, 1, 24), vm(3, 1, 24), vm(4, 2, 16), vm(5, 2, 8)]
    vms += [vm(6, 3, 16), vm(7, 3, 16), vm(8, 3, 8)]
    snapshot = group_of(hosts, vms)
    loads = {v.id: VmLoad(cpu_cores=0.01, memory_used_mib=v.memory_mib) for v in vms}
    result = balance_group(snapshot, group="site-a", vm_loads=loads, target_pct=10)
    assert result.reached and len(result.moves) == 1
    assert result.moves[0].memory_moved_mib == 24 * GIB
    assert (result.moves[0].source, result.moves[0].destination) == ("h1", "h2")


# -- when it cannot -----------------------------------------------------------------------


def test_it_says_which_host_cannot_reach_the_band_when_a_pinned_vm_holds_it():
    hosts = hosts_of(3)
    pinned = vm(1, 1, 48, name="gpu-box", hostdevs=[{"type": "pci", "id": "0000:3b:00.0"}])
    vms = [pinned, vm(2, 1, 4), vm(3, 2, 4), vm(4, 3, 4)]
    snapshot = group_of(hosts, vms)
    result = balance_group(snapshot, group="site-a", vm_loads=loads_of(vms))
    assert not result.reached
    assert any(p["vm"] == "gpu-box" and "devices.passthrough" in p["reason"] for p in result.pinned)
    text = " ".join(result.why_not)
    assert "h1 cannot get below" in text and "Still outside the band: h1 memory" in text
    assert_plan_is_sound(snapshot, result)


def test_it_stops_at_the_move_budget_and_says_so():
    hosts = hosts_of(4)
    vms = [vm(i, 1) for i in range(1, 9)] + [vm(9, 2), vm(10, 3)]
    snapshot = group_of(hosts, vms)
    result = balance_group(snapshot, group="site-a", vm_loads=loads_of(vms), max_moves=2)
    assert not result.reached and result.stop == "budget" and len(result.moves) == 2
    assert "budget ran out (2 of at most 2 moves)" in result.why_not[0]
    assert_plan_is_sound(snapshot, result, max_moves=2)


def test_it_keeps_to_the_memory_budget():
    hosts = hosts_of(4)
    vms = [vm(i, 1) for i in range(1, 9)] + [vm(9, 2), vm(10, 3)]
    snapshot = group_of(hosts, vms)
    result = balance_group(snapshot, group="site-a", vm_loads=loads_of(vms), max_moved_mib=9 * GIB)
    assert result.memory_moved_mib <= 9 * GIB and len(result.moves) == 2
    assert not result.reached and "GiB moved" in result.why_not[0]


def test_it_names_the_check_that_blocks_every_improving_move():
    # The only room is on h2, whose vCPU ratio is already at the policy's limit.
    hosts = hosts_of(2, cpus=4)
    vms = [vm(i, 1, 8, vcpus=2) for i in range(1, 5)] + [vm(5, 2, 2, vcpus=16)]
    snapshot = group_of(hosts, vms)
    result = balance_group(snapshot, group="site-a", vm_loads=loads_of(vms, cpu=0.1))
    assert not result.reached and result.stop == "blocked"
    assert set(result.refused_by) == {"capacity.cpu"}
    assert "refused by the checks (capacity.cpu refused" in " ".join(result.why_not)


def test_it_makes_room_first_when_the_checks_refuse_the_best_move():
    # big (14 GiB) would balance the group alone, but h2 has only 7 GiB of unallocated
    # memory: moving s (16 GiB configured, 1 GiB in use) to h1 first makes the room.
    hosts = hosts_of(2)
    device = [{"type": "pci", "id": "0000:3b:00.0"}]
    vms = [vm(1, 1, 30, name="p", hostdevs=device), vm(2, 1, 14, name="big")]
    vms += [vm(3, 2, 40, name="t", hostdevs=device), vm(4, 2, 16, name="s")]
    snapshot = group_of(hosts, vms)
    used = {1: 30, 2: 14, 3: 5, 4: 1}
    loads = {v.id: VmLoad(cpu_cores=0.01, memory_used_mib=used[v.id] * GIB) for v in vms}
    result = balance_group(snapshot, group="site-a", vm_loads=loads)
    assert result.reached
    assert [(m.vm, m.destination) for m in result.moves] == [("s", "h1"), ("big", "h2")]
    assert "Makes room for the next move" in result.moves[0].reason
    assert_plan_is_sound(snapshot, result)
    assert_in_band(snapshot, result, loads)


def test_it_swaps_two_vms_when_no_single_move_helps():
    # Memory is balanced, CPU is not: any single move upsets memory, the swap of two
    # 4 GiB VMs with 4 and 2 cores fixes CPU and leaves memory as it was.
    hosts = hosts_of(2)
    vms = [vm(1, 1, 16), vm(3, 1, 4), vm(2, 2, 4), vm(4, 2, 16)]
    snapshot = group_of(hosts, vms)
    cores = {1: 2.0, 3: 4.0, 2: 2.0, 4: 0.5}
    loads = {v.id: VmLoad(cpu_cores=cores[v.id], memory_used_mib=v.memory_mib) for v in vms}
    result = balance_group(snapshot, group="site-a", vm_loads=loads)
    assert result.reached
    assert [(m.vm, m.destination) for m in result.moves] == [("vm2", "h1"), ("vm3", "h2")]
    assert "The next move completes it" in result.moves[0].reason
    assert "Completes the previous move" in result.moves[1].reason
    assert_plan_is_sound(snapshot, result)
    assert_in_band(snapshot, result, loads)


# -- rules --------------------------------------------------------------------------------


def test_it_names_the_anti_affinity_rule_that_refused_a_better_move():
    hosts = hosts_of(3)
    hot = [vm(1, 1, 16, name="db-1", tags=("db",))] + [vm(i, 1, 4) for i in (2, 3, 4)]
    vms = hot + [vm(5, 2, 2, name="db-2", tags=("db",)), vm(6, 3, 8), vm(7, 3, 8)]
    snapshot = group_of(hosts, vms)
    rules = [Rule(ANTI, "db")]
    loads = {v.id: VmLoad(cpu_cores=0.5, memory_used_mib=v.memory_mib) for v in vms}
    result = balance_group(snapshot, group="site-a", vm_loads=loads, rules=rules)
    assert_plan_is_sound(snapshot, result, rules)
    refused = [p for m in result.moves for p in m.passed_over]
    assert any(
        p["vm"] == "db-1"
        and p["host"] == "h2"
        and "anti-affinity rule 'db'" in p["refused_by"][0]["message"]
        for p in refused
    )
    assert any("rule.anti-affinity" in m.reason for m in result.moves)
    assert final_hosts(snapshot, result)[1] != 2


def _one_movable(first, second, *, tags):
    """h1: a pinned 16 GiB VM and `first` (8 GiB); h2: `second` (2 GiB); only `first` can
    improve the balance, by moving to h2."""
    hosts = hosts_of(2)
    pinned = vm(9, 1, 16, name="pinned", hostdevs=[{"type": "pci", "id": "0000:3b:00.0"}])
    vms = [pinned, vm(1, 1, 8, name=first, tags=tags), vm(2, 2, 2, name=second, tags=tags)]
    return group_of(hosts, vms), loads_of(vms)


def test_it_reports_the_rule_when_it_leaves_no_way_to_balance():
    snapshot, loads = _one_movable("db-1", "db-2", tags=("db",))
    result = balance_group(
        snapshot, group="site-a", vm_loads=loads, rules=[{"kind": ANTI, "tag": "db"}]
    )
    assert not result.reached and result.moves == [] and result.stop == "blocked"
    assert result.refused_by == {"rule.anti-affinity (anti-affinity rule 'db')": 1}
    assert "anti-affinity rule 'db'" in " ".join(result.why_not)
    free = balance_group(snapshot, group="site-a", vm_loads=loads)
    assert [m.vm for m in free.moves] == ["db-1"]


def test_it_honours_anti_tags_through_the_affinity_check():
    snapshot, loads = _one_movable("a-1", "a-2", tags=("anti:pair",))
    result = balance_group(snapshot, group="site-a", vm_loads=loads)
    assert result.moves == [] and result.refused_by == {"affinity (anti:pair)": 1}


def test_it_moves_affinity_members_together_and_names_the_rule():
    hosts = hosts_of(2)
    pinned = vm(9, 1, 18, name="pinned", hostdevs=[{"type": "pci", "id": "0000:3b:00.0"}])
    web = [vm(i, 1, 7, name=f"web-{i}", tags=("web",)) for i in (1, 2)]
    vms = [pinned, *web, vm(3, 2, 2)]
    snapshot = group_of(hosts, vms)
    loads = {v.id: VmLoad(cpu_cores=0.01, memory_used_mib=v.memory_mib) for v in vms}
    rules = [Rule("affinity", "web", name="web tier")]
    result = balance_group(snapshot, group="site-a", vm_loads=loads, rules=rules)
    assert_plan_is_sound(snapshot, result, rules)
    assert result.reached
    assert [(m.vm, m.destination) for m in result.moves] == [("web-1", "h2"), ("web-2", "h2")]
    assert result.moves[0].rule == "affinity rule 'web tier'"
    assert result.moves[0].reason.startswith("Moves with web-2 (affinity rule 'web tier')")


def test_it_leaves_a_broken_affinity_rule_alone_and_says_so():
    hosts = hosts_of(2)
    vms = [vm(1, 1, 24, name="web-1", tags=("web",)), vm(2, 2, 2, name="web-2", tags=("web",))]
    result = balance_group(
        group_of(hosts, vms),
        group="site-a",
        vm_loads=loads_of(vms),
        rules=[Rule("affinity", "web")],
    )
    assert result.moves == [] and not result.reached
    assert all("affinity rule 'web' is already broken" in p["reason"] for p in result.pinned)


# -- inputs -------------------------------------------------------------------------------


def test_it_labels_where_each_load_figure_comes_from():
    hosts = hosts_of(2)
    vms = [vm(1, 1, 8), vm(2, 1, 8, memory_rss_mib=3000), vm(3, 1, 8), vm(4, 2, 2)]
    snapshot = group_of(hosts, vms)
    loads = {3: VmLoad(cpu_cores=0.5, memory_used_mib=2048)}
    result = balance_group(snapshot, group="site-a", vm_loads=loads)
    assert result.load_sources == {
        "memory": {ALLOCATED: 2, RSS_AT_SYNC: 1, MEASURED: 1},
        "cpu": {ALLOCATED: 3, MEASURED: 1},
    }
    sources = {m.vm: (m.memory_source, m.cpu_source) for m in result.moves}
    assert all(
        pair in ((ALLOCATED, ALLOCATED), (RSS_AT_SYNC, ALLOCATED), (MEASURED, MEASURED))
        for pair in sources.values()
    )


def test_it_keeps_what_a_host_uses_beyond_its_vms_in_place():
    hosts = hosts_of(2)
    vms = [vm(1, 1, 8), vm(2, 2, 8)]
    snapshot = group_of(hosts, vms)
    loads = loads_of(vms)
    # h2 runs 30 GiB of its own (page cache, services): the VMs alone look balanced.
    host_loads = {2: HostLoad(memory_used_mib=6 * GIB + 30 * GIB, cpu_cores=1.0)}
    result = balance_group(snapshot, group="site-a", vm_loads=loads, host_loads=host_loads)
    assert [m.vm for m in result.moves] == ["vm2"]


@pytest.mark.parametrize(
    "kwargs, text",
    [
        ({"target_pct": 0}, "target_pct must be above 0"),
        ({"target_pct": "ten"}, "target_pct must be a number"),
        ({"max_moves": -1}, "max_moves must be a finite number ≥ 0"),
        ({"max_moves": 1.5}, "max_moves must be a whole number"),
        ({"max_moved_mib": float("nan")}, "max_moved_mib must be a finite number"),
        ({"rules": [{"kind": "near", "tag": "x"}]}, "kind must be one of"),
        ({"rules": [{"kind": ANTI, "tag": " "}]}, "the tag is empty"),
        ({"rules": [{"kind": ANTI, "tag": "x", "weight": 3}]}, "unknown field(s) weight"),
        ({"vm_loads": {1: VmLoad(cpu_cores=-1)}}, "CPU use of vm1 must be a finite number"),
        ({"group": "nowhere"}, "No host belongs to group 'nowhere'"),
    ],
)
def test_it_rejects_bad_input_with_a_clear_message(kwargs, text):
    hosts = hosts_of(2)
    vms = [vm(1, 1), vm(2, 2)]
    kwargs = {"group": "site-a", **kwargs}
    with pytest.raises(BalanceInputError) as caught:
        balance_group(group_of(hosts, vms), **kwargs)
    assert text in str(caught.value) and isinstance(caught.value, PlanError)


def test_it_needs_two_balanceable_hosts_and_lists_the_ones_left_out():
    hosts = hosts_of(3)
    hosts[2].state = "maintenance"
    hosts[1].cpus = None
    with pytest.raises(BalanceInputError, match="has 1 host"):
        balance_group(group_of(hosts, [vm(1, 1)]), group="site-a")
    hosts[1].cpus = 16
    result = balance_group(group_of(hosts, [vm(1, 1)]), group="site-a")
    assert result.excluded_hosts == [{"host": "h3", "reason": "maintenance, not active"}]


# -- determinism and the adapter ----------------------------------------------------------


def _busy_group(seed):
    rng = random.Random(seed)
    hosts = hosts_of(6, memory_gib=96, cpus=24)
    vms = []
    for i in range(1, 41):
        host = 1 + min(int(rng.expovariate(0.8)), 5)
        tags = rng.choice([(), (), ("anti:g1",), ("db",), ("web",)])
        vms.append(vm(i, host, rng.choice([2, 4, 8]), rng.choice([1, 2, 4]), tags=tags))
    loads = {v.id: VmLoad(rng.uniform(0.1, 2.0), v.memory_mib * rng.uniform(0.3, 1.0)) for v in vms}
    return hosts, vms, loads


def test_it_gives_the_same_plan_for_the_same_group_whatever_the_order():
    rules = [Rule(ANTI, "db")]
    hosts, vms, loads = _busy_group(7)
    first = balance_group(group_of(hosts, vms), group="site-a", vm_loads=loads, rules=rules)
    hosts, vms, loads = _busy_group(7)
    again = balance_group(group_of(hosts, vms), group="site-a", vm_loads=loads, rules=rules)
    assert first.as_dict() == again.as_dict() and first.moves
    hosts, vms, loads = _busy_group(7)
    random.Random(1).shuffle(vms)
    shuffled = balance_group(
        group_of(list(reversed(hosts)), vms), group="site-a", vm_loads=loads, rules=rules
    )
    assert [(m.vm, m.destination) for m in shuffled.moves] == [
        (m.vm, m.destination) for m in first.moves
    ]


def test_it_leaves_the_ledger_as_it_was_after_trying_a_move():
    hosts, vms, loads = _busy_group(3)
    vms[0].tags = ("anti:g1",)
    snapshot = group_of(hosts, vms)
    model = BalanceModel(
        snapshot, group="site-a", target_pct=10, rules=(), vm_loads=loads, host_loads=None
    )

    def state():
        ledger = model.ctx.ledger
        return (
            {k: v for k, v in ledger.in_mem.items() if v},
            {k: v for k, v in ledger.out_mem.items() if v},
            {k: v for k, v in ledger.in_vcpus.items() if v},
            {k: v for k, v in ledger.out_vcpus.items() if v},
            set(ledger.leaving),
            {
                h: {g: dict(m) for g, m in gs.items() if m}
                for h, gs in ledger.arriving.items()
                if any(gs.values())
            },
            {k: v for k, v in ledger.pool_copy.items() if v},
        )

    before = state()
    for unit in model.units[:10]:
        for dest in sorted(unit.eligible)[:3]:
            model.try_unit(unit, dest, commit=False)
    assert state() == before
    unit, dest = next(
        (u, d)
        for u in model.units
        for d in sorted(u.eligible)
        if u.items[0].vm.anti_groups and not model.try_unit(u, d, commit=False)
    )
    assert model.try_unit(unit, dest, commit=True) == []
    assert state() != before
    model.undo_unit(unit)
    assert state() == before


# -- properties over small random groups --------------------------------------------------

TAGS = st.sampled_from([(), (), ("anti:a",), ("anti:b",), ("db",), ("web",), ("db", "web")])


@st.composite
def small_groups(draw):
    n_hosts = draw(st.integers(2, 5))
    hosts = [
        make_host(
            i,
            f"h{i}",
            memory_total_mib=draw(st.sampled_from([32, 48, 64])) * GIB,
            memory_free_mib=0,
            cpus=draw(st.sampled_from([4, 8, 16])),
            state=draw(st.sampled_from(["active"] * 5 + ["maintenance"])),
        )
        for i in range(1, n_hosts + 1)
    ]
    if sum(h.state == "active" for h in hosts) < 2:
        hosts[0].state = hosts[1].state = "active"
    vms, used = [], {h.id: 0 for h in hosts}
    for vid in range(1, draw(st.integers(1, 14)) + 1):
        host = hosts[draw(st.integers(0, n_hosts - 1))]
        size = draw(st.sampled_from([1, 2, 4, 8]))
        if used[host.id] + size * GIB > host.memory_total_mib - 2 * GIB:
            continue
        used[host.id] += size * GIB
        vms.append(
            vm(
                vid,
                host.id,
                size,
                draw(st.sampled_from([1, 2, 4])),
                tags=draw(TAGS),
                hostdevs=[{"type": "pci", "id": "x"}] if draw(st.integers(0, 9)) == 0 else [],
            )
        )
    loads = {
        v.id: VmLoad(
            cpu_cores=draw(st.floats(0.0, 4.0)),
            memory_used_mib=v.memory_mib * draw(st.floats(0.1, 1.0)),
        )
        for v in vms
        if draw(st.booleans())  # the others fall back to their allocation
    }
    rules = draw(
        st.sampled_from(
            [
                [],
                [Rule(ANTI, "db")],
                [Rule("affinity", "web")],
                [Rule(ANTI, "db"), Rule("affinity", "web")],
            ]
        )
    )
    budget = draw(st.sampled_from([None, None, 1, 3]))
    mib_budget = draw(st.sampled_from([None, None, 6 * GIB]))
    target = draw(st.sampled_from([5.0, 10.0, 20.0]))
    return hosts, vms, loads, rules, budget, mib_budget, target


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(small_groups())
def test_it_never_violates_a_constraint_and_always_explains_itself(case):
    hosts, vms, loads, rules, budget, mib_budget, target = case
    snapshot = group_of(hosts, vms)
    result = balance_group(
        snapshot,
        group="site-a",
        target_pct=target,
        max_moves=budget,
        max_moved_mib=mib_budget,
        rules=rules,
        vm_loads=loads,
    )
    assert_plan_is_sound(snapshot, result, rules, budget, mib_budget)
    if result.reached:
        assert result.why_not == []
        assert len(result.moves) >= result.lower_bound["moves"]
        assert result.memory_moved_mib >= result.lower_bound["memory_mib"]
        full = {**{v.id: VmLoad(v.vcpus, v.memory_mib) for v in vms}, **loads}
        active = [h for h in hosts if h.state == "active"]
        if all(v.host_id in {h.id for h in active} for v in vms):
            assert_in_band(group_of(active, vms), result, full)
    else:
        assert result.why_not and result.stop in ("budget", "blocked", "stuck")
    for move in result.moves:
        assert move.reason and move.improves


@settings(max_examples=60, deadline=None)
@given(
    st.integers(2, 6),
    st.integers(0, 30),
    st.lists(st.integers(0, 5), min_size=1, max_size=30),
)
def test_it_reaches_the_band_in_the_fewest_moves_for_equal_vms(n_hosts, extra, placement):
    # Equal hosts and equal VMs, generous capacity: the band is reachable whenever every
    # host can hold a whole number of VMs within it, and the fewest moves are known.
    hosts = hosts_of(n_hosts, memory_gib=256, cpus=64)
    vms = [vm(i + 1, 1 + p % n_hosts, 4, 2) for i, p in enumerate(placement + [0] * extra)]
    snapshot = group_of(hosts, vms)
    loads = {v.id: VmLoad(cpu_cores=1.0, memory_used_mib=4 * GIB) for v in vms}
    result = balance_group(snapshot, group="site-a", vm_loads=loads, target_pct=1.0)
    per_host = len(vms) / n_hosts
    band = 0.01 * 256 * GIB / (4 * GIB)  # VMs per host the band allows either side
    low, high = math.ceil(per_host - band - 1e-9), math.floor(per_host + band + 1e-9)
    if low * n_hosts <= len(vms) <= high * n_hosts:
        counts = [sum(v.host_id == h.id for v in vms) for h in hosts]
        fewest = max(sum(max(0, c - high) for c in counts), sum(max(0, low - c) for c in counts))
        assert result.reached
        assert len(result.moves) == fewest == result.lower_bound["moves"]
    else:
        assert not result.reached and result.why_not
    assert_plan_is_sound(snapshot, result)
