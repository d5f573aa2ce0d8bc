"""Time and downtime estimates: a pre-copy model per item and a plan timeline.

The model is the textbook one for QEMU pre-copy: the first pass sends all guest memory;
while it is being sent the guest dirties pages at its dirty rate, which the next pass must
send again, and so on, until what is left can be sent within the allowed downtime. When
the dirty rate is close to (or above) the bandwidth the passes stop shrinking and the
policy decides: throttle the guest (auto-converge), accept a longer downtime in steps,
switch to post-copy, or give up. Every estimate carries the inputs it used, labelled
"measured" or "assumed", so an approver can see why it says what it says.
"""

import heapq
import math
from collections import Counter
from dataclasses import dataclass, field, fields

from migrations_app.budgets import Budgets, HostLimits, Move, PoolLimits, move_pools
from migrations_app.calibration import link_inputs
from migrations_app.checks.snapshot import ItemInfo, Snapshot
from migrations_app.checks.storage_paths import copied_disks
from migrations_app.policy import Policy

MAX_ITERATIONS = 30
# QEMU's auto-converge, as QEMU 10 paces it (migration/ram.c migration_trigger_throttle,
# system/cpu-throttle.c) with its default parameters: the dirty bitmap is synced at the end
# of every pass (and, once throttling, at least every 5 s within a long pass); at a sync
# more than 1 s after the last counted one, the period is "high" when the guest dirtied
# more than throttle-trigger-threshold (50 %) of the bytes sent in it; every second high
# period starts throttling at cpu-throttle-initial (20 %) or adds cpu-throttle-increment
# (10 %), up to max-cpu-throttle (99 %). A throttled vCPU runs (1 - throttle) of the time,
# so the guest dirties that much slower.
THROTTLE_INITIAL = 0.20
THROTTLE_INCREMENT = 0.10
THROTTLE_MAX = 0.99
THROTTLE_TRIGGER = 0.50
THROTTLE_PERIOD_S = 1.0
THROTTLE_SYNC_S = 5.0
MAX_THROTTLED_PASSES = 300
MIB = 1024 * 1024
# The fixed cost of a move before and around the memory transfer (libvirt's prepare on the
# destination, starting the destination QEMU, the final handshake), when no earlier move of
# the VM measured it: ~0.5 s in the lab; a TLS session adds ~1.5 s (libvirt-lab notes).
ASSUMED_SETUP_S = 0.5
ASSUMED_TLS_SETUP_S = 1.5


@dataclass(slots=True)
class PreCopy:
    """Outcome of the pre-copy model for one VM."""

    iterations: int
    transfer_s: float
    downtime_ms: float
    converges: bool
    converges_by: str  # "pre-copy", "auto_converge", "raise_downtime", "postcopy" or ""
    note: str = ""
    max_throttle_pct: int = 0


def bandwidth_of(policy: Policy) -> tuple[float, str]:
    """The bandwidth the model uses and where it comes from."""
    assumed = float(policy.assumed_bandwidth_mib_s)
    if policy.bandwidth_mib_s and policy.bandwidth_mib_s <= assumed:
        return float(policy.bandwidth_mib_s), "policy bandwidth cap"
    return assumed, "assumed path bandwidth"


class _Throttle:
    """QEMU's auto-converge trigger: counts high periods and steps the vCPU throttle."""

    def __init__(self):
        self.pct = 0.0
        self.high = 0
        self.since = 0.0  # time since the last counted sync
        self.dirty = 0.0  # MiB dirtied in the period
        self.sent = 0.0  # MiB sent in the period

    def sync(self, seconds: float, dirty: float, sent: float) -> None:
        """A dirty-bitmap sync after `seconds` more of the migration."""
        self.since += seconds
        self.dirty += dirty
        self.sent += sent
        if self.since <= THROTTLE_PERIOD_S:
            return  # QEMU only looks at periods longer than a second
        if self.dirty > THROTTLE_TRIGGER * self.sent:
            self.high += 1
            if self.high >= 2:
                self.high = 0
                step = THROTTLE_INCREMENT if self.pct else THROTTLE_INITIAL
                self.pct = min(THROTTLE_MAX, self.pct + step)
        self.since = self.dirty = self.sent = 0.0


def precopy(
    memory_mib: float,
    dirty_mib_s: float,
    bandwidth_mib_s: float,
    policy: Policy,
    touched_mib: float | None = None,
):
    """Run the pre-copy model, then the policy's answer to non-convergence.

    `touched_mib` is the guest memory that is not zero pages (QEMU sends a zero page as a
    header of a few bytes, so only touched memory costs bandwidth); it also bounds what the
    guest can dirty between passes (its working set lives in touched memory). Without it,
    every configured MiB counts. With auto-converge QEMU may throttle the guest from the
    second pass on, whenever its trigger fires (see `_Throttle`), not only once pre-copy
    is stuck; the model follows that pass by pass.
    """
    limit_ms = float(policy.max_downtime_ms)
    if touched_mib is not None:
        memory_mib = max(0.0, min(float(memory_mib), float(touched_mib)))
    if memory_mib <= 0:
        return PreCopy(0, 0.0, 0.0, True, "pre-copy", "no memory to move")
    action = policy.on_no_convergence
    throttle = _Throttle() if action == "auto_converge" else None
    remaining = float(memory_mib)
    elapsed = 0.0
    iteration = 0
    previous = float("inf")
    limit = MAX_THROTTLED_PASSES if throttle else MAX_ITERATIONS
    while iteration < limit:
        iteration += 1
        pct = throttle.pct if throttle else 0.0
        pass_s = remaining / bandwidth_mib_s
        elapsed += pass_s
        dirtied = min(float(memory_mib), dirty_mib_s * (1 - pct) * pass_s)
        if throttle is not None:
            # From the second pass on, a long pass is cut by QEMU's 5-s periodic syncs.
            pieces = max(1, math.ceil(pass_s / THROTTLE_SYNC_S)) if iteration > 1 else 1
            for _ in range(pieces):
                throttle.sync(pass_s / pieces, dirtied / pieces, remaining / pieces)
        remaining = dirtied
        stop_ms = remaining / bandwidth_mib_s * 1000
        if stop_ms <= limit_ms:
            if pct > 0:
                return PreCopy(
                    iteration,
                    elapsed + stop_ms / 1000,
                    stop_ms,
                    True,
                    "auto_converge",
                    f"converges with QEMU throttling the guest's vCPUs up to {pct:.0%}",
                    round(pct * 100),
                )
            return PreCopy(iteration, elapsed + stop_ms / 1000, stop_ms, True, "pre-copy")
        shrinking = remaining < previous * 0.999
        previous = remaining
        if throttle is None and dirty_mib_s >= bandwidth_mib_s:
            break  # passes no longer shrink: more iterations change nothing
        if throttle is not None and pct >= THROTTLE_MAX and not shrinking:
            break  # this whole pass ran at the highest throttle and still did not shrink
    stuck_ms = remaining / bandwidth_mib_s * 1000
    if action == "auto_converge":
        pct = round(throttle.pct * 100) if throttle else 99
        stuck = f"does not converge even with the guest throttled to {pct}%"
    else:
        pct, stuck = 0, f"pre-copy leaves {stuck_ms:.0f} ms of downtime"
    # The convergence schedule, step by step (its downtime steps, then a terminal step),
    # then the timeout that fires first, as the monitor does.
    stepped = False
    for step in policy.schedule:
        if step["action"] == "max_downtime":
            stepped = True
            if stuck_ms <= step["value"]:
                return PreCopy(
                    iteration,
                    elapsed + stuck_ms / 1000,
                    stuck_ms,
                    True,
                    "raise_downtime",
                    f"converges only after raising the allowed downtime to {step['value']} ms",
                )
            continue
        return _answer(
            step["action"],
            "the convergence schedule",
            iteration,
            elapsed,
            remaining,
            bandwidth_mib_s,
            limit_ms,
            stuck,
            pct,
        )
    if stepped:
        stuck = f"still {stuck_ms:.0f} ms of downtime needed after the largest downtime step"
    gib = float(memory_mib) / 1024
    timeouts = [
        (
            policy.completion_timeout_s(gib),
            policy.completion_timeout_action,
            "the completion timeout",
        )
    ]
    if policy.progress_timeout_s:
        timeouts.append(
            (
                elapsed + policy.progress_timeout_s,
                policy.progress_timeout_action,
                "the progress timeout",
            )
        )
    _at, what, by = min(timeouts, key=lambda t: t[0])
    return _answer(what, by, iteration, elapsed, remaining, bandwidth_mib_s, limit_ms, stuck, pct)


def _answer(what, by, iteration, elapsed, remaining, bandwidth_mib_s, limit_ms, stuck, pct):
    """The model's answer once pre-copy is stuck and `by` (a schedule step or a timeout)
    does `what`: post-copy, force-complete or abort."""
    stuck_ms = remaining / bandwidth_mib_s * 1000
    if what == "postcopy":
        # After switching, the guest runs on the destination at once and pulls the
        # remaining pages on demand: downtime is about one small stop-and-copy, but the
        # remaining memory still crosses the wire.
        return PreCopy(
            iteration,
            elapsed + remaining / bandwidth_mib_s,
            limit_ms,
            True,
            "postcopy",
            f"converges by switching to post-copy when {by} says so (a network failure "
            "then loses the VM)",
        )
    if what == "force_complete":
        # The guest pauses on its source while the rest moves: the rest is downtime.
        return PreCopy(
            iteration,
            elapsed + stuck_ms / 1000,
            stuck_ms,
            True,
            "force_complete",
            f"completes only by pausing the guest when {by} says so: about "
            f"{stuck_ms:.0f} ms of downtime",
            pct,
        )
    return _fails(iteration, elapsed, stuck_ms, f"{stuck}; {by} aborts", pct)


def _fails(iteration: int, elapsed: float, stuck_ms: float, note: str, pct: int = 0) -> PreCopy:
    """The model's answer when the policy cannot make pre-copy converge."""
    return PreCopy(iteration, elapsed, stuck_ms, False, "", note, pct)


@dataclass(slots=True)
class ItemEstimate:
    """The estimate of one item, with every input it used."""

    item_id: int
    vm: str
    mode: str
    memory_mib: int
    touched_mib: float
    touched_source: str
    setup_s: float
    setup_source: str
    dirty_rate_mib_s: float
    dirty_rate_source: str
    bandwidth_mib_s: float
    bandwidth_source: str
    max_downtime_ms: int
    on_no_convergence: str
    iterations: int
    memory_transfer_s: float
    downtime_ms: float
    converges: bool
    converges_by: str
    note: str
    storage_copy_gib: float
    storage_copy_s: float
    verify_s: int
    duration_s: float
    max_throttle_pct: int = 0
    start_s: float = 0.0
    end_s: float = 0.0
    source: str = ""
    destination: str = ""
    # Learning from history (migrations_app.calibration): whether the VM never moved (its
    # touched memory is then not measured), the link's effective-rate factor (seconds per
    # model second), and the interval the moves measured so far support.
    first_move: bool = True
    rate_factor: float = 1.0
    rate_source: str = "assumed (no moves measured on this link)"
    memory_transfer_low_s: float = 0.0
    memory_transfer_high_s: float = 0.0
    duration_low_s: float = 0.0
    duration_high_s: float = 0.0
    uncertainty: str = ""


def _on(when) -> str:
    """' on YYYY-MM-DD' of a datetime (or ISO string), '' when unknown."""
    if not when:
        return ""
    text = when if isinstance(when, str) else when.isoformat()
    return f" on {text[:10]}"


def touched_of(vm, host=None) -> tuple[float, str]:
    """The guest memory a migration really sends, and where that figure comes from.

    In order: the footprint its last migration measured; its QEMU rss less the QEMU
    overhead measured at its own last migration; its rss less the overhead its current
    host has measured over the first moves it sent (a first move: rss alone counts QEMU's
    own memory, 2-3x the guest's footprint on small TCG guests); rss as an upper bound;
    all configured memory.
    """
    memory = float(vm.memory_mib)
    on = _on(getattr(vm, "migration_measured_at", None))
    if vm.memory_footprint_mib:
        return min(memory, float(vm.memory_footprint_mib)), f"measured{on} (last migration)"
    if vm.memory_rss_mib:
        own = vm.memory_rss_overhead_mib or 0
        learnt = getattr(host, "qemu_rss_overhead_mib", None) or 0
        overhead = own or learnt
        touched = min(memory, max(float(vm.memory_rss_mib - overhead), 1.0))
        if own:
            return touched, f"measured{on} (rss less QEMU overhead seen at last migration)"
        if learnt:
            samples = getattr(host, "qemu_rss_overhead_samples", 0)
            return touched, (
                f"first move: rss less this host's measured QEMU overhead, {learnt} MiB "
                f"(median of {samples} first move{'s' if samples != 1 else ''})"
            )
        return touched, "first move: rss at sync (an upper bound)"
    return memory, "first move, assumed (all configured memory)"


def setup_of(vm, policy: Policy) -> tuple[float, str]:
    """The fixed cost of a move, and where that figure comes from."""
    if vm.migration_setup_s is not None and vm.migration_setup_s >= 0:
        on = _on(getattr(vm, "migration_measured_at", None))
        return float(vm.migration_setup_s), f"measured{on} (last migration)"
    tls = ASSUMED_TLS_SETUP_S if policy.require_tls else 0.0
    return ASSUMED_SETUP_S + tls, "assumed"


def item_estimate(snapshot: Snapshot, item: ItemInfo) -> ItemEstimate:
    """The pre-copy and storage-copy estimate of one item, with its interval."""
    policy = item.policy
    vm = item.vm
    bandwidth, bandwidth_source = bandwidth_of(policy)
    if vm.dirty_rate_mib_s is not None and vm.dirty_rate_mib_s >= 0:
        dirty, dirty_source = float(vm.dirty_rate_mib_s), "measured"
    else:
        dirty, dirty_source = float(policy.assumed_dirty_rate_mib_s), "assumed"
    dest = snapshot.hosts.get(item.destination_id)
    copy_bytes = sum(d.copy_bytes for d, _target in copied_disks(snapshot, item, dest))
    copy_s = copy_bytes / MIB / bandwidth
    source = snapshot.hosts.get(item.source_id)
    touched, touched_source = touched_of(vm, source)
    setup, setup_source = setup_of(vm, policy)
    first_move = not vm.memory_footprint_mib
    learnt = link_inputs(
        source, dest, policy, first_move=first_move, tls_setup_s=ASSUMED_TLS_SETUP_S
    )
    if item.storage_only:
        model = PreCopy(0, 0.0, 0.0, True, "pre-copy", "storage only: memory does not move")
        transfer = low = high = 0.0
        setup = 0.0
        setup_source = rate_source = "storage only"
        factor, spread, uncertainty = 1.0, 0.0, ""
    else:
        if first_move and learnt.touched is not None:
            touched_low, touched_mid, touched_high, why = learnt.touched
            if why:
                touched_source += f"; {why}"
        else:
            touched_low, touched_mid, touched_high = (1.0, 1.0, 1.0)
        model = precopy(vm.memory_mib, dirty, bandwidth, policy, touched_mib=touched * touched_mid)
        throttled = model.max_throttle_pct > 0
        if learnt.fit is not None:
            setup, setup_source = learnt.setup_s, learnt.setup_source
        factor = learnt.throttled_factor if throttled else learnt.rate_factor
        spread = learnt.throttled_spread if throttled else learnt.spread
        rate_source = learnt.throttled_source if throttled else learnt.rate_source
        # memory_transfer_s is the migrate call's whole time: the fixed setup plus the
        # passes, at the link's effective rate.
        transfer = setup + factor * model.transfer_s
        low, high = transfer, transfer
        if touched_low != touched_mid or touched_high != touched_mid:
            lo = precopy(vm.memory_mib, dirty, bandwidth, policy, touched_mib=touched * touched_low)
            hi = precopy(
                vm.memory_mib, dirty, bandwidth, policy, touched_mib=touched * touched_high
            )
            # a touched range that flips the model to another regime can cross the point
            low = min(transfer, setup + factor * lo.transfer_s)
            high = max(transfer, setup + factor * hi.transfer_s)
        low, high = low * (1 - spread), high * (1 + spread)
        uncertainty = _uncertainty_note(transfer, low, high, first_move, learnt, throttled)
    duration = copy_s + transfer + policy.verify_seconds
    return ItemEstimate(
        item_id=item.id,
        vm=vm.name,
        mode=item.mode,
        memory_mib=vm.memory_mib,
        touched_mib=round(touched * (1.0 if item.storage_only else touched_mid), 1),
        touched_source=touched_source,
        setup_s=round(setup, 2),
        setup_source=setup_source,
        dirty_rate_mib_s=dirty,
        dirty_rate_source=dirty_source,
        bandwidth_mib_s=bandwidth,
        bandwidth_source=bandwidth_source,
        max_downtime_ms=policy.max_downtime_ms,
        on_no_convergence=policy.on_no_convergence,
        iterations=model.iterations,
        memory_transfer_s=round(transfer, 2),
        downtime_ms=round(model.downtime_ms, 1),
        converges=model.converges,
        converges_by=model.converges_by,
        note=model.note,
        storage_copy_gib=round(copy_bytes / 1024**3, 2),
        storage_copy_s=round(copy_s, 2),
        verify_s=policy.verify_seconds,
        duration_s=round(duration, 2),
        max_throttle_pct=model.max_throttle_pct,
        source=source.name if source else "",
        destination=dest.name if dest else "",
        first_move=first_move,
        rate_factor=round(factor, 3),
        rate_source=rate_source,
        memory_transfer_low_s=round(low, 2),
        memory_transfer_high_s=round(high, 2),
        duration_low_s=round(copy_s + low + policy.verify_seconds, 2),
        duration_high_s=round(copy_s + high + policy.verify_seconds, 2),
        uncertainty=uncertainty,
    )


def _uncertainty_note(point, low, high, first_move, learnt, throttled) -> str:
    """How wide the interval is and why, in words an approver reads."""
    if point <= 0:
        return ""
    below, above = (point - low) / point, (high - point) / point
    width = f"-{below:.0%}/+{above:.0%}"
    basis = learnt.throttled_spread_source if throttled else learnt.spread_source
    if first_move:
        return (
            f"{width}: a first move (touched memory not measured yet: "
            f"{learnt.touched_basis}); {basis}"
        )
    return f"{width}: {basis}"


ITEM_FIELDS = tuple(f.name for f in fields(ItemEstimate))


@dataclass
class PlanEstimate:
    """Per-item estimates placed on a timeline under the plan's concurrency limits."""

    items: list
    makespan_s: float
    limits: dict
    window_start: str | None
    window_end: str | None
    by_item: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {
            "makespan_s": round(self.makespan_s, 2),
            "limits": self.limits,
            "window_start": self.window_start,
            "window_end": self.window_end,
            "model": "fixed setup + pre-copy passes of the touched (non-zero) memory, "
            "dirtying bounded by it, with QEMU's auto-converge throttle steps when the "
            "policy allows them; setup and effective rate fitted on the moves completed "
            "between the same two hosts (an interval from their errors, wider for a VM's "
            "first move); storage copy at the migration bandwidth; "
            "list scheduling in plan order under the concurrency limits",
            "items": [{name: getattr(e, name) for name in ITEM_FIELDS} for e in self.items],
        }


def timeline(estimates: list, items: list, policy: Policy, budgets: Budgets | None = None) -> float:
    """Give each estimate a start and end (seconds from plan start); returns the makespan.

    List scheduling in plan order: whenever a migration finishes, start every waiting
    item (in order) that the plan's limits and the hosts', links' and pools' budgets allow
    (the same Budgets object the scheduler asks, as if this plan ran alone). An item of a
    later wave waits until every item of the earlier waves has ended, as in a run.
    """
    budgets = budgets or Budgets()
    moves = [_move_of(item, budgets) for item in items]
    keys = [_budget_keys(move) for move in moves]
    count = len(items)
    limit = policy.concurrent_limit
    running: list = []  # heap of (end, index)
    started = [False] * count
    waves = [getattr(item, "wave", 0) for item in items]
    left = Counter(waves)  # items not yet ended, per wave
    # after[i]: an index at or before the next item after i that still waits; the scan
    # jumps over started items (path-compressed) instead of visiting each of them again
    # at every finish.
    after = list(range(1, count + 1))

    def waiting_from(index: int) -> int:
        root = index
        while root < count and started[root]:
            root = after[root]
        while index < count and started[index] and after[index] != root:
            after[index], index = root, after[index]
        return root

    now = 0.0
    makespan = 0.0
    while True:
        index = waiting_from(0)
        if index >= count:
            break
        # Within one scan budgets only fill (nothing is released), so a budget found full
        # stays full: later items behind the same host, link or pool skip the check.
        full: set = set()
        open_wave = min((wave for wave, n in left.items() if n), default=0)
        while index < count:
            # The plan's own limit holds every waiting item alike: stop scanning once it
            # is reached, so each finish costs a short scan, not one over every waiting
            # item (10,000 items: 10^8 budget checks without it, minutes instead of 0.1 s).
            if budgets.plan_total.get(0, 0) >= limit:
                break
            move = moves[index]
            if waves[index] > open_wave or not full.isdisjoint(keys[index]):
                index = waiting_from(index + 1)
                continue
            blocked = budgets.blocking(move, policy)
            if blocked is not None:
                full.add(blocked)
            else:
                started[index] = True
                budgets.take(moves[index])
                estimate = estimates[index]
                estimate.start_s = round(now, 2)
                estimate.end_s = round(now + estimate.duration_s, 2)
                makespan = max(makespan, now + estimate.duration_s)
                heapq.heappush(running, (now + estimate.duration_s, index))
            index = waiting_from(index + 1)
        if not running:
            break
        now, index = heapq.heappop(running)
        done = [index]
        while running and running[0][0] <= now:
            done.append(heapq.heappop(running)[1])
        for index in done:
            budgets.release(moves[index])
            left[waves[index]] -= 1
    return makespan


def _budget_keys(move: Move) -> tuple:
    """The (check, key) pairs of Budgets.blocking that could hold `move`."""
    keys = [("plan_out", move.source), ("outbound", move.source)]
    if move.destination is not None:
        keys += [
            ("plan_in", move.destination),
            ("inbound", move.destination),
            ("link", (move.source, move.destination)),
        ]
    keys += [("pool", pool) for pool in move.pools]
    return tuple(keys)


def _move_of(item, budgets: Budgets) -> Move:
    destination = None if item.storage_only else item.destination_id
    reached = budgets.reach.get(item.destination_id or item.source_id, set())
    pools = move_pools(item.mode, item.storage_map, [d.pool_id for d in item.vm.disks], reached)
    return Move(plan=0, source=item.source_id, destination=destination, pools=pools)


def snapshot_budgets(snapshot: Snapshot) -> Budgets:
    """The budgets of the snapshot's hosts and pools (limits only; nothing running)."""
    return Budgets(
        hosts={
            h.id: HostLimits(h.name, h.max_outbound, h.max_inbound, h.link_bandwidth_mib_s)
            for h in snapshot.hosts.values()
        },
        pools={p.id: PoolLimits(p.name, p.max_copies) for p in snapshot.pools.values()},
        reach={h.id: set(h.pool_ids) for h in snapshot.hosts.values()},
    )


def plan_estimate(snapshot: Snapshot) -> PlanEstimate:
    """Estimates for every item of the snapshot and the plan's timeline."""
    items = snapshot.items
    estimates = [item_estimate(snapshot, item) for item in items]
    policy = snapshot.plan.policy
    makespan = timeline(estimates, items, policy, snapshot_budgets(snapshot))
    plan = snapshot.plan
    return PlanEstimate(
        items=estimates,
        makespan_s=makespan,
        limits={
            "max_concurrent": policy.concurrent_limit,
            "max_outbound_per_host": policy.outbound_limit,
            "max_inbound_per_host": policy.inbound_limit,
            "source": "link: floor(path bandwidth / per-migration cap)"
            if policy.limits_follow_link
            else "policy",
            "budgets": "and the Ferry-wide budgets of each host (moves out and in), link "
            "(its bandwidth ÷ the cap) and pool (copies), as if this plan ran alone",
        },
        window_start=plan.window_start.isoformat() if plan.window_start else None,
        window_end=plan.window_end.isoformat() if plan.window_end else None,
        by_item={e.item_id: e for e in estimates},
    )
