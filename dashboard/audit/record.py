"""Writing and verifying the audit trail.

Every service records its change with `audit_record` inside its own transaction, so the
change and its record commit or roll back together. Events form a SHA-256 chain: each
hash covers the canonical serialization of the event and the previous event's hash, so an
edited, deleted, inserted or reordered row breaks the chain at that point.
"""

import datetime as dt
import hashlib
import json
from dataclasses import dataclass

from django.core.serializers.json import DjangoJSONEncoder
from django.db import connection, transaction
from django.utils import timezone

from dashboard.audit.anchor import anchor_after_commit
from dashboard.audit.forward import forwarding_enabled, outbox_add
from dashboard.audit.models import AuditEvent
from dashboard.request_context import current_context

GENESIS_HASH = "0" * 64
# Arbitrary constant key for the PostgreSQL advisory lock that serializes chain appends.
_CHAIN_LOCK_KEY = 7_270_301

HASHED_FIELDS = (
    "sequence",
    "created_at",
    "actor_type",
    "actor_user_id",
    "actor_name",
    "action",
    "object_type",
    "object_id",
    "object_repr",
    "before",
    "after",
    "reason",
    "request_id",
    "source_address",
    "user_agent",
    "prev_hash",
)


@dataclass(frozen=True)
class Actor:
    """Who did it: a user, or a named worker/system/share-link actor."""

    type: str
    name: str
    user_id: int | None = None

    @classmethod
    def of(cls, user) -> "Actor":
        """The actor for a Django user."""
        return cls(type=AuditEvent.ActorType.USER, name=user.get_username(), user_id=user.pk)

    @classmethod
    def system(cls, name: str = "system") -> "Actor":
        """Ferry itself (a management command, a scheduled job)."""
        return cls(type=AuditEvent.ActorType.SYSTEM, name=name)

    @classmethod
    def worker(cls, name: str = "worker") -> "Actor":
        """A background worker."""
        return cls(type=AuditEvent.ActorType.WORKER, name=name)


def as_actor(who) -> Actor:
    """Accept an Actor, a user, or None (system)."""
    if who is None:
        return Actor.system()
    if isinstance(who, Actor):
        return who
    return Actor.of(who)


def jsonable(value):
    """Round-trip through JSON so what is hashed is exactly what the database returns."""
    if value is None:
        return None
    return json.loads(json.dumps(value, cls=DjangoJSONEncoder, sort_keys=True))


def canonical_bytes(fields: dict) -> bytes:
    """The canonical serialization hashed for one event."""
    data = {name: fields[name] for name in HASHED_FIELDS}
    created = data["created_at"]
    data["created_at"] = created.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return json.dumps(
        data, sort_keys=True, separators=(",", ":"), ensure_ascii=False, cls=DjangoJSONEncoder
    ).encode("utf-8")


def event_hash(fields: dict) -> str:
    """SHA-256 of the canonical serialization (which includes prev_hash)."""
    return hashlib.sha256(canonical_bytes(fields)).hexdigest()


def lock_chain() -> None:
    """Hold the chain's append lock until the caller's transaction ends.

    SQLite runs every write transaction as BEGIN IMMEDIATE (see settings), which already
    serializes writers; PostgreSQL needs an explicit lock so two appends cannot both read
    the same tail and fork the chain.

    Lock order: a transaction that locks rows and then audits takes this lock FIRST (call
    it before its select_for_update). Otherwise it can hold a row that a transaction
    already holding the chain needs (an UPDATE, or a foreign key checked at COMMIT), and
    PostgreSQL kills one of the two as a deadlock (a host sync against a worker claiming a
    move onto that host was seen doing this on the lab).
    """
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_CHAIN_LOCK_KEY])


def lock_for_audit(queryset):
    """`queryset`'s rows, to be locked for a change that will be audited: the chain's lock
    first (the lock order of lock_chain), then the rows FOR NO KEY UPDATE (a foreign key
    checked at another transaction's COMMIT never waits for them)."""
    lock_chain()
    return queryset.select_for_update(no_key=True)


def audit_record(
    *,
    actor,
    action: str,
    obj=None,
    object_type: str = "",
    object_id: str = "",
    object_repr: str = "",
    before=None,
    after=None,
    reason: str = "",
) -> AuditEvent:
    """Append one event to the chain, in the caller's transaction."""
    who = as_actor(actor)
    if obj is not None:
        object_type = object_type or obj._meta.label_lower
        object_id = object_id or str(obj.pk)
        object_repr = object_repr or str(obj)[:300]
    context = current_context()
    with transaction.atomic():
        lock_chain()
        tail = AuditEvent.objects.order_by("-sequence").values("sequence", "hash").first()
        fields = {
            "sequence": (tail["sequence"] + 1) if tail else 1,
            "created_at": timezone.now(),
            "actor_type": who.type,
            "actor_user_id": who.user_id,
            "actor_name": who.name[:150],
            "action": action,
            "object_type": object_type,
            "object_id": str(object_id)[:64],
            "object_repr": object_repr[:300],
            "before": jsonable(before),
            "after": jsonable(after),
            "reason": reason,
            "request_id": context.request_id,
            "source_address": context.source_address,
            "user_agent": context.user_agent,
            "prev_hash": tail["hash"] if tail else GENESIS_HASH,
        }
        fields["hash"] = event_hash(fields)
        event = AuditEvent.objects.create(**fields)
        if forwarding_enabled():
            outbox_add(event)  # forwarded to syslog: committed with the event or not at all
    # After the outermost commit, note the head outside the database (rate-limited there).
    transaction.on_commit(anchor_after_commit)
    return event
