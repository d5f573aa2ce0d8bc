"""The campaign's background task: one pass of the engine, then the next pass queued after
FERRY_CAMPAIGN_POLL_SECONDS while the campaign runs (a chain per start/resume)."""

import logging
from datetime import timedelta

from django.conf import settings
from django.utils import timezone
from django_tasks import task

logger = logging.getLogger("ferry.campaigns.tasks")


@task()
def campaign_advance_task(campaign_id: int, chain: int) -> dict:
    """Advance a running campaign one pass; queue the next pass if it still runs."""
    # The body runs the engine, which enqueues this task (the service <-> task pair).
    from migrations_app.campaigns.engine import campaign_advance

    result = campaign_advance(campaign_id, chain=chain)
    if result.get("again"):
        backend = campaign_advance_task.get_backend()
        if backend.supports_defer:
            when = timezone.now() + timedelta(seconds=settings.FERRY_CAMPAIGN_POLL_SECONDS)
            campaign_advance_task.using(run_after=when).enqueue(campaign_id, chain)
    return result
