"""The baseline B1 compares against: ProxLB's greedy balancing, on Ferry's model.

ProxLB (gyptazy/ProxLB, models/calculations.py) balances one metric at a time: while the
spread between the most and the least used node exceeds its threshold, it takes the
guest with the highest usage on the most used node and moves it to the node with the
most free resources, skipping guests that do not fit. Adapted here to Ferry's two-metric
target: each round works on the metric (memory or CPU) with the larger spread, and a
move is taken only when it does not raise the destination above where the source was
(ProxLB's "is the source still the most loaded node" guard, without which it ping-pongs).
It runs on the same `BalanceModel` as the planner, so every move passes the same checks
and the comparison is about the choice of moves only. Not part of the product.
"""

from migrations_app.balance.model import BalanceModel


def greedy_steps(model: BalanceModel, *, max_moves: int | None = None) -> tuple[list, str]:
    """[(unit, destination index)] in order, and why it stopped."""
    n = len(model.hosts)
    limit = max_moves if max_moves is not None else 10**9
    steps, moves = [], 0
    while not model.reached():
        spread_m, spread_c = model.spread()
        if spread_m >= spread_c:
            used, cap, attr = model.used_m, model.cap_m, "mem"
        else:
            used, cap, attr = model.used_c, model.cap_c, "cpu"

        def util(i, used=used, cap=cap):
            return used[i] / cap[i]

        order = sorted(range(n), key=lambda i: (util(i), model.hosts[i].name))
        source = order[-1]
        top = util(source)
        chosen = None
        guests = sorted(model.on_host[source], key=lambda u: (-getattr(u, attr), u.uid))
        for unit in guests:
            if moves + unit.size > limit:
                continue
            load = getattr(unit, attr)
            for dest in order[:-1]:
                if dest not in unit.eligible:
                    continue
                if (used[dest] + load) / cap[dest] >= top:
                    break  # the least loaded ones first: the rest would be worse still
                if not model.try_unit(unit, dest, commit=True):
                    chosen = (unit, dest)
                    break
            if chosen:
                break
        if chosen is None:
            return steps, "stuck" if moves < limit else "budget"
        steps.append(chosen)
        moves += chosen[0].size
    return steps, "reached"
