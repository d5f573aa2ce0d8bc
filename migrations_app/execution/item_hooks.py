"""Plan-level hooks around one item (migrations_app.hooks), called by the runner: a
failed pre_migration hook fails the attempt before preflight, so the VM is untouched and
the item says "hook failed"; post_migration runs after a completed move."""

import logging

from django.db import transaction

from migrations_app.execution import errors, services
from migrations_app.hooks import hooks_run, plan_hooks
from migrations_app.models import MigrationPlan
from migrations_app.workflow.services import plan_pause

logger = logging.getLogger("ferry.execution.hooks")


def _hook_payload(attempt, event: str) -> dict:
    item = attempt.item
    return {
        "event": event,
        "plan": item.plan_id,
        "vm": item.vm.name,
        "vm_uuid": str(item.vm.uuid),
        "source": attempt.source_host.name,
        "destination": attempt.destination_host.name,
    }


def pre_migration(attempt) -> None:
    """A failed pre_migration hook leaves the VM untouched: the attempt fails before
    preflight ("hook failed"); the plan goes on, or pauses when the hook says so."""
    hooks = plan_hooks(attempt.item.plan_id, "pre_migration")
    if not hooks:
        return
    ok, why, policy = hooks_run(
        hooks,
        payload=_hook_payload(attempt, "pre_migration"),
        obj=attempt.item.plan,
        plan=attempt.item.plan,
        item=attempt.item,
    )
    if not ok:
        if policy == "pause":
            transaction.on_commit(lambda: _pause_for_hook(attempt.item.plan_id, why))
        raise errors.ExecutionError(errors.HOOK_FAILED, f"Hook failed: {why}")


def _pause_for_hook(plan_id: int, why: str) -> None:
    try:
        plan = MigrationPlan.objects.get(pk=plan_id)
        plan_pause(plan=plan, actor=services.worker_actor(""), reason=why)
    except Exception:  # already paused, cancelled or finished: nothing to pause
        logger.info("plan %s: not paused after a failed hook", plan_id)


def post_migration(attempt) -> None:
    """post_migration hooks after a completed move; a failure is recorded (audit, hook
    call) and never undoes the move."""
    hooks = plan_hooks(attempt.item.plan_id, "post_migration")
    if hooks:
        hooks_run(
            hooks,
            payload=_hook_payload(attempt, "post_migration"),
            obj=attempt.item.plan,
            plan=attempt.item.plan,
            item=attempt.item,
        )
