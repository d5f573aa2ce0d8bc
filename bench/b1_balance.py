"""B1: balance a generated group of 100 hosts and 2,000 VMs with skewed load.

The group (seeded, so every run sees the same one): three host sizes (64 cores/512 GiB,
48/384, 32/256) in two CPU generations (a fifth of the VMs use host-passthrough, so they
only move within theirs; 1 % carry a passthrough device and never move); VMs of 2–64 GiB with vCPUs to match, placed with a skew (hot hosts get
three times their share, cold ones a third); measured memory in use 40–95 % of each VM's
size; measured CPU mostly light, with busy VMs and a few CPU-hot hosts that are not the
memory-hot ones, so memory and CPU pull in different directions. Rules: 100 anti:pair-N
tag pairs, 20 affinity groups of 2–3 co-located VMs and 10 anti-affinity groups of 3.

It times `balance_group` (target ±10 points on memory and CPU, no budget) from the
snapshot to the explained plan, runs ProxLB's greedy (bench/balance_greedy.py) on the
same model and checks, states the lower bound, and validates the plan the way a plan is
validated (every check on every item, destinations in plan order): zero blockers.

    .venv/bin/python bench/b1_balance.py [--seed N] [--hosts 100] [--vms 2000]
"""

import argparse
import os
import random
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dashboard.settings")
os.environ.setdefault("FERRY_DATA_DIR", tempfile.mkdtemp(prefix="ferry-b1-"))

import django  # noqa: E402

django.setup()

from balance_greedy import greedy_steps  # noqa: E402
from common import report  # noqa: E402

from migrations_app.balance import Rule, VmLoad, balance_group, plan_snapshot  # noqa: E402
from migrations_app.balance.model import BalanceModel  # noqa: E402
from migrations_app.balance.rules import rules_of  # noqa: E402
from migrations_app.checks import checks_run  # noqa: E402
from migrations_app.checks.cpu_models import guest_cpu, host_cpu  # noqa: E402
from migrations_app.checks.snapshot import (  # noqa: E402
    DiskInfo,
    HostInfo,
    ItemInfo,
    NetworkInfo,
    NicInfo,
    PlanInfo,
    PoolInfo,
    Snapshot,
    VMInfo,
)
from migrations_app.policy import Policy  # noqa: E402

GIB = 1024
TARGET_S = 5.0
SIZES = ((2, 1, 0.20), (4, 2, 0.25), (8, 4, 0.25), (16, 8, 0.17), (32, 8, 0.09), (64, 16, 0.04))
HOST_KINDS = ((64, 512, 0.5), (48, 384, 0.3), (32, 256, 0.2))


def generate(seed: int, n_hosts: int, n_vms: int):
    """(snapshot, vm loads, rules) of one group 'b1'."""
    rng = random.Random(seed)
    policy = Policy()
    kinds = [k for k in HOST_KINDS for _ in range(round(k[2] * n_hosts))][:n_hosts]
    while len(kinds) < n_hosts:
        kinds.append(HOST_KINDS[0])
    rng.shuffle(kinds)
    heat = [3.0] * (n_hosts * 15 // 100) + [1.6] * (n_hosts * 25 // 100)
    heat += [0.33] * (n_hosts * 20 // 100)
    heat += [1.0] * (n_hosts - len(heat))
    rng.shuffle(heat)
    cpu_hot = set(rng.sample([i for i in range(n_hosts) if heat[i] <= 1.0], n_hosts // 10))
    # Two CPU generations: host-passthrough guests only move within their own.
    generations = (
        host_cpu("", "Skylake-Server", "Intel", ("avx512f", "pku")),
        host_cpu("", "Cascadelake-Server", "Intel", ("avx512f", "avx512vnni", "pku")),
    )
    generation = [0 if rng.random() < 0.7 else 1 for _ in range(n_hosts)]
    hosts = [
        HostInfo(
            id=i + 1,
            name=f"b1-h{i:03d}",
            state="active",
            group="b1",
            transport="tls",
            tls_verified=True,
            hypervisor_type="QEMU",
            hypervisor_version=8_002_000,
            libvirt_version=10_000_000,
            arch="x86_64",
            cpu=generations[generation[i]],
            cpus=cores,
            memory_total_mib=gib * GIB,
            memory_free_mib=0,
            machine_types=frozenset({"pc-q35-8.2"}),
            domain_types=frozenset({"kvm"}),
            migration_address="",
            # As a registered host is: the source's libvirtd reaches it by its URI's name
            # (without one, network.migration rejects it as a peer).
            uri=f"qemu+tls://b1-h{i:03d}.example/system",
            pool_ids={1},
            network_names={"prod"},
        )
        for i, (cores, gib, _) in enumerate(kinds)
    ]
    alloc = [0] * n_hosts
    vcpus = [0] * n_hosts
    weights = [heat[i] * hosts[i].memory_total_mib for i in range(n_hosts)]
    vms, loads = [], {}
    sizes = [s[:2] for s in SIZES]
    probabilities = [s[2] for s in SIZES]

    def fits(i, mem, cpus):
        h = hosts[i]
        return alloc[i] + mem <= 0.92 * h.memory_total_mib - 4 * GIB and (
            vcpus[i] + cpus <= 3.5 * h.cpus
        )

    for v in range(n_vms):
        gib, cpus = rng.choices(sizes, probabilities)[0]
        mem = gib * GIB
        host = None
        for _ in range(60):
            i = rng.choices(range(n_hosts), weights)[0]
            if fits(i, mem, cpus):
                host = i
                break
        if host is None:
            host = next(i for i in range(n_hosts) if fits(i, mem, cpus))
        alloc[host] += mem
        vcpus[host] += cpus
        vm = VMInfo(
            id=v + 1,
            uuid=f"00000000-0000-0000-0000-{v + 1:012d}",
            name=f"b1-vm{v:04d}",
            host_id=host + 1,
            state="running",
            missing=False,
            vcpus=cpus,
            memory_mib=mem,
            cpu=guest_cpu("host-passthrough" if rng.random() < 0.2 else "host-model", "", ()),
            cpu_features=(),
            machine_type="pc-q35-8.2",
            arch="x86_64",
            domain_type="kvm",
            # A few carry a passthrough device: they load their host and never move.
            hostdevs=[{"type": "pci", "id": f"0000:3b:{v % 32:02x}.0"}]
            if rng.random() < 0.01
            else [],
            tags=(),
            dirty_rate_mib_s=None,
        )
        vm.disks = [
            DiskInfo(
                "vda", "disk", "network", f"rbd:vms/{vm.name}", 1, 40 << 30, 8 << 30, False, False
            )
        ]
        vm.nics = [
            NicInfo(f"52:54:00:00:{v >> 8:02x}:{v & 255:02x}", "network", "prod", "br", None)
        ]
        busy = rng.random() < 0.1
        util = rng.uniform(0.5, 0.9) if busy else min(0.6, rng.lognormvariate(-2.0, 0.6))
        if host in cpu_hot:
            util = min(0.95, util * 3)
        loads[vm.id] = VmLoad(cpu_cores=cpus * util, memory_used_mib=mem * rng.uniform(0.4, 0.95))
        vms.append(vm)

    # Rules, on VMs chosen so the group starts valid.
    by_host: dict = {}
    for vm in vms:
        by_host.setdefault(vm.host_id, []).append(vm)
    untagged = list(vms)
    rng.shuffle(untagged)

    def tag(vm, *tags):
        vm.tags = tuple(vm.tags) + tags

    pool = iter(untagged)
    for n in range(100):  # anti:pair-N on two hosts
        first = next(pool)
        second = next(v for v in pool if v.host_id != first.host_id)
        tag(first, f"anti:pair-{n}")
        tag(second, f"anti:pair-{n}")
    rules = []
    for n in range(10):  # anti-affinity rule: 3 VMs on 3 hosts
        chosen, hosts_used = [], set()
        for vm in pool:
            if vm.host_id not in hosts_used:
                chosen.append(vm)
                hosts_used.add(vm.host_id)
            if len(chosen) == 3:
                break
        for vm in chosen:
            tag(vm, f"db-{n}")
        rules.append(Rule("anti-affinity", f"db-{n}"))
    for n in range(20):  # affinity rule: 2-3 VMs together on one host
        anchor = next(pool)
        mates = [v for v in by_host[anchor.host_id] if v is not anchor and not v.tags][: 1 + n % 2]
        for vm in [anchor, *mates]:
            tag(vm, f"app-{n}")
        rules.append(Rule("affinity", f"app-{n}"))

    for i, host in enumerate(hosts):
        resident = by_host.get(host.id, [])
        # Measured CPU saturates: a host cannot run more than ~95 % of its cores.
        busy = sum(loads[v.id].cpu_cores for v in resident)
        if busy > 0.95 * host.cpus:
            scale = 0.95 * host.cpus / busy
            for v in resident:
                old = loads[v.id]
                loads[v.id] = VmLoad(old.cpu_cores * scale, old.memory_used_mib)
        used = sum(loads[v.id].memory_used_mib for v in resident)
        host.memory_free_mib = int(host.memory_total_mib - used - 4 * GIB)
        host.vcpus_allocated = vcpus[i]
        for vm in resident:
            for group in vm.anti_groups:
                host.anti_members.setdefault(group, {})[vm.id] = vm.name
    items = [
        ItemInfo(
            id=vm.id,
            position=vm.id,
            vm=vm,
            source_id=vm.host_id,
            destination_id=None,
            mode="live",
            storage_map={},
            network_map={},
            policy=policy,
            status="pending",
        )
        for vm in vms
    ]
    pool_info = PoolInfo(1, "ceph", "rbd", True, True, 10**15, {h.id for h in hosts})
    network = NetworkInfo(1, "prod", "br", None, {h.id for h in hosts})
    snapshot = Snapshot(
        plan=PlanInfo(None, "B1", "draft", None, None, policy),
        hosts={h.id: h for h in hosts},
        pools={1: pool_info},
        networks={"prod": network},
        items=items,
        other_plans={},
    )
    return snapshot, loads, rules


def validation_blockers(snapshot, moves) -> int:
    """Blockers when the plan's moves are validated as a plan's items, in plan order."""
    found = checks_run(plan_snapshot(snapshot, moves))
    return sum(1 for _, findings in found for f in findings if f.blocks)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--seed", type=int, default=20261020)
    parser.add_argument("--hosts", type=int, default=100)
    parser.add_argument("--vms", type=int, default=2000)
    parser.add_argument("--target", type=float, default=10.0)
    args = parser.parse_args()
    snapshot, loads, rules = generate(args.seed, args.hosts, args.vms)
    size = f"{args.hosts} hosts / {args.vms} VMs"

    started = time.perf_counter()
    result = balance_group(
        snapshot, group="b1", target_pct=args.target, rules=rules, vm_loads=loads
    )
    built_s = time.perf_counter() - started

    model = BalanceModel(
        snapshot,
        group="b1",
        target_pct=args.target,
        rules=rules_of(rules),
        vm_loads=loads,
        host_loads=None,
    )
    started = time.perf_counter()
    greedy, greedy_stop = greedy_steps(model)
    greedy_s = time.perf_counter() - started
    greedy_moves = sum(u.size for u, _ in greedy)
    greedy_gib = sum(u.moved_mib for u, _ in greedy) / GIB
    greedy_spread = max(model.spread()) * 100

    moves = len(result.moves)
    gib = result.memory_moved_mib / GIB
    bound = result.lower_bound
    bound_gib = bound["memory_mib"] / GIB
    before = max(result.spread_before_pts.values())
    after = max(result.spread_after_pts.values())
    blockers = validation_blockers(snapshot, result.moves)
    print(
        f"B1 {size}: mean memory {result.mean_pct['memory']} %, CPU {result.mean_pct['cpu']} %; "
        f"spread ±{before:.1f} → ±{after:.1f} pts (memory {result.spread_after_pts['memory']}, "
        f"CPU {result.spread_after_pts['cpu']}); {len(result.pinned)} VMs pinned; "
        f"replays {result.replays}; stop {result.stop}"
    )
    for line in result.why_not:
        print(f"  why not: {line}")
    print(
        f"  planner {moves} moves / {gib:.0f} GiB in {built_s:.2f} s; greedy {greedy_moves} "
        f"moves / {greedy_gib:.0f} GiB in {greedy_s:.2f} s ({greedy_stop}, spread "
        f"±{greedy_spread:.1f}); lower bound {bound['moves']} moves / {bound_gib:.0f} GiB; "
        f"validation blockers {blockers}"
    )
    over_bound = (moves / bound["moves"] - 1) * 100 if bound["moves"] else 0.0
    report(
        f"B1 balance {size}: target ±{args.target:g} pts reached",
        "yes" if result.reached else "no",
        "",
        "yes",
        result.reached and blockers == 0,
        f"spread ±{before:.1f} → ±{after:.1f} pts (memory {result.spread_after_pts['memory']}, "
        f"CPU {result.spread_after_pts['cpu']}); greedy: {greedy_stop}, ±{greedy_spread:.1f}; "
        f"validation of the plan: {blockers} blockers",
    )
    report(
        f"B1 balance {size}: moves",
        moves,
        "moves",
        f"< greedy ({greedy_moves})",
        moves < greedy_moves,
        f"greedy (ProxLB) {greedy_moves} moves; lower bound {bound['moves']} "
        f"(plan {over_bound:+.0f} % over it)",
    )
    report(
        f"B1 balance {size}: memory moved",
        round(gib),
        "GiB",
        f"< greedy ({greedy_gib:.0f} GiB)",
        gib < greedy_gib,
        f"greedy {greedy_gib:.0f} GiB; lower bound {bound_gib:.0f} GiB (for any plan, "
        "not one with the fewest moves)",
    )
    report(
        f"B1 balance {size}: time to build the plan",
        round(built_s, 2),
        "s",
        f"< {TARGET_S:g} s on 2 cores",
        built_s < TARGET_S,
        f"cpus {os.cpu_count()}; greedy {greedy_s:.2f} s",
    )


if __name__ == "__main__":
    main()
