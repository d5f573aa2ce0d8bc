"""Appending many audit events at once with the chain computed in Python.

For imports and for measuring `audit_verify` on large trails; services keep using
`audit_record`, which appends one event inside their own transaction.
"""

from collections.abc import Iterable

from django.db import transaction
from django.utils import timezone

from dashboard.audit.forward import forwarding_enabled, outbox_add_many
from dashboard.audit.models import AuditEvent
from dashboard.audit.record import GENESIS_HASH, event_hash, jsonable, lock_chain

_DEFAULTS = {
    "actor_type": AuditEvent.ActorType.SYSTEM,
    "actor_user_id": None,
    "actor_name": "system",
    "object_type": "",
    "object_id": "",
    "object_repr": "",
    "before": None,
    "after": None,
    "reason": "",
    "request_id": "",
    "source_address": "",
    "user_agent": "",
}


def audit_bulk_append(events: Iterable[dict], *, batch_size: int = 5_000) -> int:
    """Append events (dicts with at least `action`) to the chain; returns how many."""
    written = 0
    with transaction.atomic():
        lock_chain()
        tail = AuditEvent.objects.order_by("-sequence").values("sequence", "hash").first()
        sequence = tail["sequence"] if tail else 0
        prev_hash = tail["hash"] if tail else GENESIS_HASH
        batch: list[AuditEvent] = []
        for event in events:
            sequence += 1
            fields = {**_DEFAULTS, **event}
            fields["before"] = jsonable(fields["before"])
            fields["after"] = jsonable(fields["after"])
            fields["created_at"] = fields.get("created_at") or timezone.now()
            fields["sequence"] = sequence
            fields["prev_hash"] = prev_hash
            fields["hash"] = prev_hash = event_hash(fields)
            batch.append(AuditEvent(**fields))
            if len(batch) >= batch_size:
                written += _write(batch)
                batch = []
        if batch:
            written += _write(batch)
    return written


def _write(batch: list[AuditEvent]) -> int:
    AuditEvent.objects.bulk_create(batch)
    if forwarding_enabled():
        outbox_add_many(batch)  # in the same transaction, like audit_record
    return len(batch)
