"""Automatic placement: choose destinations for a whole plan at once.

1. Item checks first: a VM that cannot move at all (stopped, passthrough devices, raw
   block devices) is not placed, and its note says why.
2. Filter: every host check (state, hypervisor, versions, machine type, CPU, storage,
   network, transport) must pass. These checks read only the item and the host, so they
   are evaluated once per *kind* of VM/source and *kind* of host (same CPU, versions,
   networks...) and shared by every item of that kind; storage reachability is a set
   intersection over the pools' hosts. That is what keeps 10,000 VMs x 1,000 hosts fast.
3. Rank and pack: items go largest memory first (first-fit decreasing); for each, hosts
   of the source's group come first, then by most memory left after placement ("spread")
   or least ("pack"), ties by host name and id, so the same input gives the same answer.
   The load checks (memory, vCPU ratio, pool space, anti-affinity, distinct host) run on
   the ranked hosts against a ledger that already holds this plan's earlier placements,
   so two VMs never both take the last 8 GiB.

4. Rules (checks.rules): anti-affinity and affinity rules by tag are load checks like
   the others, so a refused host is counted under the rule's check and the note names the
   rule. VMs of one affinity rule on one source host are placed as a unit: the first host
   (in rank order) that takes every one of them, or none of them.

Placement only counts memory freed by VMs leaving a host when their destination was fixed
before it ran (it cannot know whether an item it has not placed yet will leave), so it is
never more optimistic than validation, which credits every planned departure.
"""

import heapq
from dataclasses import dataclass, field

from migrations_app.checks import HOST_CHECKS, ITEM_CHECKS, LOAD_CHECKS, CheckContext, Ledger
from migrations_app.checks.capacity import memory_room_mib
from migrations_app.checks.hosts import check_host_distinct
from migrations_app.checks.rules import TOGETHER
from migrations_app.checks.snapshot import HostInfo, ItemInfo, Snapshot

PLACEMENT_ITEM_CHECKS = ("vm.state", "devices.passthrough", "storage.devices")
DYNAMIC = (("host.distinct", check_host_distinct),) + LOAD_CHECKS
CLASS_CHECKS = tuple((cid, fn) for cid, fn in HOST_CHECKS if cid != "storage.shared")
_STORAGE_SHARED = dict(HOST_CHECKS)["storage.shared"]


@dataclass
class Placement:
    """The outcome for one item: the chosen host (or None) and the explanation."""

    item_id: int
    destination_id: int | None
    note: dict = field(default_factory=dict)


def _host_class(h: HostInfo) -> tuple:
    # Everything the class checks read about a destination, except its name (messages).
    return (
        h.state,
        h.hypervisor_type,
        h.hypervisor_version,
        h.libvirt_version,
        h.domain_types,
        h.machine_types,
        h.cpu,
        frozenset(h.network_names),
        h.transport,
        h.tls_verified,
    )


def _item_kind(snapshot: Snapshot, item: ItemInfo) -> tuple:
    # Everything the host checks read about the item and its source (see checks/*).
    vm = item.vm
    source = snapshot.hosts.get(item.source_id)
    source_key = (
        (
            source.state,
            source.group,
            source.hypervisor_type,
            source.hypervisor_version,
            source.libvirt_version,
            source.cpu,
            source.transport,
            source.tls_verified,
        )
        if source
        else None
    )
    return (
        vm.cpu,
        vm.domain_type,
        vm.machine_type,
        tuple((n.network_name, n.bridge, n.vlan) for n in vm.nics),
        tuple((d.device, d.pool_id, d.source_type) for d in vm.disks),
        item.mode,
        tuple(sorted(item.storage_map.items())),
        tuple(sorted(item.network_map.items())),
        item.policy.require_tls,
        item.policy.memory_reserve_mib,
        source_key,
    )


class _Kind:
    """The hosts that pass every host check for one kind of item, and why others fail."""

    def __init__(self, eligible: list, rejected: dict, example: dict):
        self.eligible = eligible  # HostInfo, in name order
        self.rejected = rejected  # check id -> hosts rejected
        self.example = example  # check id -> one rejected host's name
        self.heap: list | None = None


class Placer:
    """Places items of one snapshot; `exhaustive=True` evaluates every check on every host
    (slow; tests use it to prove the shortcuts give the same answer)."""

    def __init__(self, snapshot: Snapshot, *, exhaustive: bool = False, group=None, scope=None):
        self.snapshot = snapshot
        self.exhaustive = exhaustive
        self.strategy = snapshot.plan.policy.placement_strategy
        self.hosts = sorted(
            (
                h
                for h in snapshot.hosts.values()
                if (group is None or h.group == group) and (scope is None or h.group in scope)
            ),
            key=lambda h: (h.name, h.id),
        )
        self.ctx = CheckContext(snapshot=snapshot, ledger=Ledger())
        self.kinds: dict = {}
        self.heaps_of_host: dict = {}  # host id -> heaps holding it (pack re-ranking)
        self.classes: dict = {}
        for host in self.hosts:
            self.classes.setdefault(_host_class(host), []).append(host)

    # -- filter ---------------------------------------------------------------------------
    def _kind_for(self, item: ItemInfo) -> _Kind:
        key = None if self.exhaustive else _item_kind(self.snapshot, item)
        if key is not None and key in self.kinds:
            return self.kinds[key]
        rejected: dict = {}
        example: dict = {}
        failed: set = set()

        def reject(cid, hosts):
            if hosts:
                rejected[cid] = rejected.get(cid, 0) + len(hosts)
                example.setdefault(cid, hosts[0].name)
                failed.update(h.id for h in hosts)

        ctx = self.ctx
        for members in self.classes.values():
            representative = members[0]
            for cid, fn in CLASS_CHECKS:
                if self.exhaustive:
                    reject(cid, [h for h in members if fn(ctx, item, h).blocks])
                elif fn(ctx, item, representative).blocks:
                    reject(cid, members)
        if self.exhaustive or item.mode != "live":
            reject(
                "storage.shared",
                [h for h in self.hosts if _STORAGE_SHARED(ctx, item, h).blocks],
            )
        else:
            # Live mode: storage.shared passes exactly on hosts that reach every disk's
            # pool (nothing to copy) and blocks everywhere else (a copy would be needed).
            reach = None
            for disk in item.vm.disks:
                if disk.device not in ("disk", "lun"):
                    continue
                pool = self.snapshot.pools.get(disk.pool_id)
                hosts = pool.host_ids if pool else set()
                reach = set(hosts) if reach is None else reach & hosts
            if reach is not None:
                reject("storage.shared", [h for h in self.hosts if h.id not in reach])
        kind = _Kind([h for h in self.hosts if h.id not in failed], rejected, example)
        if key is not None:
            self.kinds[key] = kind
        return kind

    def eligible_hosts(self, item: ItemInfo) -> _Kind:
        """The hosts passing every host check for this item (shared by every item of its
        kind), and how many each check rejected; the balance planner filters with it."""
        return self._kind_for(item)

    # -- rank -----------------------------------------------------------------------------
    def _rank_key(self, item: ItemInfo, host: HostInfo, source_group: str):
        room = memory_room_mib(self.ctx, item, host)
        room = room if room is not None else -(2**62)
        other_group = 0 if (source_group and host.group == source_group) else 1
        return (other_group, -room if self.strategy == "spread" else room, host.name, host.id)

    def place(self, item: ItemInfo) -> Placement:
        snapshot, ctx = self.snapshot, self.ctx
        note: dict = {"strategy": self.strategy, "hosts": len(self.hosts)}
        blockers = []
        for cid, fn in ITEM_CHECKS:
            if cid in PLACEMENT_ITEM_CHECKS:
                finding = fn(ctx, item, None)
                if finding.blocks:
                    blockers.append({"check": cid, "message": finding.message})
        if blockers:
            note.update(
                chosen=None,
                reason="This VM cannot move anywhere: " + " ".join(b["message"] for b in blockers),
                item_blockers=blockers,
            )
            return Placement(item.id, None, note)
        kind = self._kind_for(item)
        source = snapshot.hosts.get(item.source_id)
        source_group = source.group if source else ""
        rejected = dict(kind.rejected)
        example = dict(kind.example)
        if self.exhaustive or kind.heap is None:
            heap = [self._rank_key(item, h, source_group) + (h,) for h in kind.eligible]
            heapq.heapify(heap)
            if not self.exhaustive:
                kind.heap = heap
                for h in kind.eligible:
                    self.heaps_of_host.setdefault(h.id, []).append(heap)
        else:
            heap = kind.heap
        aside, chosen, examined, seen = [], None, 0, set()
        ruled_out: dict = {}  # rule label -> hosts it kept the item off
        while heap:
            entry = heapq.heappop(heap)
            host = entry[-1]
            if host.id in seen:
                continue  # a duplicate entry; the live one is set aside and goes back
            current = self._rank_key(item, host, source_group)
            if current != entry[:-1]:
                # Stale: this host received VMs since the entry was made (rooms only
                # shrink during placement), so re-file it under its current rank.
                heapq.heappush(heap, current + (host,))
                continue
            seen.add(host.id)
            examined += 1
            failing = [f for _, fn in DYNAMIC if (f := fn(ctx, item, host)).blocks]
            if failing:
                for finding in failing:
                    cid = finding.check_id
                    rejected[cid] = rejected.get(cid, 0) + 1
                    example.setdefault(cid, host.name)
                    for label in rule_labels(finding):
                        ruled_out.setdefault(label, []).append(host.name)
                aside.append(entry)
                continue
            chosen = entry
            break
        for entry in aside:
            heapq.heappush(heap, entry)
        note.update(
            eligible_after_host_checks=len(kind.eligible),
            rejected=dict(sorted(rejected.items())),
            rejected_example=dict(sorted(example.items())),
            examined_in_rank_order=examined,
        )
        if ruled_out:
            note["rules"] = dict(sorted(ruled_out.items()))
        if chosen is None:
            parts = [f"{cid} rejected {n}" for cid, n in sorted(rejected.items())]
            note.update(
                chosen=None,
                reason=f"No host passes every blocker check ({'; '.join(parts) or 'no hosts'})."
                + _rules_text(ruled_out),
            )
            return Placement(item.id, None, note)
        host = chosen[-1]
        room = memory_room_mib(ctx, item, host)
        same = bool(source_group) and host.group == source_group
        ctx.ledger.add_inbound(snapshot, item, host)
        if self.strategy == "pack" and not self.exhaustive:
            # Less room ranks a host *earlier* under "pack", which a lazily re-filed entry
            # cannot express: give every heap holding this host a fresh entry now.
            for other in self.heaps_of_host.get(host.id, ()):
                if other is not heap:
                    heapq.heappush(other, self._rank_key(item, host, source_group) + (host,))
        heapq.heappush(heap, self._rank_key(item, host, source_group) + (host,))
        word = "most" if self.strategy == "spread" else "least"
        note.update(
            chosen=host.name,
            reason=f"{host.name}: {word} memory left after placement "
            f"({(room - item.vm.memory_mib) / 1024:.1f} GiB) among hosts passing every check"
            + (f", in the source's group {source_group}" if same else "")
            + "."
            + _rules_text(ruled_out),
        )
        return Placement(item.id, host.id, note)

    def place_unit(self, items: list) -> list[Placement]:
        """Place VMs that one affinity rule keeps together: the best-ranked host (ranked for
        the largest) that takes all of them, or none of them (see the module docstring)."""
        snapshot, ctx, ledger = self.snapshot, self.ctx, self.ctx.ledger
        names = ", ".join(i.vm.name for i in items)
        rule = ", ".join(
            r.label
            for r in snapshot.rules
            if r.kind == TOGETHER and sum(r.tag in i.vm.tags for i in items) > 1
        )
        note: dict = {
            "strategy": self.strategy,
            "hosts": len(self.hosts),
            "together": [i.vm.name for i in items],
            "together_rule": rule,
        }
        blockers = [
            f"{item.vm.name}: {finding.message}"
            for item in items
            for cid, fn in ITEM_CHECKS
            if cid in PLACEMENT_ITEM_CHECKS and (finding := fn(ctx, item, None)).blocks
        ]
        if blockers:
            reason = f"{names} move together ({rule}), and one of them cannot move: " + " ".join(
                blockers
            )
            return [
                Placement(i.id, None, {**note, "chosen": None, "reason": reason}) for i in items
            ]
        rejected: dict = {}
        eligible = None
        for item in items:
            kind = self._kind_for(item)
            ids = {h.id for h in kind.eligible}
            eligible = ids if eligible is None else eligible & ids
            for cid, count in kind.rejected.items():
                rejected[cid] = rejected.get(cid, 0) + count
        source = snapshot.hosts.get(items[0].source_id)
        source_group = source.group if source else ""
        ranked = sorted(
            (h for h in self.hosts if h.id in eligible),
            key=lambda h: self._rank_key(items[0], h, source_group),
        )
        # They all leave: the affinity check must not see the later ones as staying behind.
        marked = [i.vm.id for i in items if i.vm.id not in ledger.leaving]
        ledger.leaving.update(marked)
        chosen, ruled_out = None, {}
        for host in ranked:
            done, failing = [], []
            for item in items:
                failing = [f for _, fn in DYNAMIC if (f := fn(ctx, item, host)).blocks]
                if failing:
                    break
                ledger.add_inbound(snapshot, item, host)
                done.append(item)
            if not failing:
                chosen = host
                break
            for item in reversed(done):
                ledger.remove_inbound(snapshot, item, host)
            for finding in failing:
                rejected[finding.check_id] = rejected.get(finding.check_id, 0) + 1
                for label in rule_labels(finding):
                    ruled_out.setdefault(label, []).append(host.name)
        note.update(
            eligible_after_host_checks=len(eligible),
            rejected=dict(sorted(rejected.items())),
            examined_in_rank_order=len(ranked) if chosen is None else ranked.index(chosen) + 1,
        )
        if ruled_out:
            note["rules"] = dict(sorted(ruled_out.items()))
        if chosen is None:
            ledger.leaving.difference_update(marked)
            parts = [f"{cid} rejected {n}" for cid, n in sorted(rejected.items())]
            reason = (
                f"No host takes {names} together ({rule}): "
                f"{'; '.join(parts) or 'no hosts'}." + _rules_text(ruled_out)
            )
            return [
                Placement(i.id, None, {**note, "chosen": None, "reason": reason}) for i in items
            ]
        if self.strategy == "pack" and not self.exhaustive:
            for heap in self.heaps_of_host.get(chosen.id, ()):
                heapq.heappush(heap, self._rank_key(items[0], chosen, source_group) + (chosen,))
        word = "most" if self.strategy == "spread" else "least"
        reason = (
            f"{chosen.name}: {word} memory left among hosts that take all of {names}, which "
            f"move together ({rule})." + _rules_text(ruled_out)
        )
        return [
            Placement(i.id, chosen.id, {**note, "chosen": chosen.name, "reason": reason})
            for i in items
        ]


def rule_labels(finding) -> list[str]:
    """The rules a refusal names (rule.* checks; the anti: groups of `affinity`)."""
    if finding.check_id == "rule.anti-affinity":
        return sorted(finding.evidence.get("clashes", {}))
    if finding.check_id == "rule.affinity":
        return sorted(finding.evidence.get("apart", {}))
    if finding.check_id == "affinity":
        return [
            f"anti-affinity group anti:{g}" for g in sorted(finding.evidence.get("clashes", {}))
        ]
    return []


def _rules_text(ruled_out: dict, shown: int = 3) -> str:
    parts = []
    for label, hosts in sorted(ruled_out.items()):
        listed = ", ".join(hosts[:shown]) + (
            f" and {len(hosts) - shown} more" if len(hosts) > shown else ""
        )
        parts.append(f"{label} ruled out {listed}")
    return (" " + "; ".join(parts).capitalize() + ".") if parts else ""


def affinity_units(snapshot: Snapshot, items: list) -> list[list]:
    """The items to place, grouped: items on one source host that share the tag of an
    affinity rule form one unit; every other item is a unit of its own. Units keep the
    order of their first item."""
    tags = {r.tag for r in snapshot.rules if r.kind == TOGETHER}
    if not tags:
        return [[item] for item in items]
    root = {item.id: item.id for item in items}

    def find(i):
        while root[i] != i:
            root[i] = root[root[i]]
            i = root[i]
        return i

    first: dict = {}
    for item in items:
        for tag in tags.intersection(item.vm.tags):
            key = (item.source_id, tag)
            if key in first:
                root[find(item.id)] = find(first[key])
            else:
                first[key] = item.id
    units: dict = {}
    for item in items:
        units.setdefault(find(item.id), []).append(item)
    return list(units.values())


def placement_run(
    snapshot: Snapshot,
    *,
    replace: bool = False,
    only=None,
    group: str | None = None,
    exhaustive: bool = False,
    scope=None,
):
    """Choose destinations for the snapshot's items without one (all, with replace).

    `only` limits placement to those item ids; `group` limits candidates to one host
    group, `scope` (a set of group names: the planner's role scope) to those groups.
    Returns a list of Placement in plan order. Items with a fixed destination keep
    it and count in the ledger first.
    """
    placer = Placer(snapshot, exhaustive=exhaustive, group=group, scope=scope)
    hosts = snapshot.hosts
    todo = []
    for item in snapshot.items:
        if item.storage_only:
            continue
        wanted = only is None or item.id in only
        if wanted and (item.destination_id is None or replace):
            todo.append(item)
        elif item.destination_id is not None:
            placer.ctx.ledger.add(snapshot, item, hosts.get(item.destination_id))
    # First-fit decreasing: large VMs first leave the small ones for the gaps.
    todo.sort(key=lambda i: (-i.vm.memory_mib, i.position, i.id))
    placements = {}
    for unit in affinity_units(snapshot, todo):
        found = [placer.place(unit[0])] if len(unit) == 1 else placer.place_unit(unit)
        placements.update((p.item_id, p) for p in found)
    return [placements[i.id] for i in snapshot.items if i.id in placements]
