"""Execution: background workers that carry out approved plans, item by item.

Data flow: the workflow's plan_started signal reaches `receivers`, which calls
`services.run_start`: a PlanRun, then `tasks.schedule_run_task` after commit; the
scheduler creates an ItemAttempt per item that may start under the plan's limits and
window and enqueues `tasks.execute_attempt_task`; the runner claims the attempt
(conditional UPDATE), drives it phase by phase through a driver (`drivers.libvirt` for real
hosts, `drivers.rehearsal` for libvirt's test driver), samples progress, and hands back to
the scheduler. `reconciler` recovers attempts whose worker vanished by asking the
hypervisors what really happened.
"""
