"""Hooks the workflow services call (see migrations_app.services.workflow): the workflow
changes the plan's status; these act on the plan's run, inside the same transaction."""

from migrations_app.execution import services


def on_plan_started(*, plan, actor, reason: str = "") -> None:
    """The plan is running: create its run and queue scheduling (after commit)."""
    services.run_start(plan=plan, actor=actor, override_reason=reason)


def on_plan_paused(*, plan, actor) -> None:
    """No new item starts; items in flight finish."""
    services.run_pause(plan=plan, actor=actor, reason=plan.status_reason)


def on_plan_resumed(*, plan, actor) -> None:
    """Items start again."""
    services.run_resume(plan=plan, actor=actor)


def on_plan_cancelled(*, plan, actor, reason: str = "") -> None:
    """Queued items never start; running items have their libvirt job aborted."""
    services.run_cancel(plan=plan, actor=actor, reason=reason)
