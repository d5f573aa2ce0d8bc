"""Background task that delivers one notification (retries re-enqueue it with a delay)."""

from django_tasks import task


@task()
def deliver_notification_task(delivery_id: int) -> dict:
    """One delivery attempt; the answer says how it went."""
    # Imported here: the services enqueue this task (the service ↔ task pair).
    from migrations_app.notifications.services import notification_deliver

    delivery = notification_deliver(delivery_id)
    if delivery is None:
        return {"delivery": delivery_id, "status": "not pending"}
    return {"delivery": delivery_id, "status": delivery.status, "attempts": delivery.attempts}
