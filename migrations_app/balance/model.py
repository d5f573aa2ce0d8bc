"""The balance model: one group's hosts with their load, the units that may move, and the
adapter that asks the product's own checks whether a move is allowed.

Feasibility is never decided here by arithmetic of its own: a move is allowed exactly when
the item checks placement uses (vm.state, devices.passthrough, storage.devices), the host
checks (through placement's per-kind filter) and the load checks (host.distinct,
capacity.memory, capacity.cpu, storage.capacity, affinity, rule.anti-affinity,
rule.affinity) pass; rules given to the planner join the snapshot's own
(rules.with_rules). The load checks read a `Ledger` that holds the plan's earlier moves,
applied in order: each move credits its source and charges its destination before
the next one is checked. Validation credits every planned departure up front, so it is
never stricter than this sequence and accepts every plan the planner builds.
"""

from dataclasses import dataclass

from migrations_app.balance.load import BalanceInputError, host_base, vm_load
from migrations_app.balance.rules import ANTI, LIVE_STATES, TOGETHER, with_rules
from migrations_app.checks import ITEM_CHECKS, CheckContext, Ledger
from migrations_app.placement import DYNAMIC, PLACEMENT_ITEM_CHECKS, Placer

EPS = 1e-9


@dataclass(slots=True, eq=False)
class Unit:
    """VMs that move together (one VM, or the members of an affinity rule on one host)."""

    uid: int
    items: tuple  # ItemInfo, in (name, id) order
    host: int  # index of the source host
    mem: float  # memory in use it takes along (MiB)
    cpu: float  # CPU cores it takes along
    moved_mib: int  # configured memory a migration moves (the move's cost)
    eligible: frozenset  # host indexes passing every host check for every member
    rule: str | None = None  # the affinity rule that binds the members
    size: int = 1  # VMs, so moves

    def __post_init__(self):
        self.size = len(self.items)

    @property
    def names(self) -> str:
        return ", ".join(i.vm.name for i in self.items)


class BalanceModel:
    """The group's state (loads per host, units, ledger) as a plan's moves are applied."""

    def __init__(self, snapshot, *, group, target_pct, rules, vm_loads, host_loads):
        snapshot = self.snapshot = with_rules(snapshot, rules)
        self.group = group
        self.x = target_pct / 100.0
        members = sorted(
            (h for h in snapshot.hosts.values() if h.group == group), key=lambda h: (h.name, h.id)
        )
        if not members:
            raise BalanceInputError(f"No host belongs to group {group!r}.")
        self.excluded: list[dict] = []
        self.hosts = []
        for host in members:
            why = None
            if host.state != "active":
                why = f"{host.state}, not active"
            elif not host.memory_total_mib or not host.cpus:
                why = "memory size or CPU count unknown (sync it)"
            if why:
                self.excluded.append({"host": host.name, "reason": why})
            else:
                self.hosts.append(host)
        if len(self.hosts) < 2:
            raise BalanceInputError(
                f"Group {group!r} has {len(self.hosts)} host(s) that can be balanced; "
                "balancing needs at least two active hosts with known capacity."
            )
        self.index = {h.id: i for i, h in enumerate(self.hosts)}
        n = len(self.hosts)
        self.cap_m = [float(h.memory_total_mib) for h in self.hosts]
        self.cap_c = [float(h.cpus) for h in self.hosts]
        self.total_cap_m = sum(self.cap_m)
        self.total_cap_c = sum(self.cap_c)

        # Load of every live VM of the group, from measurements or labelled fallbacks.
        self.load_of: dict = {}  # item id -> (mem, mem source, cpu, cpu source)
        self.items = []  # live items on balanced hosts
        vm_sum_m, vm_sum_c = [0.0] * n, [0.0] * n
        # A fixed order (not the snapshot's) so float sums, and so the plan, do not depend
        # on the order the items came in.
        seen = set()
        for item in sorted(snapshot.items, key=lambda i: (i.vm.name, i.vm.id, i.id)):
            vm = item.vm
            if item.storage_only or item.source_id not in self.index or vm.id in seen:
                continue
            seen.add(vm.id)
            if vm.state not in LIVE_STATES or vm.missing or vm.host_id != item.source_id:
                continue  # not running there: it loads nothing (item checks say why)
            load = vm_load(vm, (vm_loads or {}).get(vm.id))
            self.load_of[item.id] = load
            i = self.index[item.source_id]
            vm_sum_m[i] += load[0]
            vm_sum_c[i] += load[2]
            self.items.append(item)
        self.base_m, self.base_c = [0.0] * n, [0.0] * n
        for i, host in enumerate(self.hosts):
            self.base_m[i], self.base_c[i] = host_base(
                host, (host_loads or {}).get(host.id), vm_sum_m[i], vm_sum_c[i]
            )
        self.start_m = [self.base_m[i] + vm_sum_m[i] for i in range(n)]
        self.start_c = [self.base_c[i] + vm_sum_c[i] for i in range(n)]
        self.mean_m = sum(self.start_m) / self.total_cap_m
        self.mean_c = sum(self.start_c) / self.total_cap_c

        self.placer = Placer(snapshot, group=group)
        self.rules = rules
        self.pinned: list[dict] = []
        self.units: list[Unit] = []
        self._build_units()
        self.reset()

    # -- units ----------------------------------------------------------------------------
    def _item_blockers(self, item) -> list[str]:
        ctx = self.placer.ctx
        return [
            f"{cid}: {finding.message}"
            for cid, fn in ITEM_CHECKS
            if cid in PLACEMENT_ITEM_CHECKS and (finding := fn(ctx, item, None)).blocks
        ]

    def _eligible(self, item) -> tuple[frozenset, dict]:
        kind = self.placer.eligible_hosts(item)
        hosts = frozenset(
            self.index[h.id] for h in kind.eligible if h.id in self.index and h.id != item.source_id
        )
        return hosts, kind.rejected

    def _build_units(self) -> None:
        items = sorted(self.items, key=lambda i: (i.vm.name, i.vm.id))
        parent = list(range(len(items)))

        def find(k):
            while parent[k] != k:
                parent[k] = parent[parent[k]]
                k = parent[k]
            return k

        broken: dict = {}  # item position -> reason
        for rule in self.rules:
            if rule.kind != TOGETHER:
                continue
            bound = [k for k, item in enumerate(items) if rule.tag in item.vm.tags]
            # Members anywhere (also on hosts outside the balance) tell whether it holds.
            where = sorted(
                {
                    self.snapshot.hosts[i.vm.host_id].name
                    for i in self.snapshot.items
                    if rule.tag in i.vm.tags
                    and i.vm.state in LIVE_STATES
                    and not i.vm.missing
                    and i.vm.host_id in self.snapshot.hosts
                }
            )
            if len(where) > 1:
                for k in bound:
                    broken[k] = (
                        f"{rule.label} is already broken (its VMs run on {', '.join(where)}); "
                        "the planner leaves them in place"
                    )
                continue
            for k in bound[1:]:
                parent[find(k)] = find(bound[0])
        groups: dict = {}
        for k in range(len(items)):
            groups.setdefault(find(k), []).append(k)
        together_tags = [r for r in self.rules if r.kind == TOGETHER]
        anti_tags = {r.tag for r in self.rules if r.kind == ANTI}
        for root in sorted(groups, key=lambda r: groups[r][0]):
            ks = groups[root]
            members = tuple(items[k] for k in ks)
            reasons = []
            for k in ks:
                if k in broken:
                    reasons.append(broken[k])
                blockers = self._item_blockers(items[k])
                if blockers:
                    reasons.append(f"{items[k].vm.name}: " + " ".join(blockers))
            eligible = None
            rejected: dict = {}
            for item in members:
                hosts, why = self._eligible(item)
                eligible = hosts if eligible is None else eligible & hosts
                for cid, count in why.items():
                    rejected[cid] = rejected.get(cid, 0) + count
            rule = None
            if len(members) > 1:
                labels = [
                    r.label for r in together_tags if any(r.tag in m.vm.tags for m in members)
                ]
                rule = ", ".join(labels)
                shared_anti = [t for t in anti_tags if sum(t in m.vm.tags for m in members) > 1] + [
                    g
                    for g in {g for m in members for g in m.vm.anti_groups}
                    if sum(g in m.vm.anti_groups for m in members) > 1
                ]
                if shared_anti:
                    reasons.append(
                        f"{rule} binds VMs that an anti-affinity rule keeps apart "
                        f"({', '.join(sorted(shared_anti))}); the rules conflict"
                    )
            if not reasons and not eligible:
                parts = ", ".join(f"{cid} rejected {n}" for cid, n in sorted(rejected.items()))
                reasons.append(f"no other host of the group passes the host checks ({parts})")
            loads = [self.load_of[m.id] for m in members]
            source = self.index[members[0].source_id]
            if reasons:
                for item in members:
                    self.pinned.append(
                        {
                            "vm": item.vm.name,
                            "host": self.hosts[source].name,
                            "reason": "; ".join(reasons),
                        }
                    )
                continue
            self.units.append(
                Unit(
                    uid=len(self.units),
                    items=members,
                    host=source,
                    mem=sum(load[0] for load in loads),
                    cpu=sum(load[2] for load in loads),
                    moved_mib=sum(int(m.vm.memory_mib or 0) for m in members),
                    eligible=eligible,
                    rule=rule,
                )
            )

    # -- state ----------------------------------------------------------------------------
    def reset(self) -> None:
        """Back to the group as it is now: no move applied."""
        self.ctx = CheckContext(snapshot=self.snapshot, ledger=Ledger())
        self.used_m = list(self.start_m)
        self.used_c = list(self.start_c)
        self.moved: dict = {}  # uid -> destination index
        self.on_host: list[list[Unit]] = [[] for _ in self.hosts]
        for unit in self.units:
            self.on_host[unit.host].append(unit)

    def viol(self, i: int, m: float | None = None, c: float | None = None) -> float:
        """How far host i is outside the band, summed over memory and CPU (fraction)."""
        m = self.used_m[i] if m is None else m
        c = self.used_c[i] if c is None else c
        dm = abs(m / self.cap_m[i] - self.mean_m) - self.x
        dc = abs(c / self.cap_c[i] - self.mean_c) - self.x
        return (dm if dm > 0 else 0.0) + (dc if dc > 0 else 0.0)

    def deviation(self, i: int, m: float | None = None, c: float | None = None) -> tuple:
        """(memory, CPU) distance of host i from the group mean, as fractions."""
        m = self.used_m[i] if m is None else m
        c = self.used_c[i] if c is None else c
        return m / self.cap_m[i] - self.mean_m, c / self.cap_c[i] - self.mean_c

    def spread(self, used_m=None, used_c=None) -> tuple[float, float]:
        """The largest distance from the mean over hosts: (memory, CPU), as fractions."""
        used_m = self.used_m if used_m is None else used_m
        used_c = self.used_c if used_c is None else used_c
        return (
            max(abs(used_m[i] / self.cap_m[i] - self.mean_m) for i in range(len(self.hosts))),
            max(abs(used_c[i] / self.cap_c[i] - self.mean_c) for i in range(len(self.hosts))),
        )

    def reached(self) -> bool:
        return all(self.viol(i) <= EPS for i in range(len(self.hosts)))

    # -- checks ---------------------------------------------------------------------------
    def _blockers(self, item, dest) -> list:
        ctx = self.ctx
        return [f for _, fn in DYNAMIC if (f := fn(ctx, item, dest)).blocks]

    def _apply_item(self, item, dest, *, back=False) -> None:
        if back:
            self.ctx.ledger.undo(self.snapshot, item, dest)
        else:
            self.ctx.ledger.add(self.snapshot, item, dest)

    def try_unit(self, unit: Unit, b: int, *, commit: bool) -> list:
        """The blocking findings of moving the unit to host b after the moves applied so
        far (members in order, each seeing the previous); empty when allowed. With commit
        the move is applied when allowed; without, the state is left as it was."""
        dest = self.hosts[b]
        done = []
        # The members all leave: the affinity check must not see the later ones as staying
        # behind while the first is checked (each is marked properly when it is applied).
        leaving = self.ctx.ledger.leaving
        marked = [i.vm.id for i in unit.items if i.vm.id not in leaving] if unit.size > 1 else []
        leaving.update(marked)
        for item in unit.items:
            blockers = self._blockers(item, dest)
            if blockers:
                for earlier in reversed(done):
                    self._apply_item(earlier, dest, back=True)
                leaving.difference_update(marked)
                return blockers
            self._apply_item(item, dest)
            done.append(item)
        if not commit:
            for item in reversed(done):
                self._apply_item(item, dest, back=True)
            leaving.difference_update(marked)
            return []
        self._shift(unit, unit.host, b)
        self.moved[unit.uid] = b
        self.on_host[unit.host].remove(unit)
        return []

    def undo_unit(self, unit: Unit) -> None:
        """Take back the last committed move of this unit (it must be the latest one)."""
        b = self.moved.pop(unit.uid)
        for item in reversed(unit.items):
            self._apply_item(item, self.hosts[b], back=True)
        self._shift(unit, b, unit.host)
        self.on_host[unit.host].append(unit)
        self.on_host[unit.host].sort(key=lambda u: u.uid)

    def _shift(self, unit: Unit, a: int, b: int) -> None:
        self.used_m[a] -= unit.mem
        self.used_c[a] -= unit.cpu
        self.used_m[b] += unit.mem
        self.used_c[b] += unit.cpu

    def replay(self, steps) -> bool:
        """Reset and apply (unit, destination) steps in order; False at the first refusal
        (the state then holds the steps before it)."""
        self.reset()
        return all(not self.try_unit(unit, b, commit=True) for unit, b in steps)
