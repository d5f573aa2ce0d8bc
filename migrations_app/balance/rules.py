"""Affinity rules by tag for the balance planner.

- anti-affinity rule on tag T: no two VMs carrying T share a host. It adds to the
  product's own `anti:NAME` tags, which the `affinity` load check already enforces.
- affinity rule on tag T: the VMs carrying T that live on one host stay together. The
  planner moves them as one unit (consecutive moves to the same destination); when they
  are already split over several hosts the rule is broken before the plan starts, and
  the planner leaves them where they are and says so (fixing it is a move-to-group job).

The rules and the two load checks that enforce them (`rule.anti-affinity`,
`rule.affinity`) live in checks.rules, so placement, validation and the planner refuse the
same moves with the same words. Rules given to the planner that its snapshot does not
carry (tests, the benchmark) are added to the planner's copy of the snapshot
(`with_rules`); Ferry's own rules come with the snapshot already.
"""

import dataclasses

from migrations_app.balance.load import BalanceInputError
from migrations_app.checks.rules import ANTI, KINDS, TOGETHER, Rule, rule_index

__all__ = ["ANTI", "KINDS", "TOGETHER", "Rule", "rules_of", "with_rules"]
LIVE_STATES = ("running", "paused")


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


def with_rules(snapshot, rules: tuple[Rule, ...]):
    """The snapshot, or a copy that also carries the rules it lacks, their members found
    among its items' running VMs (the snapshot is the planner's whole world)."""
    extra = tuple(r for r in rules if r not in set(snapshot.rules))
    if not extra:
        return snapshot
    residents = {
        item.vm.id: (item.vm.id, item.vm.name, item.vm.host_id, item.vm.tags)
        for item in snapshot.items
        if item.vm.state in LIVE_STATES and not item.vm.missing and item.vm.host_id is not None
    }
    tags, members = rule_index(extra, residents.values())
    merged = {tag: dict(vms) for tag, vms in snapshot.rule_members.items()}
    for tag, vms in members.items():
        merged.setdefault(tag, {}).update(vms)
    return dataclasses.replace(
        snapshot,
        rules=snapshot.rules + extra,
        rule_tags=snapshot.rule_tags | tags,
        rule_members=merged,
    )
