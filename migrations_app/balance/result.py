"""What the planner hands back: ordered moves with their reasons, the spread before and
after, whether the target was reached and, if not, why."""

from dataclasses import asdict, dataclass, field

from migrations_app.balance.model import EPS, BalanceModel
from migrations_app.checks.snapshot import ItemInfo, Snapshot

SHOWN = 3  # refused alternatives named per move


@dataclass
class Move:
    """One VM migration of the balance plan, in plan order."""

    position: int
    item_id: int
    vm_id: int
    vm: str
    source_id: int
    source: str
    destination_id: int
    destination: str
    memory_moved_mib: int
    memory_used_mib: float
    memory_source: str
    cpu_cores: float
    cpu_source: str
    reason: str
    improves: list = field(default_factory=list)
    spread_before_pts: float = 0.0
    spread_after_pts: float = 0.0
    hosts_outside_before: int = 0
    hosts_outside_after: int = 0
    rule: str | None = None
    passed_over: list = field(default_factory=list)


@dataclass
class BalanceResult:
    """The plan for one group and how far it gets."""

    group: str
    target_pct: float
    reached: bool
    stop: str  # already | reached | budget | blocked | stuck
    moves: list
    memory_moved_mib: int
    mean_pct: dict
    spread_before_pts: dict
    spread_after_pts: dict
    why_not: list
    refused_by: dict
    lower_bound: dict
    hosts: list
    load_sources: dict
    excluded_hosts: list
    pinned: list
    replays: int = 0

    def as_dict(self) -> dict:
        return asdict(self)


def _pct(value: float) -> float:
    return round(value * 100, 1)


def _host_text(model: BalanceModel, i: int, before: tuple, after: tuple) -> tuple[str, list]:
    host = model.hosts[i]
    parts, improves = [], []
    for label, k, cap, mean in (
        ("memory", 0, model.cap_m, model.mean_m),
        ("CPU", 1, model.cap_c, model.mean_c),
    ):
        b, a = before[k] / cap[i], after[k] / cap[i]
        if abs(a - b) < 0.0005:
            continue
        if f"{b * 100:.0f}" != f"{a * 100:.0f}":
            parts.append(f"{label} {b * 100:.0f} % → {a * 100:.0f} %")
        was_out = abs(b - mean) > model.x + EPS
        now_in = abs(a - mean) <= model.x + EPS
        improves.append(
            {
                "host": host.name,
                "resource": label.lower(),
                "before_pct": _pct(b),
                "after_pct": _pct(a),
                "band_pct": [_pct(mean - model.x), _pct(mean + model.x)],
                "into_band": was_out and now_in,
                "closer_to_mean": abs(a - mean) < abs(b - mean),
            }
        )
    return (f"{host.name} " + ", ".join(parts) if parts else ""), improves


def _refusals(model: BalanceModel, passed: list) -> list:
    out = []
    for unit, b, findings in passed[-SHOWN:]:
        out.append(
            {
                "vm": unit.names,
                "host": model.hosts[b].name,
                "refused_by": [
                    {"check": f.check_id, "message": f.message} for f in findings if f.blocks
                ],
            }
        )
    return out


def describe(model: BalanceModel, steps: list) -> list[Move]:
    """Replay the plan and explain each move with the numbers it changes."""
    model.reset()
    moves: list[Move] = []
    outside = {i for i in range(len(model.hosts)) if model.viol(i) > EPS}
    for step in steps:
        unit, b = step.unit, step.dest
        a = unit.host
        for k, item in enumerate(unit.items):
            mem, mem_source, cpu, cpu_source = model.load_of[item.id]
            before_a = (model.used_m[a], model.used_c[a])
            before_b = (model.used_m[b], model.used_c[b])
            spread_before = max(model.spread())
            model.used_m[a] -= mem
            model.used_c[a] -= cpu
            model.used_m[b] += mem
            model.used_c[b] += cpu
            spread_after = max(model.spread())
            was_outside = len(outside)
            for h in (a, b):
                if model.viol(h) > EPS:
                    outside.add(h)
                else:
                    outside.discard(h)
            text_a, imp_a = _host_text(model, a, before_a, (model.used_m[a], model.used_c[a]))
            text_b, imp_b = _host_text(model, b, before_b, (model.used_m[b], model.used_c[b]))
            reason = "; ".join(t for t in (text_a, text_b) if t)
            reason += (
                f"; hosts outside ±{model.x * 100:g} pts: {was_outside} → {len(outside)}, "
                f"group spread ±{spread_before * 100:.0f} → ±{spread_after * 100:.0f} pts."
            )
            if unit.size > 1:
                others = ", ".join(i.vm.name for i in unit.items if i is not item)
                reason = f"Moves with {others} ({unit.rule}): " + reason
            into: dict = {}
            for change in imp_a + imp_b:
                if change["into_band"]:
                    label = "CPU" if change["resource"] == "cpu" else change["resource"]
                    into.setdefault(change["host"], []).append(label)
            if into:
                hosts = [f"{host} ({', '.join(labels)})" for host, labels in into.items()]
                reason += f" Brings {' and '.join(hosts)} into the band."
            if step.via == "room" and k == unit.size - 1:
                reason += " Makes room for the next move, which the checks refused before it."
            if step.via == "chain" and k == unit.size - 1:
                reason += " The next move completes it: together they help, neither alone."
            if step.via == "chain-end" and k == 0:
                reason += " Completes the previous move."
            if step.via == "merged":
                reason += " Replaces two moves the first pass chose."
            if step.via == "smaller":
                reason += " A smaller VM than the first pass chose does the same job."
            passed = _refusals(model, step.passed_over) if k == 0 else []
            if passed:
                lead = (
                    " Refused before it: "
                    if step.via == "room"
                    else " Better-ranked moves refused: "
                )
                reason += lead + "; ".join(
                    f"{p['vm']} → {p['host']} ({', '.join(r['check'] for r in p['refused_by'])})"
                    for p in passed
                )
                reason += "."
            moves.append(
                Move(
                    position=len(moves) + 1,
                    item_id=item.id,
                    vm_id=item.vm.id,
                    vm=item.vm.name,
                    source_id=model.hosts[a].id,
                    source=model.hosts[a].name,
                    destination_id=model.hosts[b].id,
                    destination=model.hosts[b].name,
                    memory_moved_mib=int(item.vm.memory_mib or 0),
                    memory_used_mib=round(mem, 1),
                    memory_source=mem_source,
                    cpu_cores=round(cpu, 3),
                    cpu_source=cpu_source,
                    reason=reason,
                    improves=imp_a + imp_b,
                    spread_before_pts=_pct(spread_before),
                    spread_after_pts=_pct(spread_after),
                    hosts_outside_before=was_outside,
                    hosts_outside_after=len(outside),
                    rule=unit.rule,
                    passed_over=passed,
                )
            )
    return moves


def host_rows(model: BalanceModel) -> list[dict]:
    """Per host: memory and CPU use before and after the plan (model holds the plan)."""
    rows = []
    for i, host in enumerate(model.hosts):
        before = (model.start_m[i] / model.cap_m[i], model.start_c[i] / model.cap_c[i])
        after = (model.used_m[i] / model.cap_m[i], model.used_c[i] / model.cap_c[i])
        rows.append(
            {
                "host": host.name,
                "memory_before_pct": _pct(before[0]),
                "memory_after_pct": _pct(after[0]),
                "cpu_before_pct": _pct(before[1]),
                "cpu_after_pct": _pct(after[1]),
                "in_band": model.viol(i) <= EPS,
            }
        )
    return rows


def outside_band(model: BalanceModel) -> list[str]:
    """'h07 memory 78 % (band 45–65 %)' for every host and resource still outside."""
    out = []
    for i, host in enumerate(model.hosts):
        for label, used, cap, mean in (
            ("memory", model.used_m, model.cap_m, model.mean_m),
            ("CPU", model.used_c, model.cap_c, model.mean_c),
        ):
            value = used[i] / cap[i]
            if abs(value - mean) > model.x + EPS:
                out.append(
                    f"{host.name} {label} {value * 100:.0f} % "
                    f"(band {(mean - model.x) * 100:.0f}–{(mean + model.x) * 100:.0f} %)"
                )
    return out


def plan_snapshot(snapshot, moves) -> Snapshot:
    """The snapshot of the plan the moves make: one item per move, in plan order, with its
    destination; `checks_run` on it is the plan's validation."""
    by_vm = {item.vm.id: item for item in snapshot.items}
    items = []
    for position, move in enumerate(moves, 1):
        item = by_vm[move.vm_id]
        items.append(
            ItemInfo(
                id=item.id,
                position=position,
                vm=item.vm,
                source_id=item.source_id,
                destination_id=move.destination_id,
                mode=item.mode,
                storage_map=item.storage_map,
                network_map=item.network_map,
                policy=item.policy,
                status=item.status,
            )
        )
    return Snapshot(
        plan=snapshot.plan,
        hosts=snapshot.hosts,
        pools=snapshot.pools,
        networks=snapshot.networks,
        items=items,
        other_plans=snapshot.other_plans,
        pool_index=snapshot.pool_index,
        rules=snapshot.rules,
        rule_tags=snapshot.rule_tags,
        rule_members=snapshot.rule_members,
    )
