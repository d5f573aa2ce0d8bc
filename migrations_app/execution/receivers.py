"""Receivers of the workflow's signals: a plan's status change acts on the plan's run, in
the same transaction (connected in MigrationsAppConfig.ready())."""

from django.dispatch import receiver

from migrations_app.execution import services
from migrations_app.workflow import signals


@receiver(signals.plan_started, dispatch_uid="ferry-run-start")
def on_plan_started(sender, *, plan, actor, reason: str = "", **kwargs) -> None:
    """The plan is running: create its run and queue scheduling (after commit)."""
    services.run_start(plan=plan, actor=actor, override_reason=reason)


@receiver(signals.plan_paused, dispatch_uid="ferry-run-pause")
def on_plan_paused(sender, *, plan, actor, reason: str = "", **kwargs) -> None:
    """No new item starts; items in flight finish."""
    services.run_pause(plan=plan, actor=actor, reason=reason)


@receiver(signals.plan_resumed, dispatch_uid="ferry-run-resume")
def on_plan_resumed(sender, *, plan, actor, **kwargs) -> None:
    """Items start again."""
    services.run_resume(plan=plan, actor=actor)


@receiver(signals.plan_cancelled, dispatch_uid="ferry-run-cancel")
def on_plan_cancelled(sender, *, plan, actor, reason: str = "", **kwargs) -> None:
    """Queued items never start; running items have their libvirt job aborted."""
    services.run_cancel(plan=plan, actor=actor, reason=reason)
