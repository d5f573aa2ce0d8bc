"""Local search on a built plan: fewer moves first (merge two into one, drop what the
target does not need), then less memory (the same job with a smaller VM). A change is
kept only when the target still holds (or, when it was not reached, the violation is no
worse) and the whole changed plan replays through the checks in order."""

from migrations_app.balance.model import EPS
from migrations_app.balance.search import Search, Step

MAX_REPLAYS = 400  # replays of the whole plan against the checks, at most
ROUNDS = 3


class Polisher:
    """Applies the sweeps to one search's plan; the model always holds the kept plan."""

    def __init__(self, search: Search, reached: bool):
        self.search = search
        self.m = search.m
        self.reached = reached

    def _accept(self, steps, trial) -> bool:
        search = self.search
        if search.replays >= MAX_REPLAYS:
            return False
        search.replays += 1
        if self.m.replay([(s.unit, s.dest) for s in trial]):
            return True
        search.replays += 1
        if not self.m.replay([(s.unit, s.dest) for s in steps]):
            raise AssertionError("a kept plan always replays")
        return False

    def _ok(self, *deltas) -> bool:
        """Whether the plan with these (host, memory, CPU) changes still does its job."""
        m = self.m
        changes: dict = {}
        for h, dm, dc in deltas:
            old = changes.get(h, (0.0, 0.0))
            changes[h] = (old[0] + dm, old[1] + dc)
        after = [m.viol(h, m.used_m[h] + dm, m.used_c[h] + dc) for h, (dm, dc) in changes.items()]
        if self.reached:
            return all(v <= EPS for v in after)
        return sum(after) <= sum(m.viol(h) for h in changes) + EPS

    def merge(self, steps):
        """Two moves sharing a source or a destination become one move of one unit."""
        units_from = self.search.units_from
        pairs = [
            (s1, s2)
            for i, s1 in enumerate(steps)
            for s2 in steps[i + 1 :]
            if s1.unit.host == s2.unit.host or s1.dest == s2.dest
        ]
        pairs.sort(key=lambda p: (-(p[0].unit.moved_mib + p[1].unit.moved_mib), p[0].unit.uid))
        for s1, s2 in pairs:
            if not any(s is s1 for s in steps) or not any(s is s2 for s in steps):
                continue
            u1, u2 = s1.unit, s2.unit
            moved = {s.unit.uid for s in steps}
            if u1.host == u2.host:
                options = [(w, d) for w in units_from[u1.host] for d in (s1.dest, s2.dest)]
            else:
                options = [(w, s1.dest) for h in (u1.host, u2.host) for w in units_from[h]]
            options = sorted(
                (
                    (w, d)
                    for w, d in options
                    if w.size < u1.size + u2.size
                    and d in w.eligible
                    and (w.uid not in moved or w is u1 or w is u2)
                    and w.moved_mib <= u1.moved_mib + u2.moved_mib
                ),
                key=lambda o: (o[0].size, o[0].moved_mib, o[0].uid, o[1]),
            )
            for w, d in options:
                if not self._ok(
                    (u1.host, u1.mem, u1.cpu),
                    (s1.dest, -u1.mem, -u1.cpu),
                    (u2.host, u2.mem, u2.cpu),
                    (s2.dest, -u2.mem, -u2.cpu),
                    (w.host, -w.mem, -w.cpu),
                    (d, w.mem, w.cpu),
                ):
                    continue
                trial = [Step(w, d, via="merged") if s is s1 else s for s in steps if s is not s2]
                if self._accept(steps, trial):
                    steps = trial
                break  # only the best-ranked replacement is tried against the checks
        return steps

    def drop(self, steps):
        """A move the target does not need is left out."""
        for step in sorted(steps, key=lambda s: (-s.unit.moved_mib, s.unit.uid)):
            u = step.unit
            if self._ok((u.host, u.mem, u.cpu), (step.dest, -u.mem, -u.cpu)):
                trial = [s for s in steps if s is not step]
                if self._accept(steps, trial):
                    steps = trial
        return steps

    def shrink(self, steps):
        """A move is replaced by a smaller unit from the same source to the same host."""
        units_from = self.search.units_from
        for step in sorted(steps, key=lambda s: (-s.unit.moved_mib, s.unit.uid)):
            u, b = step.unit, step.dest
            moved = {s.unit.uid for s in steps}
            options = sorted(
                (
                    w
                    for w in units_from[u.host]
                    if w.uid not in moved
                    and w.moved_mib < u.moved_mib
                    and w.size <= u.size
                    and b in w.eligible
                ),
                key=lambda w: (w.moved_mib, w.uid),
            )
            for w in options:
                if not self._ok(
                    (u.host, u.mem - w.mem, u.cpu - w.cpu), (b, w.mem - u.mem, w.cpu - u.cpu)
                ):
                    continue
                trial = [Step(w, b, via="smaller") if s is step else s for s in steps]
                if self._accept(steps, trial):
                    steps = trial
                break  # the smallest fitting one only
        return steps

    def run(self, steps: list) -> list:
        for _ in range(ROUNDS):
            before = [(s.unit.uid, s.dest) for s in steps]
            for sweep in (self.merge, self.drop, self.shrink):
                steps = sweep(steps)
            if [(s.unit.uid, s.dest) for s in steps] == before:
                break
        return steps


def polish(search: Search, steps: list, reached: bool) -> list:
    """The shortened plan; the search's model then holds exactly it."""
    return Polisher(search, reached).run(steps)
