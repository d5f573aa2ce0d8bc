"""Affinity rules by tag for the balance planner, and the check that enforces the
anti-affinity ones.

- anti-affinity rule on tag T: no two VMs carrying T share a host. It adds to the
  product's own `anti:NAME` tags, which the `affinity` load check already enforces.
- affinity rule on tag T: the VMs carrying T that live on one host stay together. The
  planner moves them as one unit (consecutive moves to the same destination); when they
  are already split over several hosts the rule is broken before the plan starts, and
  the planner leaves them where they are and says so (fixing it is a move-to-group job).

`check_anti_rule` has the shape of every check (`Finding` with id, severity, message
naming the rule, remedy and evidence) so it can join LOAD_CHECKS once the plan models
carry rules.
"""

from collections import defaultdict
from dataclasses import dataclass

from migrations_app.balance.load import BalanceInputError
from migrations_app.checks.base import BLOCKER, Finding, ok

ANTI = "anti-affinity"
TOGETHER = "affinity"
KINDS = (ANTI, TOGETHER)
LIVE_STATES = ("running", "paused")


@dataclass(frozen=True, slots=True)
class Rule:
    """One rule: VMs carrying `tag` never share a host (anti-affinity) or stay together."""

    kind: str
    tag: str
    name: str = ""

    @property
    def label(self) -> str:
        return f"{self.kind} rule '{self.name or self.tag}'"


def rules_of(rules) -> tuple[Rule, ...]:
    """Rules from Rule objects or dicts {"kind", "tag", "name"?}; bad ones are input errors."""
    out = []
    for index, rule in enumerate(rules or ()):
        if isinstance(rule, dict):
            unknown = set(rule) - {"kind", "tag", "name"}
            if unknown:
                raise BalanceInputError(
                    f"Rule {index + 1}: unknown field(s) {', '.join(sorted(unknown))}."
                )
            rule = Rule(
                kind=str(rule.get("kind", "")),
                tag=str(rule.get("tag", "")),
                name=str(rule.get("name", "") or ""),
            )
        if not isinstance(rule, Rule):
            raise BalanceInputError(f"Rule {index + 1} must be a rule, not {rule!r}.")
        if rule.kind not in KINDS:
            raise BalanceInputError(
                f"Rule {index + 1}: kind must be one of {', '.join(KINDS)}, not {rule.kind!r}."
            )
        if not rule.tag.strip():
            raise BalanceInputError(f"Rule {index + 1}: the tag is empty.")
        out.append(rule)
    return tuple(sorted(set(out), key=lambda r: (r.kind, r.tag, r.name)))


class RuleBook:
    """Where the VMs bound by anti-affinity rules live, as the plan moves them."""

    def __init__(self, rules: tuple[Rule, ...], items):
        self.anti = [r for r in rules if r.kind == ANTI]
        self.rules_of_vm: dict = {}
        self.on: dict = defaultdict(lambda: defaultdict(dict))  # host -> tag -> {vm id: name}
        for item in items:
            vm = item.vm
            bound = [r for r in self.anti if r.tag in vm.tags]
            if not bound:
                continue
            self.rules_of_vm[vm.id] = bound
            if vm.state in LIVE_STATES and not vm.missing and vm.host_id is not None:
                for rule in bound:
                    self.on[vm.host_id][rule.tag][vm.id] = vm.name

    def check(self, item, dest) -> Finding:
        """rule.anti-affinity: the VM meets no other VM of its anti-affinity rules on dest."""
        bound = self.rules_of_vm.get(item.vm.id, ())
        if not bound:
            return ok("rule.anti-affinity", "No anti-affinity rule involved.")
        clashes = {}
        for rule in bound:
            others = {
                vid: name for vid, name in self.on[dest.id][rule.tag].items() if vid != item.vm.id
            }
            if others:
                clashes[rule.label] = sorted(others.values())
        evidence = {"rules": [r.label for r in bound], "destination": dest.name}
        if clashes:
            text = "; ".join(f"{label}: {', '.join(names)}" for label, names in clashes.items())
            return Finding(
                "rule.anti-affinity",
                BLOCKER,
                f"{item.vm.name} would share {dest.name} with {text}.",
                "Choose another destination, or move the other VM elsewhere first.",
                {**evidence, "clashes": clashes},
            )
        return ok(
            "rule.anti-affinity",
            f"No other VM of {', '.join(r.label for r in bound)} is on {dest.name}.",
            **evidence,
        )

    def move(self, item, source_id: int, dest_id: int, *, back: bool = False) -> None:
        """Record the VM on dest instead of source (back=True undoes it)."""
        if back:
            source_id, dest_id = dest_id, source_id
        for rule in self.rules_of_vm.get(item.vm.id, ()):
            self.on[source_id][rule.tag].pop(item.vm.id, None)
            self.on[dest_id][rule.tag][item.vm.id] = item.vm.name
