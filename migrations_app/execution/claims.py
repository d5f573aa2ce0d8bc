"""Claims, leases and heartbeats: the database decides who owns an attempt.

Every step that acts on an attempt is a conditional UPDATE that must touch exactly one
row; a worker that loses the race (a duplicate task delivery, a reconciler that took over
an expired lease) sees 0 rows and stops without touching libvirt.
"""

import os
import socket
import threading
from datetime import timedelta

from django.conf import settings
from django.db.models import F, Q
from django.utils import timezone
from django.utils.crypto import get_random_string

from migrations_app.models import ItemAttempt

A = ItemAttempt.Status


# PostgreSQL's SQLSTATEs for a transaction it rolled back to break a lock cycle or a
# serialization conflict: running the same transaction again is the documented answer.
RETRYABLE_SQLSTATES = ("40P01", "40001")
CLAIM_TRIES = 3


def lock_conflict(exc: BaseException) -> bool:
    """Whether a database error is PostgreSQL breaking a deadlock or a serialization
    conflict (the transaction was rolled back whole and may simply run again)."""
    cause = exc.__cause__ or exc
    return getattr(cause, "sqlstate", None) in RETRYABLE_SQLSTATES


def lease_seconds() -> float:
    """How long a claim lasts without a heartbeat (FERRY_LEASE_SECONDS, default 30)."""
    return float(settings.FERRY_LEASE_SECONDS)


def worker_name() -> str:
    """A name unique to this process and thread (host:pid:thread:random)."""
    local = _local()
    if not hasattr(local, "name"):
        local.name = (
            f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident() % 100000}:"
            f"{get_random_string(4)}"
        )
    return local.name


_thread_local = threading.local()


def _local():
    return _thread_local


def claim(attempt_id: int, worker: str) -> bool:
    """Take a queued attempt: queued → running, owned by `worker` with a fresh lease."""
    now = timezone.now()
    touched = ItemAttempt.objects.filter(
        pk=attempt_id, status=A.QUEUED, cancel_requested=False
    ).update(
        status=A.RUNNING,
        claimed_by=worker,
        lease_epoch=F("lease_epoch") + 1,
        lease_expires_at=now + timedelta(seconds=lease_seconds()),
        heartbeat_at=now,
        started_at=now,
    )
    return touched == 1


def take_over(attempt_id: int, worker: str) -> bool:
    """Take a running attempt whose lease expired (the reconciler re-attaching)."""
    now = timezone.now()
    touched = ItemAttempt.objects.filter(
        pk=attempt_id, status=A.RUNNING, lease_expires_at__lt=now
    ).update(
        claimed_by=worker,
        lease_epoch=F("lease_epoch") + 1,
        lease_expires_at=now + timedelta(seconds=lease_seconds()),
        heartbeat_at=now,
    )
    return touched == 1


def heartbeat(attempt_id: int, worker: str, epoch: int | None = None) -> tuple[bool, bool, bool]:
    """Extend the lease; returns (still owned, cancel requested, force-complete requested).

    With `epoch`, only the claim of that epoch counts: a worker that lost its lease and got
    it back by name alone (it cannot: names are unique) still fails after a take-over.
    """
    now = timezone.now()
    rows = ItemAttempt.objects.filter(pk=attempt_id, claimed_by=worker, status=A.RUNNING)
    if epoch is not None:
        rows = rows.filter(lease_epoch=epoch)
    touched = rows.update(
        lease_expires_at=now + timedelta(seconds=lease_seconds()), heartbeat_at=now
    )
    if touched != 1:
        return False, False, False
    cancel, force = (
        ItemAttempt.objects.filter(pk=attempt_id)
        .values_list("cancel_requested", "force_complete_requested_at")
        .get()
    )
    return True, cancel, force is not None


def mark_migrate_called(attempt_id: int, worker: str, unless_cancelled: bool = False) -> bool:
    """Record the one transfer call of this attempt; False means: do not call it.

    With `unless_cancelled` the same UPDATE also refuses an attempt whose cancel was
    requested and renews the lease (the heartbeat and the gate in one statement).
    """
    now = timezone.now()
    rows = ItemAttempt.objects.filter(
        pk=attempt_id, claimed_by=worker, status=A.RUNNING, migrate_called_at__isnull=True
    )
    values: dict = {"migrate_called_at": now}
    if unless_cancelled:
        rows = rows.filter(cancel_requested=False)
        values.update(lease_expires_at=now + timedelta(seconds=lease_seconds()), heartbeat_at=now)
    return rows.update(**values) == 1


def expired(now=None):
    """Attempts running under a lease that has run out."""
    now = now or timezone.now()
    return ItemAttempt.objects.filter(status=A.RUNNING).filter(
        Q(lease_expires_at__lt=now) | Q(lease_expires_at__isnull=True)
    )


def owns(attempt_id: int, worker: str, epoch: int) -> bool:
    """Whether `worker` holds the attempt under `epoch` with a lease that has not run out
    (the fencing check right before an action on a hypervisor)."""
    return ItemAttempt.objects.filter(
        pk=attempt_id,
        claimed_by=worker,
        lease_epoch=epoch,
        status=A.RUNNING,
        lease_expires_at__gt=timezone.now(),
    ).exists()
