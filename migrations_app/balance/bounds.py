"""Lower bounds on any plan that reaches the target, and hosts that cannot reach it.

For each host the band fixes how much memory and CPU load must leave it (above mean + X)
or arrive (below mean − X). Only units that may move count: VMs pinned by an item check,
a host check or a broken rule stay where they are. Then, per host:

- moves out ≥ the fewest units (counted by their VMs) of that host whose loads cover
  both what must leave, found by an exact search for small counts (it stops at a node
  budget, keeping what it proved) and never below the LP relaxation of each resource;
- memory moved out ≥ the cheapest fractional cover (LP relaxation of the covering
  knapsack) of every weighted sum of the two needs, best over 21 weightings;
- moves in and memory moved in ≥ the same LP relaxations, per resource, over the units of
  the other hosts that may go there.

Every move leaves one host and arrives at one, so a plan needs at least max(Σ out, Σ in)
moves, and likewise memory. The bounds ignore capacity, affinity and the interplay of
moves, so the best plan can need more; never fewer.
"""

import math

from migrations_app.balance.model import EPS, BalanceModel

NODES = 20_000  # search nodes per host for the exact count
LAMBDAS = 20  # weightings of memory against CPU for the memory bound


def _fractional(ordered, need: float, attr: str, cost, allowed=None) -> float:
    """The cheapest fractional cover of `need` of attr, units taken in the given order
    (best load per cost first), cost(u) per whole unit; inf when they cannot cover it."""
    if need <= EPS:
        return 0.0
    left, total = need, 0.0
    for u in ordered:
        if allowed is not None and not allowed(u):
            continue
        load = getattr(u, attr)
        if load <= 0:
            continue
        take = min(1.0, left / load)
        total += take * cost(u)
        left -= take * load
        if left <= EPS:
            return total
    return math.inf


def _by_moves(units, attr: str) -> list:
    return sorted(units, key=lambda u: (-getattr(u, attr) / u.size, u.uid))


def _by_mib(units, attr: str) -> list:
    return sorted(
        (u for u in units if getattr(u, attr) > 0),
        key=lambda u: (u.moved_mib / getattr(u, attr), u.uid),
    )


def _fewest_both(units, need_m: float, need_c: float, start: int) -> int:
    """Fewest moves whose units cover both needs, searched exactly from `start` up while
    the search stays small; where it gives up, the last size it proved impossible + 1."""
    ordered = sorted(units, key=lambda u: (-u.mem, -u.cpu, u.uid))
    cpus = sorted((u.cpu for u in units), reverse=True)
    budget = [NODES]

    def search(j: int, left: int, mem: float, cpu: float) -> bool | None:
        if mem >= need_m - EPS and cpu >= need_c - EPS:
            return True
        if left <= 0 or j >= len(ordered):
            return False
        budget[0] -= 1
        if budget[0] < 0:
            return None
        # Optimistic: the next `left` largest memories from here, the largest CPUs at all.
        if mem + sum(u.mem for u in ordered[j : j + left]) < need_m - EPS:
            return False
        if cpu + sum(cpus[:left]) < need_c - EPS:
            return False
        for k in range(j, len(ordered)):
            u = ordered[k]
            if u.size > left:
                continue
            found = search(k + 1, left - u.size, mem + u.mem, cpu + u.cpu)
            if found is None or found:
                return found
            if mem + sum(v.mem for v in ordered[k + 1 : k + 1 + left]) < need_m - EPS:
                break
        return False

    proven = start - 1
    for k in range(max(start, 1), sum(u.size for u in units) + 1):
        found = search(0, k, 0.0, 0.0)
        if found:
            return k
        if found is None:
            break
        proven = k
    return max(proven + 1, start)


def _least_mib_both(units, need_m: float, need_c: float) -> float:
    """The best LP bound on memory moved over weighted sums of both needs: every cover of
    both satisfies w · covered_m ÷ need_m + (1 − w) · covered_c ÷ need_c ≥ 1."""
    best = 0.0
    for step in range(LAMBDAS + 1):
        w = step / LAMBDAS
        weight_m, weight_c = w / need_m, (1 - w) / need_c
        loads = {u.uid: u.mem * weight_m + u.cpu * weight_c for u in units}
        ordered = sorted(
            (u for u in units if loads[u.uid] > 0),
            key=lambda u: (u.moved_mib / loads[u.uid], u.uid),
        )
        left, mib = 1.0, 0.0
        for u in ordered:
            take = min(1.0, left / loads[u.uid])
            mib += take * u.moved_mib
            left -= take * loads[u.uid]
            if left <= EPS:
                best = max(best, mib)
                break
    return best


def _amount(label: str, value: float) -> str:
    return f"{value / 1024:.1f} GiB" if label == "memory" else f"{value:.1f} cores"


def lower_bounds(model: BalanceModel) -> dict:
    """Lower bounds on moves and memory moved, and the hosts no plan can bring in band."""
    x = model.x
    out_moves = in_moves = 0
    out_mib = in_mib = 0.0
    impossible = []
    from_host = [[] for _ in model.hosts]
    for unit in model.units:
        from_host[unit.host].append(unit)
    everyone = {
        attr: (_by_moves(model.units, attr), _by_mib(model.units, attr)) for attr in ("mem", "cpu")
    }
    for i, host in enumerate(model.hosts):
        need = {}
        for label, attr, used, cap, mean in (
            ("memory", "mem", model.start_m[i], model.cap_m[i], model.mean_m),
            ("CPU", "cpu", model.start_c[i], model.cap_c[i], model.mean_c),
        ):
            need[attr] = (label, mean, used - (mean + x) * cap, (mean - x) * cap - used)
        leave = {attr: max(0.0, v[2]) for attr, v in need.items()}
        arrive = {attr: max(0.0, v[3]) for attr, v in need.items()}
        if leave["mem"] > EPS or leave["cpu"] > EPS:
            units = from_host[i]
            lp = max(
                _fractional(_by_moves(units, a), leave[a], a, lambda u: u.size)
                for a in ("mem", "cpu")
            )
            if lp == math.inf:
                for attr, (label, mean, must, _) in need.items():
                    total = sum(getattr(u, attr) for u in units)
                    if must > EPS and total + EPS < must:
                        impossible.append(
                            f"{host.name} cannot get below {(mean + x) * 100:.0f} % {label}: "
                            f"{_amount(label, must)} must leave but the VMs that may move "
                            f"use only {_amount(label, total)}."
                        )
                continue
            start = math.ceil(lp - 1e-6)
            out_moves += _fewest_both(units, leave["mem"], leave["cpu"], start)
            if leave["mem"] > EPS and leave["cpu"] > EPS:
                out_mib += _least_mib_both(units, leave["mem"], leave["cpu"])
            else:
                a = "mem" if leave["mem"] > EPS else "cpu"
                out_mib += _fractional(_by_mib(units, a), leave[a], a, lambda u: u.moved_mib)
        if arrive["mem"] > EPS or arrive["cpu"] > EPS:

            def allowed(u, i=i):
                return u.host != i and i in u.eligible

            moves = mib = 0.0
            for attr, (label, mean, _, must) in need.items():
                if arrive[attr] <= EPS:
                    continue
                by_moves, by_mib = everyone[attr]
                count = _fractional(by_moves, must, attr, lambda u: u.size, allowed)
                if count == math.inf:
                    total = sum(getattr(u, attr) for u in model.units if allowed(u))
                    impossible.append(
                        f"{host.name} cannot get above {(mean - x) * 100:.0f} % {label}: "
                        f"{_amount(label, must)} must arrive but the VMs that may move there "
                        f"use only {_amount(label, total)}."
                    )
                    continue
                moves = max(moves, count)
                mib = max(mib, _fractional(by_mib, must, attr, lambda u: u.moved_mib, allowed))
            in_moves += math.ceil(moves - 1e-6)
            in_mib += mib
    return {
        "moves": max(out_moves, in_moves),
        "memory_mib": int(max(out_mib, in_mib)),
        "moves_out": out_moves,
        "moves_in": in_moves,
        "impossible": impossible,
        "note": "ignores capacity, affinity and the interplay of moves: the best plan can "
        "need more, never fewer",
    }
