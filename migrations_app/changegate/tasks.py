"""Background task that writes a plan's outcome back to its change ticket."""

from django_tasks import task


@task()
def change_gate_writeback_task(plan_id: int, event: str, attempt: int = 1) -> dict:
    """One write-back attempt; a failure re-queues itself with a delay."""
    # Imported here: the services enqueue this task (the service ↔ task pair).
    from migrations_app.changegate.services import change_gate_write_back

    return change_gate_write_back(plan_id, event, attempt=attempt)
