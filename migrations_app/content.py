"""The content hash of a plan: what an approval is bound to.

It covers the items (VM, source, destination, mode, mappings, overrides), the policy, the
maintenance window, the hooks Ferry will call (never their secrets), and what the
approvers read to decide: name, description and change ticket. Any edit to those changes
the hash and so voids approvals.
"""

import hashlib
import json

from migrations_app.hooks import hook_content
from migrations_app.models import MigrationPlan

# An item's hashed columns, under the keys its content uses (besides "vm" and "wave").
ITEM_KEYS = {
    "source_host": "source_host_id",
    "destination_host": "destination_host_id",
    "mode": "mode",
    "storage_map": "storage_map",
    "network_map": "network_map",
    "policy_overrides": "policy_overrides",
}


def plan_content(plan: MigrationPlan) -> dict:
    """The canonical content of a plan, as a dict of JSON values."""
    # Only the hashed columns (the VM's uuid, not the whole VM row): at 10,000 items,
    # building items and VMs as model instances (and decoding every VM's JSON fields)
    # cost a second per validation.
    rows = plan.items.order_by("vm__uuid").values_list("vm__uuid", "wave", *ITEM_KEYS.values())
    items = [
        {
            "vm": str(vm_uuid),
            **dict(zip(ITEM_KEYS, values, strict=True)),
            # Only when set: plans hashed before waves existed keep their hash.
            **({"wave": wave} if wave else {}),
        }
        for vm_uuid, wave, *values in rows
    ]
    hooks = [hook_content(h) for h in plan.hooks.order_by("event", "id")]
    return {
        # Only when set: plans hashed before plan hooks existed keep their hash.
        **({"hooks": hooks} if hooks else {}),
        "plan": plan.pk,
        "name": plan.name,
        "description": plan.description,
        "change_ticket": plan.change_ticket,
        "transport_override": plan.transport_override_reason or None,
        "policy": plan.get_policy().content(),
        "window_start": plan.window_start.isoformat() if plan.window_start else None,
        "window_end": plan.window_end.isoformat() if plan.window_end else None,
        "items": items,
    }


def plan_content_hash(plan: MigrationPlan) -> str:
    """SHA-256 over the canonical JSON of the plan's content."""
    encoded = json.dumps(plan_content(plan), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(encoded.encode("utf-8")).hexdigest()


# What approvers approved besides the items: a re-run must keep all of it to reuse their
# approval (its name and description say it is a re-run, and are not part of the check).
_KEPT = ("change_ticket", "transport_override", "policy", "window_start", "window_end", "hooks")


def plan_content_within(plan: MigrationPlan, origin: MigrationPlan) -> tuple[bool, str]:
    """Whether `plan`'s content is part of what was approved for `origin`: the same policy,
    window, change ticket and transport decision, and every item exactly as it was there.
    Returns (True, "") or (False, what differs)."""
    mine, theirs = plan_content(plan), plan_content(origin)
    for key in _KEPT:
        if mine.get(key) != theirs.get(key):
            return False, f"its {key.replace('_', ' ')} differs from plan {origin.pk}'s"
    approved = {item["vm"]: item for item in theirs["items"]}
    for item in mine["items"]:
        if approved.get(item["vm"]) != item:
            return False, f"an item differs from what plan {origin.pk} approved"
    return True, ""
