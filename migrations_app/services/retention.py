"""Retention of progress samples: the one thing of a plan's history that is pruned.

Samples are the ~1 s job statistics of each transfer; they drive the live charts and the
estimate's learning while fresh, and become bulk afterwards. After
FERRY_SAMPLE_RETENTION_DAYS the samples of finished attempts are deleted in batches; the
attempts (with their final statistics, downtime and evidence), the items, the runs and
the audit trail are never pruned. Each prune that deletes something is audited.
"""

from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from dashboard.audit.record import Actor, audit_record
from migrations_app.models import ItemAttempt, ProgressSample

BATCH = 5000


def progress_samples_prune(*, now=None, days: int | None = None, actor=None) -> int:
    """Delete progress samples of finished attempts older than the retention; returns how
    many were deleted (0 when the retention is 0: keep forever)."""
    days = settings.FERRY_SAMPLE_RETENTION_DAYS if days is None else days
    if days <= 0:
        return 0
    cutoff = (now or timezone.now()) - timedelta(days=days)
    old = ProgressSample.objects.filter(
        at__lt=cutoff, attempt__status__in=ItemAttempt.TERMINAL
    ).order_by("id")
    deleted = 0
    while True:
        ids = list(old.values_list("id", flat=True)[:BATCH])
        if not ids:
            break
        with transaction.atomic():
            deleted += ProgressSample.objects.filter(id__in=ids).delete()[0]
    if deleted:
        with transaction.atomic():
            audit_record(
                actor=actor or Actor.system("retention"),
                action="samples.pruned",
                object_type="migrations_app.progresssample",
                object_repr=f"progress samples before {cutoff:%Y-%m-%d %H:%M} UTC",
                after={"deleted": deleted, "retention_days": days, "cutoff": cutoff},
            )
    return deleted
