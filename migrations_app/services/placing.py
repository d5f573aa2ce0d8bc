"""The placement service: choose destinations and store them with their explanation."""

from django.db import transaction

from dashboard.audit.record import audit_record
from dashboard.permissions import actor_scope, scope_label
from migrations_app.checks.snapshot import snapshot_load
from migrations_app.models import MigrationPlan
from migrations_app.placement import placement_run
from migrations_app.services.bulk_rows import collector_paused, placements_write
from migrations_app.services.plan_edits import (
    plan_content_changed,
    plan_lock,
    plan_require_editable,
)


@collector_paused()
def place_items(
    plan: MigrationPlan, *, actor=None, item_ids=None, replace=False, group=None
) -> list:
    """Run placement and write destinations and notes (caller holds the lock, audits, and
    calls plan_content_changed). With item_ids, only those items are placed; with group,
    only hosts of that group are candidates; a person's role scope limits them further."""
    snapshot = snapshot_load(plan)
    only = set(item_ids) if item_ids is not None else None
    scope = actor_scope(actor, "plan.edit")
    placements = placement_run(snapshot, replace=replace, only=only, group=group, scope=scope)
    placements_write(
        (p.item_id, p.destination_id, "placement" if p.destination_id else "", p.note)
        for p in placements
    )
    return placements


def plan_place(*, plan: MigrationPlan, actor, replace: bool = False) -> list:
    """Choose destinations for items without one (all items with replace=True)."""
    with transaction.atomic():
        plan = plan_lock(plan)
        plan_require_editable(plan)
        placements = place_items(plan, actor=actor, replace=replace)
        placed = sum(1 for p in placements if p.destination_id is not None)
        plan_content_changed(plan, actor, what="placement")
        audit_record(
            actor=actor,
            action="plan.placed",
            obj=plan,
            after={
                "replace": replace,
                "considered": len(placements),
                "placed": placed,
                "unplaced": len(placements) - placed,
                "scope": scope_label(actor_scope(actor, "plan.edit")),
            },
        )
    return placements
