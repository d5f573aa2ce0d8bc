"""Placement rules by VM tag, and the two load checks that enforce them.

- anti-affinity rule on tag T: no two VMs carrying T share a host. It adds to the
  product's own `anti:NAME` tags (the `affinity` check).
- affinity rule on tag T: the VMs carrying T run on one host; a plan moves them together.

Rules are Ferry-wide (migrations_app.models.PlacementRule); the snapshot carries the
enabled ones with where their members live now (`Snapshot.rules`, `rule_members`), and the
ledger holds where the plan sends them (`Ledger.arriving_tags`), so evacuation,
move-to-group, balance and validation all ask the same two checks and every refusal
names the rule.
"""

from dataclasses import dataclass

from migrations_app.checks.base import BLOCKER, WARNING, Finding, ok

ANTI = "anti-affinity"
TOGETHER = "affinity"
KINDS = (ANTI, TOGETHER)


@dataclass(frozen=True, slots=True)
class Rule:
    """One rule: VMs carrying `tag` never share a host (anti-affinity) or stay together."""

    kind: str
    tag: str
    name: str = ""

    @property
    def label(self) -> str:
        return f"{self.kind} rule '{self.name or self.tag}'"


def rule_index(rules, residents) -> tuple[frozenset, dict]:
    """(the tags the rules name, {tag: {vm id: (host id, name)}}) from `residents`, an
    iterable of (vm id, name, host id, tags) of the VMs running now."""
    tags = frozenset(r.tag for r in rules)
    members: dict = {tag: {} for tag in tags}
    if tags:
        for vm_id, name, host_id, vm_tags in residents:
            for tag in vm_tags or ():
                if tag in tags:
                    members[tag][vm_id] = (host_id, name)
    return tags, members


def _rules_of(ctx, item, kind: str) -> list[Rule]:
    tags = item.vm.tags
    if not tags or item.storage_only:
        return []
    return [r for r in ctx.snapshot.rules if r.kind == kind and r.tag in tags]


def _host_name(ctx, host_id) -> str:
    host = ctx.snapshot.hosts.get(host_id)
    return host.name if host else f"host {host_id}"


def check_rule_anti(ctx, item, dest) -> Finding:
    """rule.anti-affinity: no other VM of the item's anti-affinity rules stays on or is
    sent to the destination."""
    rules = _rules_of(ctx, item, ANTI)
    if not rules:
        return ok("rule.anti-affinity", "No anti-affinity rule involved.")
    leaving = ctx.ledger.leaving
    clashes = {}
    for rule in rules:
        names = {
            vm_id: name
            for vm_id, (host_id, name) in ctx.snapshot.rule_members.get(rule.tag, {}).items()
            if host_id == dest.id and vm_id not in leaving
        }
        names.update(
            (vm_id, name)
            for vm_id, (host_id, name) in ctx.ledger.arriving_tags.get(rule.tag, {}).items()
            if host_id == dest.id
        )
        names.pop(item.vm.id, None)
        if names:
            clashes[rule.label] = sorted(names.values())
    evidence = {"rules": [r.label for r in rules], "destination": dest.name, "clashes": clashes}
    if clashes:
        text = "; ".join(f"{label}: {', '.join(names)}" for label, names in clashes.items())
        return Finding(
            "rule.anti-affinity",
            BLOCKER,
            f"{item.vm.name} would share {dest.name} with {text}.",
            "Choose another destination (placement avoids this), or move the other VM "
            "elsewhere in the same plan.",
            evidence,
        )
    return ok(
        "rule.anti-affinity",
        f"No other VM of {', '.join(r.label for r in rules)} is on {dest.name}.",
        **evidence,
    )


def check_rule_together(ctx, item, dest) -> Finding:
    """rule.affinity: every other VM of the item's affinity rules ends on the destination
    (those that stay where they are, and those the plan already sent somewhere)."""
    rules = _rules_of(ctx, item, TOGETHER)
    if not rules:
        return ok("rule.affinity", "No affinity rule involved.")
    leaving = ctx.ledger.leaving
    apart: dict = {}  # rule label -> {name: host name}
    broken: dict = {}  # rule label -> hosts its VMs ran on before the plan
    for rule in rules:
        members = ctx.snapshot.rule_members.get(rule.tag, {})
        before = sorted({_host_name(ctx, h) for v, (h, _n) in members.items() if v != item.vm.id})
        if item.vm.host_id is not None:
            before = sorted(set(before) | {_host_name(ctx, item.vm.host_id)})
        if len(before) > 1:
            broken[rule.label] = before
        final = {}
        arriving = ctx.ledger.arriving_tags.get(rule.tag, {})
        for vm_id, (host_id, name) in members.items():
            if vm_id in arriving or vm_id in leaving:
                continue  # sent somewhere (below), or leaving for a host not chosen yet
            final[vm_id] = (host_id, name)
        final.update(arriving)
        final.pop(item.vm.id, None)
        elsewhere = {name: _host_name(ctx, h) for h, name in final.values() if h != dest.id}
        if elsewhere:
            apart[rule.label] = elsewhere
    evidence = {
        "rules": [r.label for r in rules],
        "destination": dest.name,
        "apart": apart,
        "already_split": broken,
    }
    if not apart:
        return ok(
            "rule.affinity",
            f"{item.vm.name} ends on {dest.name} with the other VMs of "
            f"{', '.join(r.label for r in rules)} (or they follow it in this plan).",
            **evidence,
        )
    text = "; ".join(
        f"{label}: {', '.join(f'{n} on {h}' for n, h in sorted(names.items()))}"
        for label, names in apart.items()
    )
    if all(label in broken for label in apart):
        return Finding(
            "rule.affinity",
            WARNING,
            f"{item.vm.name} goes to {dest.name} apart from {text}; the rule was already "
            f"split before this plan ({'; '.join(', '.join(h) for h in broken.values())}).",
            "Bring the rule's VMs onto one host with move-to-group when convenient.",
            evidence,
        )
    return Finding(
        "rule.affinity",
        BLOCKER,
        f"{item.vm.name} would leave {text} by going to {dest.name}.",
        "Move the rule's VMs together (evacuation and move-to-group place them on one "
        "host), or disable the rule.",
        evidence,
    )
