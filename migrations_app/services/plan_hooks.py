"""Hooks on a plan (migrations_app.hooks): pre_migration and post_migration calls around
each of its VMs, as campaigns have them.

A hook is content: it is part of the plan's content hash, so adding or removing one
returns a submitted or approved plan to draft and voids its approvals (the approvers read
which URL or command Ferry will call). Command hooks are admins' (hook_create checks).
"""

from django.db import transaction

from dashboard.audit.record import audit_record
from migrations_app.errors import PlanError
from migrations_app.hooks import PLAN_EVENTS, hook_create
from migrations_app.models import Hook, MigrationPlan
from migrations_app.services.plan_edits import (
    plan_content_changed,
    plan_lock,
    plan_require_editable,
)

MAX_HOOKS = 20


def plan_hook_add(*, plan: MigrationPlan, actor, **fields) -> Hook:
    """Add a pre_migration or post_migration hook to a plan that may still change."""
    if fields.get("event") not in PLAN_EVENTS:
        raise PlanError(f"A plan's hook event is one of {', '.join(PLAN_EVENTS)}.")
    with transaction.atomic():
        locked = plan_lock(plan)
        plan_require_editable(locked)
        if locked.hooks.count() >= MAX_HOOKS:
            raise PlanError(f"A plan has at most {MAX_HOOKS} hooks.")
        hook = hook_create(actor=actor, plan=locked, **fields)
        plan_content_changed(locked, actor, what="hooks")
        audit_record(
            actor=actor,
            action="plan.hook_added",
            obj=locked,
            after={"hook": hook.pk, "event": hook.event, "kind": hook.kind},
        )
    return hook


def plan_hook_remove(*, plan: MigrationPlan, hook_id: int, actor) -> None:
    """Remove one of a plan's hooks (the plan must still be editable)."""
    with transaction.atomic():
        locked = plan_lock(plan)
        plan_require_editable(locked)
        hook = locked.hooks.filter(pk=hook_id).first()
        if hook is None:
            raise PlanError(f"Plan '{locked.name}' has no hook {hook_id}.")
        before = {"hook": hook.pk, "event": hook.event, "kind": hook.kind}
        hook.delete()
        plan_content_changed(locked, actor, what="hooks")
        audit_record(actor=actor, action="plan.hook_removed", obj=locked, before=before)
