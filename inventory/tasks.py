"""Background tasks of the inventory: they take ids, load state and call a service."""

from django.contrib.auth import get_user_model
from django_tasks import task

from dashboard.audit.record import Actor
from inventory.models import Host
from inventory.sync import host_sync


@task()
def sync_host_task(host_id: int, requested_by: int | None = None) -> dict:
    """Sync one host; the requesting user is recorded as the actor."""
    host = Host.objects.filter(pk=host_id).first()
    if host is None:
        return {"ok": False, "error": f"host {host_id} no longer exists"}
    user = get_user_model().objects.filter(pk=requested_by).first() if requested_by else None
    actor = Actor.of(user) if user else Actor.worker()
    return host_sync(host=host, actor=actor).summary()


def host_sync_enqueue(*, host: Host, user=None) -> str:
    """Queue a sync of the host and remember the task id on it."""
    result = sync_host_task.enqueue(host.pk, user.pk if user is not None else None)
    Host.objects.filter(pk=host.pk).update(last_sync_task_id=str(result.id))
    return str(result.id)
