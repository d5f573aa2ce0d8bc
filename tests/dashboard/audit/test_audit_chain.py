"""The audit chain: each event's hash covers its content and the previous hash."""

import pytest

from dashboard.audit.models import AuditEvent
from dashboard.audit.record import GENESIS_HASH, Actor, audit_record, event_hash

pytestmark = pytest.mark.django_db


def test_it_chains_events_and_their_hashes_recompute(make_user):
    user = make_user("alice", "planner")
    first = audit_record(
        actor=user, action="x.one", object_type="thing", object_id="1", after={"a": 1}
    )
    second = audit_record(
        actor=Actor.worker("w1"), action="x.two", object_type="thing", object_id="1"
    )
    assert first.prev_hash == GENESIS_HASH and second.prev_hash == first.hash
    assert second.sequence == first.sequence + 1
    for event in AuditEvent.objects.order_by("sequence"):
        fields = {
            f: getattr(event, f)
            for f in (
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
        }
        assert event_hash(fields) == event.hash
    assert first.actor_name == "alice" and first.actor_user_id == user.pk


def test_it_keeps_the_actor_name_when_the_user_is_deleted(make_user):
    user = make_user("bob")
    event = audit_record(actor=user, action="x", object_type="t")
    user.delete()
    event.refresh_from_db()
    assert event.actor_name == "bob"
