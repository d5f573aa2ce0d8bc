"""Execution: background workers that carry out approved plans, item by item.

Data flow: `services.run_start` (called from the workflow's start hook) creates a PlanRun
and enqueues `tasks.schedule_run_task`; the scheduler creates an ItemAttempt per item that
may start under the plan's limits and window and enqueues `tasks.execute_attempt_task`;
the runner claims the attempt (conditional UPDATE), drives it phase by phase through a
driver (`drivers.libvirt_driver` for real hosts, `drivers.rehearsal` for libvirt's test
driver), samples progress, and hands back to the scheduler. `reconciler` recovers attempts
whose worker vanished by asking the hypervisors what really happened.
"""

from django_tasks.signals import task_enqueued


def _wake_workers(sender, **kwargs) -> None:
    """Every enqueue wakes idle database-queue workers at once (see `wakeup`)."""
    from migrations_app.execution.wakeup import on_task_enqueued

    on_task_enqueued(sender, **kwargs)


task_enqueued.connect(_wake_workers, dispatch_uid="ferry-wake-workers")
