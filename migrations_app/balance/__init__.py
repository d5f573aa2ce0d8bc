"""Balance a host group: the moves that bring every host's memory and CPU use within
±X points of the group mean, with few moves and little memory moved.

Entry point: `balance_group(snapshot, *, group, target_pct, max_moves, max_moved_mib,
rules, vm_loads, host_loads) -> BalanceResult`. Pure: it reads the snapshot and the load
figures and never the database, and the same input gives the same plan.

Inputs
- `snapshot`: a checks `Snapshot` whose items are one per VM living on the group's hosts
  (destination None): every VM that loads a host must be there, the movable and the
  pinned alike. A draft plan holding the group's VMs, loaded with `snapshot_load`, is one.
- `vm_loads` {vm id: VmLoad}, `host_loads` {host id: HostLoad}: measured use over the
  sampling window (see `load.py`); missing figures fall back to rss at the last sync, then
  to allocations, and the result counts which source each figure came from.
- `target_pct` (default 10): a host is in band when its memory use and its CPU use are
  each within ±target points of the group's mean (total use ÷ total capacity, which
  moves inside the group do not change).
- `max_moves`, `max_moved_mib`: the budget (None: unlimited).
- `rules`: `Rule(kind="anti-affinity"|"affinity", tag=...)` (or dicts); the product's
  `anti:NAME` tags are always honoured through the `affinity` check.

The plan's moves are meant to become the plan's items in this order (`plan_snapshot`
shows the result as a plan's snapshot): each move passed the checks with the earlier ones
applied, so validation (which credits every departure up front) accepts them.

Why this algorithm, not ProxLB's greedy
ProxLB repeatedly takes the most loaded node and moves its largest guest to the least
loaded node. It overshoots (the largest guest is rarely the one that fits the excess),
balances one resource while skewing the other, ignores hosts that are short of load
rather than over it, and never revisits a move. Here:
1. The objective is the total violation Φ = Σ over hosts and both resources of how far
   the host is outside the band; Φ = 0 is exactly "target reached". A move only changes
   its two hosts, so the best moves of every (source, destination) pair are kept in a
   table, and after a move only the pairs touching its two hosts are recomputed: every
   host pair is considered at every step, at the cost of a shortlist.
2. Moves that lower Φ are ranked by (a) the moves they are estimated to lead to: the
   move itself plus what its two hosts still need afterwards, counted like the lower
   bound (the fewest of the host's own largest VMs that cover its excess; the fewest of
   the group's largest that fill its shortfall), so a move that finishes a host beats
   one that leaves it needing another; then (b) Φ gained, less α · memory moved, plus
   μ · the drop in squared distance from the mean, per VM moved (α = 0.25: moving 1 % of
   an average host's memory costs a quarter point; μ sends ties toward the better
   balanced destination); then memory, then ids (deterministic).
   Only the best-ranked move is asked of the checks; if they refuse it, the next one is.
3. When no single move helps: a room-making pair (move another VM off a refused move's
   destination first, possibly to that move's source: a swap), then a two-move chain
   (a move into or out of a host still outside the band that makes things worse on its
   own, followed by the move that settles it: e.g. bring memory into a host whose CPU is
   over, then move a CPU-heavy VM out).
4. Local search on the result (`polish.py`): two moves sharing a source or destination
   become one, moves the target does not need are dropped, a move is redone with a
   smaller VM; each change is kept only if the target still holds and the whole plan
   replays through the checks.
An exact optimum (a two-dimensional bin-packing variant) is out of reach for 2,000 VMs in
seconds; `bounds.py` computes a lower bound on moves and memory (exact two-resource
covering per host where the search stays small, LP relaxations elsewhere) that every
plan needs, and the result reports it so the distance to the optimum is bounded.
"""

from migrations_app.balance.bounds import lower_bounds
from migrations_app.balance.load import (
    ALLOCATED,
    MEASURED,
    RSS_AT_SYNC,
    BalanceInputError,
    HostLoad,
    VmLoad,
)
from migrations_app.balance.model import BalanceModel
from migrations_app.balance.polish import polish
from migrations_app.balance.result import (
    BalanceResult,
    Move,
    describe,
    host_rows,
    outside_band,
    plan_snapshot,
)
from migrations_app.balance.rules import ANTI, TOGETHER, Rule, rules_of
from migrations_app.balance.search import Search

__all__ = [
    "ALLOCATED",
    "ANTI",
    "MEASURED",
    "RSS_AT_SYNC",
    "TOGETHER",
    "BalanceInputError",
    "BalanceResult",
    "HostLoad",
    "Move",
    "Rule",
    "VmLoad",
    "balance_group",
    "plan_snapshot",
]

ALPHA = 0.25
SHOWN_OUTSIDE = 10


def _limit(value, name: str, *, integer: bool):
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise BalanceInputError(f"{name} must be a number, not {value!r}.")
    if value < 0 or value != value or value == float("inf"):
        raise BalanceInputError(f"{name} must be a finite number ≥ 0, not {value!r}.")
    if integer and int(value) != value:
        raise BalanceInputError(f"{name} must be a whole number, not {value!r}.")
    return int(value) if integer else float(value)


def _sources(model: BalanceModel) -> dict:
    counts: dict = {"memory": {}, "cpu": {}}
    for item in model.items:
        _, mem_source, _, cpu_source = model.load_of[item.id]
        counts["memory"][mem_source] = counts["memory"].get(mem_source, 0) + 1
        counts["cpu"][cpu_source] = counts["cpu"].get(cpu_source, 0) + 1
    return counts


def _why_not(model, outcome, bounds, moves_used, mib_used, max_moves, max_mib) -> list:
    why = []
    if outcome.stop == "budget":
        limits = []
        if max_moves is not None:
            limits.append(f"{moves_used} of at most {max_moves} moves")
        if max_mib is not None:
            limits.append(f"{mib_used / 1024:.1f} of at most {max_mib / 1024:.1f} GiB moved")
        why.append(
            f"The move budget ran out ({', '.join(limits) or 'budget'}): "
            f"{outcome.over_budget} improving move(s) did not fit it."
        )
    if outcome.refused:
        listed = ", ".join(
            f"{check} refused {count}"
            for check, count in sorted(outcome.refused.items(), key=lambda kv: (-kv[1], kv[0]))
        )
        why.append(
            "Every other move that would bring the group closer to the band is refused by "
            f"the checks ({listed}), even after trying to make room first."
        )
    if outcome.stop == "stuck":
        why.append(
            "No single move, and no room-making pair, brings the group closer to the band: "
            "the VMs that may move are too large for the room the band leaves, or none may "
            "go where load is missing."
        )
    why.extend(bounds["impossible"])
    outside = outside_band(model)
    if outside:
        more = len(outside) - SHOWN_OUTSIDE
        why.append(
            "Still outside the band: "
            + "; ".join(outside[:SHOWN_OUTSIDE])
            + (f"; and {more} more" if more > 0 else "")
            + "."
        )
    return why


def balance_group(
    snapshot,
    *,
    group: str,
    target_pct: float = 10.0,
    max_moves: int | None = None,
    max_moved_mib: int | None = None,
    rules=(),
    vm_loads: dict | None = None,
    host_loads: dict | None = None,
    alpha: float = ALPHA,
    improve: bool = True,
) -> BalanceResult:
    """The ordered moves that bring `group` within ±target_pct of its mean (see module)."""
    target = _limit(target_pct, "target_pct", integer=False)
    if target is None or not 0 < target <= 100:
        raise BalanceInputError(f"target_pct must be above 0 and at most 100, not {target_pct!r}.")
    max_moves = _limit(max_moves, "max_moves", integer=True)
    max_mib = _limit(max_moved_mib, "max_moved_mib", integer=False)
    model = BalanceModel(
        snapshot,
        group=group,
        target_pct=target,
        rules=rules_of(rules),
        vm_loads=vm_loads,
        host_loads=host_loads,
    )
    spread_before = model.spread()
    search = Search(model, max_moves=max_moves, max_moved_mib=max_mib, alpha=alpha)
    outcome = search.construct()
    reached = outcome.stop in ("already", "reached")
    steps = outcome.steps
    if improve and steps:
        steps = polish(search, steps, reached)
    spread_after = model.spread()
    rows = host_rows(model)
    bounds = lower_bounds(model)
    moves_used = sum(s.unit.size for s in steps)
    mib_used = sum(s.unit.moved_mib for s in steps)
    why = (
        []
        if reached
        else _why_not(model, outcome, bounds, moves_used, mib_used, max_moves, max_mib)
    )
    moves = describe(model, steps)
    return BalanceResult(
        group=group,
        target_pct=target,
        reached=reached,
        stop=outcome.stop,
        moves=moves,
        memory_moved_mib=mib_used,
        mean_pct={"memory": round(model.mean_m * 100, 1), "cpu": round(model.mean_c * 100, 1)},
        spread_before_pts={
            "memory": round(spread_before[0] * 100, 1),
            "cpu": round(spread_before[1] * 100, 1),
        },
        spread_after_pts={
            "memory": round(spread_after[0] * 100, 1),
            "cpu": round(spread_after[1] * 100, 1),
        },
        why_not=why,
        refused_by=dict(sorted(outcome.refused.items())),
        lower_bound={k: v for k, v in bounds.items() if k != "impossible"},
        hosts=rows,
        load_sources=_sources(model),
        excluded_hosts=model.excluded,
        pinned=model.pinned,
        replays=search.replays,
    )
