"""Construction of the plan: best-improvement over every host pair, kept incrementally,
with room-making pairs and two-move chains when no single move helps (see the package
docstring for why this shape; `polish.py` then shortens the result).

Everything here is arithmetic over the model's load figures to *rank* moves; whether a
move is allowed is asked of the model (`try_unit`), which asks the checks.

The gain of moving a unit from host s to host d depends only on the state of s and d
(the violation Φ is a sum over hosts), so the best moves of every (s, d) pair are kept in
a table and only the pairs that touch the two hosts of a move are recomputed after it.
"""

import heapq
from bisect import bisect_left
from dataclasses import dataclass, field

from migrations_app.balance.model import EPS, BalanceModel, Unit

RESOURCES = ("mem", "cpu")  # the Unit attributes, in the order of the per-resource lists
MU = 0.5  # weight of the squared-deviation reduction: ties in Φ go to the better balance
CHAIN_HOSTS = 4  # violated hosts a two-move chain starts from
CHAIN_FIRSTS = 12  # first moves per chain search
PAIR_TRIES = 32  # two-move candidates tried against the checks per round
ROOM_CANDIDATES = 24  # refused moves examined for a room-making move first
ROOM_CHECKS = {
    "capacity.memory",
    "capacity.cpu",
    "storage.capacity",
    "affinity",
    "rule.anti-affinity",
}


def _fewest(prefix: list, need: float, skip: int | None = None, skip_load: float = 0.0) -> int:
    """Fewest of the sorted (largest first) loads whose sum covers `need`, leaving out
    the one at index `skip`; more than all of them when they cannot."""
    j = bisect_left(prefix, need - EPS)
    if j >= len(prefix):
        return len(prefix)
    if skip is None or j <= skip:
        return j
    t = bisect_left(prefix, need + skip_load - EPS)
    return t - 1 if t < len(prefix) else len(prefix)


def _rank(entry):
    return entry[:3]


@dataclass(eq=False)
class Step:
    """One chosen move of a unit, why it was chosen, and the better-ranked ones refused."""

    unit: Unit
    dest: int
    via: str = "best"  # best | room | room-for | chain | chain-end | merged | smaller
    passed_over: list = field(default_factory=list)  # [(unit, host index, [Finding])]


@dataclass
class Outcome:
    steps: list
    stop: str  # already | reached | budget | blocked | stuck
    refused: dict  # check id (rule label) -> improving moves it refused at the end
    over_budget: int  # improving moves the budget left out at the end


def finding_key(finding) -> str:
    """How a refusal is counted in the result: the check, with the rule it names."""
    if finding.check_id == "rule.anti-affinity":
        return "rule.anti-affinity (" + ", ".join(sorted(finding.evidence.get("clashes", {}))) + ")"
    if finding.check_id == "rule.affinity":
        return "rule.affinity (" + ", ".join(sorted(finding.evidence.get("apart", {}))) + ")"
    if finding.check_id == "affinity":
        groups = finding.evidence.get("clashes", {})
        return "affinity (" + ", ".join(f"anti:{g}" for g in sorted(groups)) + ")"
    return finding.check_id


class Search:
    """Builds the plan for one model under a move budget."""

    def __init__(self, model: BalanceModel, *, max_moves, max_moved_mib, alpha: float):
        self.m = model
        self.max_moves = max_moves if max_moves is not None else 10**9
        self.max_mib = max_moved_mib if max_moved_mib is not None else float("inf")
        n = len(model.hosts)
        self.n = n
        # Memory moved is priced in violation points: moving 1 % of an average host's
        # memory costs `alpha` points of spread (see the package docstring).
        self.lam = alpha / (model.total_cap_m / n)
        self.inv_m = [1.0 / c for c in model.cap_m]
        self.inv_c = [1.0 / c for c in model.cap_c]
        self.units_from: list[list[Unit]] = [list(units) for units in model.on_host]
        self.refusals: dict = {}  # (uid, host) -> ((host version, pool version), findings)
        self.version = [0] * n
        self.pool_version = 0
        self.replays = 0
        self.steps: list[Step] = []
        self.moves_left = self.max_moves
        self.mib_left = self.max_mib

    # -- state of the hosts ---------------------------------------------------------------
    def _refresh(self, hosts) -> None:
        m = self.m
        for i in hosts:
            dm, dc = m.deviation(i)
            self.sq[i] = dm * dm + dc * dc
            self.viol[i] = m.viol(i)
            self.needed_now[i] = self._needed(i, m.used_m[i], m.used_c[i])

    def _known_refusal(self, unit: Unit, b: int):
        """The checks' last refusal of moving unit to b, while b has not changed since."""
        hit = self.refusals.get((unit.uid, b))
        if hit is not None and hit[0] == (self.version[b], self.pool_version):
            return hit[1]
        return None

    def _commit(self, unit: Unit, b: int) -> list:
        """Apply the move if the checks allow it; else return (and remember) the refusal."""
        findings = self.m.try_unit(unit, b, commit=True)
        if findings:
            self.refusals[(unit.uid, b)] = ((self.version[b], self.pool_version), findings)
            return findings
        self._moved(unit, b, +1)
        return []

    def _undo(self, unit: Unit, b: int) -> None:
        self.m.undo_unit(unit)
        self._moved(unit, b, -1)

    def _moved(self, unit: Unit, b: int, sign: int) -> None:
        self.version[unit.host] += 1
        self.version[b] += 1
        if any(i.mode != "live" or i.storage_map for i in unit.items):
            self.pool_version += 1  # disks copied into pools other hosts may share
        self.moves_left -= sign * unit.size
        self.mib_left -= sign * unit.moved_mib
        self._index(unit.host)
        self._refresh((unit.host, b))

    def _fits(self, unit: Unit) -> bool:
        return unit.size <= self.moves_left and unit.moved_mib <= self.mib_left

    # -- how many moves a host still needs (the lower bound's count, kept per host) ----------
    def _index(self, h: int) -> None:
        units = self.m.on_host[h]
        for r, attr in enumerate(RESOURCES):
            ordered = sorted(units, key=lambda u: (-getattr(u, attr), u.uid))
            prefix = [0.0]
            for u in ordered:
                prefix.append(prefix[-1] + getattr(u, attr))
            self.sorted[r][h] = (prefix, {u.uid: k for k, u in enumerate(ordered)})

    def _needed(self, h: int, used_m: float, used_c: float, removed: Unit | None = None) -> int:
        """Fewest moves that could bring host h in band from these figures: out of it from
        its own units (without `removed`), into it from the group's largest units."""
        out_k = in_k = 0
        for r, used in ((0, used_m), (1, used_c)):
            over = used - self.hi[r][h]
            if over > EPS:
                prefix, position = self.sorted[r][h]
                if removed is None:
                    k = _fewest(prefix, over)
                else:
                    load = removed.mem if r == 0 else removed.cpu
                    k = _fewest(prefix, over, position[removed.uid], load)
                out_k = k if k > out_k else out_k
                continue
            under = self.lo[r][h] - used
            if under > EPS:
                k = _fewest(self.everyone[r], under)
                in_k = k if k > in_k else in_k
        return out_k + in_k

    # -- the pair table -------------------------------------------------------------------
    def _pair(self, s: int, d: int) -> list:
        """Improving moves from s to d the checks have not refused, best first."""
        viol = self.viol
        vs, vd = viol[s], viol[d]
        units = self.m.on_host[s]
        if s == d or not units or (vs <= EPS and vd <= EPS):
            return []
        m = self.m
        ms, cs, md, cd = m.used_m[s], m.used_c[s], m.used_m[d], m.used_c[d]
        ims, ics, imd, icd = self.inv_m[s], self.inv_c[s], self.inv_m[d], self.inv_c[d]
        mean_m, mean_c, x, lam = m.mean_m, m.mean_c, m.x, self.lam
        sq = self.sq[s] + self.sq[d]
        needed = self.needed_now[s] + self.needed_now[d]
        refusals, versions = self.refusals, (self.version[d], self.pool_version)
        needed_after = self._needed
        out = []
        for u in units:
            if d not in u.eligible:
                continue
            um, uc = u.mem, u.cpu
            a1 = (ms - um) * ims - mean_m
            a2 = (cs - uc) * ics - mean_c
            b1 = (md + um) * imd - mean_m
            b2 = (cd + uc) * icd - mean_c
            # Unrolled over the four distances: this is the hottest loop of the planner.
            after = 0.0
            over = (a1 if a1 > 0 else -a1) - x
            if over > 0:
                after += over
            over = (a2 if a2 > 0 else -a2) - x
            if over > 0:
                after += over
            over = (b1 if b1 > 0 else -b1) - x
            if over > 0:
                after += over
            over = (b2 if b2 > 0 else -b2) - x
            if over > 0:
                after += over
            gain = vs + vd - after
            if gain <= EPS:
                continue
            hit = refusals.get((u.uid, d))
            if hit is not None and hit[0] == versions:
                continue
            better = sq - (a1 * a1 + a2 * a2 + b1 * b1 + b2 * b2)
            # Moves it takes, counting those the two hosts are still estimated to need.
            size = u.size
            total = size - needed + needed_after(s, ms - um, cs - uc, u)
            total += needed_after(d, md + um, cd + uc)
            score = (lam * u.moved_mib - gain - MU * better) / size
            out.append(((total, score), u.moved_mib, u.uid, u))
        out.sort(key=_rank)
        return out

    def _set_pair(self, s: int, d: int) -> None:
        key = (s, d)
        found = self._pair(s, d)
        stamp = self.stamp.get(key, 0) + 1
        self.stamp[key] = stamp
        if found:
            self.pairs[key] = found
            heapq.heappush(self.heap, (found[0][:3], s, d, stamp))
        else:
            self.pairs.pop(key, None)

    def _rebuild(self) -> None:
        m = self.m
        means = (m.mean_m, m.mean_c)
        caps = (m.cap_m, m.cap_c)
        self.hi = [[(means[r] + m.x) * c for c in caps[r]] for r in (0, 1)]
        self.lo = [[(means[r] - m.x) * c for c in caps[r]] for r in (0, 1)]
        self.needed_now = [0] * self.n
        self.sorted: list = [[None] * self.n, [None] * self.n]
        for h in range(self.n):
            self._index(h)
        self.everyone = []
        for attr in RESOURCES:
            prefix = [0.0]
            for load in sorted((getattr(u, attr) for u in self.m.units), reverse=True):
                prefix.append(prefix[-1] + load)
            self.everyone.append(prefix)
        self.sq = [0.0] * self.n
        self.viol = [0.0] * self.n
        self._refresh(range(self.n))
        self.pairs: dict = {}
        self.stamp: dict = {}
        self.heap: list = []
        for s in range(self.n):
            for d in range(self.n):
                self._set_pair(s, d)

    def _touch(self, hosts) -> None:
        for h in sorted(set(hosts)):
            for other in range(self.n):
                self._set_pair(h, other)
                self._set_pair(other, h)

    def _best_single(self) -> Step | None:
        """Commit the best-ranked improving move the checks allow."""
        passed = []
        while self.heap:
            key, s, d, stamp = heapq.heappop(self.heap)
            if self.stamp.get((s, d)) != stamp:
                continue
            entries = self.pairs[(s, d)]
            unit = entries[0][3]
            if self._fits(unit):
                findings = self._known_refusal(unit, d) or self._commit(unit, d)
                if not findings:
                    self._touch((s, d))
                    return Step(unit, d, passed_over=passed[-3:])
                passed.append((unit, d, findings))
            entries.pop(0)
            stamp += 1
            self.stamp[(s, d)] = stamp
            if entries:
                heapq.heappush(self.heap, (entries[0][:3], s, d, stamp))
        return None

    # -- when no single move helps ----------------------------------------------------------
    def _improving(self):
        """Every improving single move now, best first, with the budget's and the checks'
        verdicts: (refusals per check, moves over budget, refused [(unit, d, findings)])."""
        refused, over_budget, passed = {}, 0, []
        entries = []
        for s in range(self.n):
            for d in range(self.n):
                if self.viol[s] > EPS or self.viol[d] > EPS:
                    saved = self.refusals
                    self.refusals = {}  # list the refused ones too
                    entries.extend((e, d) for e in self._pair(s, d))
                    self.refusals = saved
        entries.sort(key=lambda e: (e[0][:3], e[1]))
        for (_, _, _, unit), d in entries:
            if not self._fits(unit):
                over_budget += 1
                continue
            findings = self._known_refusal(unit, d) or self.m.try_unit(unit, d, commit=False)
            if not findings:
                continue  # allowed after all (only after a chain changed things)
            for f in findings:
                k = finding_key(f)
                refused[k] = refused.get(k, 0) + 1
            passed.append((unit, d, findings))
        return refused, over_budget, passed

    def _shifted(self, unit: Unit, a: int, b: int):
        """Context: the model's figures as if unit had moved a → b (no checks, no ledger)."""
        m = self.m
        saved = (m.used_m[a], m.used_c[a], m.used_m[b], m.used_c[b])
        m.used_m[a] -= unit.mem
        m.used_c[a] -= unit.cpu
        m.used_m[b] += unit.mem
        m.used_c[b] += unit.cpu
        return saved

    def _unshift(self, a: int, b: int, saved) -> None:
        m = self.m
        m.used_m[a], m.used_c[a], m.used_m[b], m.used_c[b] = saved

    def _gain(self, unit: Unit, a: int, b: int) -> float:
        m = self.m
        before = m.viol(a) + m.viol(b)
        after = m.viol(a, m.used_m[a] - unit.mem, m.used_c[a] - unit.cpu) + m.viol(
            b, m.used_m[b] + unit.mem, m.used_c[b] + unit.cpu
        )
        return before - after

    def _moves_touching(self, h: int, skip: Unit):
        """(gain, unit, a, b) of every move out of or into host h (numbers only)."""
        m = self.m
        out = []
        for u in m.on_host[h]:
            if u is skip or not self._fits(u):
                continue
            for b in sorted(u.eligible):
                out.append((self._gain(u, h, b), u, h, b))
        for a in range(self.n):
            if a == h:
                continue
            for u in m.on_host[a]:
                if u is not skip and h in u.eligible and self._fits(u):
                    out.append((self._gain(u, a, h), u, a, h))
        return out

    def _chains(self):
        """Two moves that improve together although neither does alone: the first (out of
        or into a violated host) upsets it or another host, the second settles them."""
        m = self.m
        violated = sorted(
            (i for i in range(self.n) if self.viol[i] > EPS), key=lambda i: (-self.viol[i], i)
        )
        pairs = []
        for v in violated[:CHAIN_HOSTS]:
            # The least harmful moves out of v and into v (each may make things worse on
            # its own: bringing memory into a host that is over on CPU, say).
            outgoing, incoming = [], []
            for gain, u, a, b in self._moves_touching(v, skip=None):
                (outgoing if a == v else incoming).append((-gain, u.moved_mib, u.uid, b, u, a))
            outgoing.sort(key=lambda f: f[:4])
            incoming.sort(key=lambda f: f[:4])
            firsts = outgoing[:CHAIN_FIRSTS] + incoming[:CHAIN_FIRSTS]
            for neg_gain, _, _, b, u, a in firsts:
                saved = self._shifted(u, a, b)
                upset = [h for h in (a, b) if m.viol(h) > EPS]
                seconds = [e for h in upset for e in self._moves_touching(h, skip=u)]
                self._unshift(a, b, saved)
                for gain2, w, _, e in seconds:
                    self._add_two(pairs, u, b, w, e, gain2 - neg_gain)
        return self._two_in_order(pairs)

    def _room_pairs(self, passed):
        """Refused improving moves made possible by first moving another unit off their
        destination (a swap when it goes to the first move's source)."""
        m = self.m
        pairs = []
        for unit, b, findings in passed[:ROOM_CANDIDATES]:
            if any(f.check_id not in ROOM_CHECKS for f in findings):
                continue
            a = unit.host
            for w in m.on_host[b]:
                if w is unit:
                    continue
                for c in sorted(w.eligible):
                    if c == b:
                        continue
                    saved = self._shifted(w, b, c)
                    gain = self._gain(unit, a, b)
                    self._unshift(b, c, saved)
                    self._add_two(pairs, w, c, unit, b, gain + self._gain(w, b, c))
        return self._two_in_order(pairs)

    def _add_two(self, pairs: list, first: Unit, b: int, second: Unit, e: int, gain: float):
        """Rank the pair (first → b, then second → e) if it improves and fits the budget."""
        size = first.size + second.size
        mib = first.moved_mib + second.moved_mib
        if gain <= EPS or size > self.moves_left or mib > self.mib_left:
            return
        pairs.append(
            (((self.lam * mib - gain) / size, mib), first.uid, b, second.uid, e, first, second)
        )

    @staticmethod
    def _two_in_order(pairs: list) -> list:
        pairs.sort(key=lambda p: p[:5])
        return [(p[5], p[2], p[6], p[4]) for p in pairs]

    def _try_two(self, candidates, via: tuple[str, str]) -> list | None:
        """Commit the first (first move, second move) pair the checks allow, in order."""
        for first, b, second, e in candidates[:PAIR_TRIES]:
            if first.uid in self.m.moved or second.uid in self.m.moved:
                continue
            if self._commit(first, b):
                continue
            # What the checks said about the second move before the first made room.
            before = self.refusals.get((second.uid, e))
            if not self._commit(second, e):
                self._touch((first.host, b, second.host, e))
                refused = [(second, e, before[1])] if before and via[0] == "room" else []
                return [
                    Step(first, b, via=via[0], passed_over=refused),
                    Step(second, e, via=via[1]),
                ]
            self._undo(first, b)
        return None

    # -- the loop ---------------------------------------------------------------------------
    def construct(self) -> Outcome:
        m = self.m
        if m.reached():
            return Outcome([], "already", {}, 0)
        self._rebuild()
        refused, over_budget = {}, 0
        while not m.reached():
            step = self._best_single()
            if step is not None:
                self.steps.append(step)
                continue
            refused, over_budget, passed = self._improving()
            two = None
            if self.moves_left >= 2:
                two = self._try_two(self._room_pairs(passed), ("room", "room-for"))
                if two is None:
                    two = self._try_two(self._chains(), ("chain", "chain-end"))
            if two is None:
                break
            self.steps.extend(two)
        if m.reached():
            return Outcome(self.steps, "reached", {}, 0)
        stop = "budget" if over_budget else ("blocked" if refused else "stuck")
        return Outcome(self.steps, stop, refused, over_budget)
