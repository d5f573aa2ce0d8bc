"""Make a plan on the server match a plan file: find it, create it, or change what
differs, with the fewest writes (none when nothing differs, so applying a file twice
changes nothing). The server decides what an edit means for approvals: any content edit
of a submitted or approved plan sends it back to draft and voids its approvals.
"""

import re
from dataclasses import dataclass, field
from datetime import datetime

from ferry_cli.client import FerryClient
from ferry_cli.errors import CliError, InputError
from ferry_cli.planfile import PlanSpec
from ferry_cli.resolve import Resolver

TERMINAL = {"completed", "failed", "partially_completed", "cancelled"}
EDITABLE = {"draft", "submitted", "approved", "rejected", "scheduled"}
# A plan file's `key` is kept on the server as the description's last line.
_KEY_LINE = re.compile(r"(?:\n\n)?\[ferry-key: ([^\]\n]+)\]\s*$")

Target = tuple[int | None, str, dict]  # destination host id (None: placement), mode, overrides


def key_of(plan: dict) -> str | None:
    found = _KEY_LINE.search(plan.get("description") or "")
    return found.group(1) if found else None


def description_of(spec: PlanSpec) -> str:
    if not spec.key:
        return spec.description
    marker = f"[ferry-key: {spec.key}]"
    return f"{spec.description}\n\n{marker}" if spec.description else marker


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _when(value) -> datetime | None:
    return datetime.fromisoformat(value.replace("Z", "+00:00")) if value else None


def choose_plan(matches: list[dict], label: str) -> dict | None:
    """Of plans newest first: the open one, else the newest finished one, else None.
    Two open ones are an error (nobody can tell which one is meant)."""
    open_ = [p for p in matches if p["status"] not in TERMINAL]
    if len(open_) > 1:
        ids = ", ".join(str(p["id"]) for p in open_)
        raise InputError(
            f"{len(open_)} open plans are {label} (ids {ids}): give the id, or a plan file "
            "a `key`, or cancel the plans you do not mean."
        )
    found = open_ or matches
    return found[0] if found else None


def find_plan(client: FerryClient, spec: PlanSpec) -> dict | None:
    """The plan this file describes, found by its key, or by its name without one."""
    plans = client.get_all("/api/v1/plans/")  # newest first
    if spec.key:
        return choose_plan([p for p in plans if key_of(p) == spec.key], f"keyed '{spec.key}'")
    return choose_plan([p for p in plans if p["name"] == spec.name], f"named '{spec.name}'")


def field_changes(plan: dict, spec: PlanSpec) -> dict:
    """The plan fields whose value in the file differs from the server's."""
    wanted = {
        "name": spec.name,
        "description": description_of(spec),
        "change_ticket": spec.change_ticket,
        "policy": spec.policy,
    }
    out = {k: v for k, v in wanted.items() if (plan.get(k) or ("" if k != "policy" else {})) != v}
    for name, value in (("window_start", spec.window_start), ("window_end", spec.window_end)):
        if _when(plan.get(name)) != value:
            out[name] = _iso(value)
    return out


@dataclass
class ItemChanges:
    add: dict[int, Target] = field(default_factory=dict)  # VM id -> target
    update: dict[int, dict] = field(default_factory=dict)  # item id -> PATCH body
    remove: list[int] = field(default_factory=list)  # item ids
    place: bool = False  # some item waits for placement

    def __bool__(self) -> bool:
        return bool(self.add or self.update or self.remove or self.place)

    def summary(self) -> list[str]:
        out = []
        if self.remove:
            out.append(f"{len(self.remove)} item(s) removed")
        if self.update:
            out.append(f"{len(self.update)} item(s) changed")
        if self.add:
            out.append(f"{len(self.add)} item(s) added")
        if self.place:
            out.append("placement asked for")
        return out


def item_changes(items: list[dict], targets: dict[int, Target]) -> ItemChanges:
    changes = ItemChanges()
    present = {item["vm"]: item for item in items}
    for vm_id, item in present.items():
        if vm_id not in targets:
            changes.remove.append(item["id"])
            continue
        dest, mode, overrides = targets[vm_id]
        body: dict = {}
        if item["mode"] != mode:
            body["mode"] = mode
        if mode != "storage_only":
            if dest is not None and item["destination_host"] != dest:
                body["destination"] = dest
            elif dest is None and item.get("destination_chosen_by") == "planner":
                body["destination"] = None  # the file asks for placement again
        if (item.get("policy_overrides") or {}) != overrides:
            body["policy_overrides"] = overrides
        if body:
            changes.update[item["id"]] = body
        if dest is None and mode != "storage_only":
            if "destination" in body or item["destination_host"] is None:
                changes.place = True
    for vm_id, target in targets.items():
        if vm_id not in present:
            changes.add[vm_id] = target
            if target[0] is None and target[1] != "storage_only":
                changes.place = True
    return changes


def _apply_items(client: FerryClient, plan_id: int, changes: ItemChanges) -> dict | None:
    base = f"/api/v1/plans/{plan_id}"
    for item_id in changes.remove:
        client.delete(f"{base}/items/{item_id}/")
    for item_id, body in changes.update.items():
        client.patch(f"{base}/items/{item_id}/", body)
    groups: dict[tuple[int | None, str], list[int]] = {}
    for vm_id, (dest, mode, _) in changes.add.items():
        groups.setdefault((dest, mode), []).append(vm_id)
    for (dest, mode), vms in groups.items():
        created = client.post(f"{base}/items/", {"vms": vms, "destination": dest, "mode": mode})
        for row in created:
            overrides = changes.add[row["vm"]][2]
            if overrides:
                client.patch(f"{base}/items/{row['id']}/", {"policy_overrides": overrides})
    if changes.place:
        return client.post(f"{base}/place/", {"replace": False})
    return None


@dataclass
class Outcome:
    plan: dict
    created: bool = False
    changed: list[str] = field(default_factory=list)
    placement: dict | None = None


def plan_create(client: FerryClient, spec: PlanSpec, targets: dict[int, Target]) -> Outcome:
    """A new draft with the file's content; a draft left half-made by an error is deleted."""
    body = {
        "name": spec.name,
        "description": description_of(spec),
        "change_ticket": spec.change_ticket,
        "window_start": _iso(spec.window_start),
        "window_end": _iso(spec.window_end),
        "policy": spec.policy,
    }
    plan = client.post("/api/v1/plans/", body)
    try:
        placement = _apply_items(client, plan["id"], item_changes([], targets))
    except CliError:
        try:
            client.delete(f"/api/v1/plans/{plan['id']}/")
        except CliError:
            pass  # the first error is the one to report
        raise
    plan = client.get(f"/api/v1/plans/{plan['id']}/")
    added = f"{len(targets)} item(s) added"
    return Outcome(plan=plan, created=True, changed=["plan created", added], placement=placement)


def plan_converge(client: FerryClient, spec: PlanSpec) -> Outcome:
    """Create the plan the file describes, or change the existing one to match it."""
    targets = Resolver(client).plan_targets(spec)
    plan = find_plan(client, spec)
    if plan is None:
        return plan_create(client, spec, targets)
    base = f"/api/v1/plans/{plan['id']}"
    fields = field_changes(plan, spec)
    items = item_changes(client.get_all(f"{base}/items/"), targets)
    if not fields and not items:
        return Outcome(plan=client.get(f"{base}/"))
    if plan["status"] not in EDITABLE:
        what = ", ".join([*sorted(fields), *items.summary()])
        raise CliError(
            f"Plan {plan['id']} '{plan['name']}' is {plan['status']}: its content can no "
            f"longer change, but the file differs ({what}). Give the file a new name or key "
            "to plan again."
        )
    changed = []
    if fields:
        client.patch(f"{base}/", fields)
        changed.append("fields changed: " + ", ".join(sorted(fields)))
    placement = _apply_items(client, plan["id"], items)
    changed += items.summary()
    return Outcome(plan=client.get(f"{base}/"), changed=changed, placement=placement)


def plan_create_new(client: FerryClient, spec: PlanSpec) -> Outcome:
    """`ferry plan create`: a new plan; refused while an open plan has the same identity."""
    targets = Resolver(client).plan_targets(spec)
    existing = find_plan(client, spec)
    if existing is not None and existing["status"] not in TERMINAL:
        raise InputError(
            f"Plan {existing['id']} '{existing['name']}' already exists ({existing['status']}): "
            "use `ferry plan apply` to change it."
        )
    return plan_create(client, spec, targets)
