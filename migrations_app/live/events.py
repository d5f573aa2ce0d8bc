"""Emit helpers: the one place that numbers run events and publishes them live (through
the platform's dashboard.live.publish).

Events are stored (RunEvent) in the caller's transaction and sent to channel-layer groups
only after commit, so a browser never sees something that was rolled back, and a client
that missed events fetches the range by sequence number over REST.
"""

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from dashboard.live.publish import publish
from migrations_app.live.redaction import status_event, status_group
from migrations_app.models import PlanRun, RunEvent

DASHBOARD_GROUP = "dashboard"


def plan_group(plan_id: int) -> str:
    """Channel-layer group of one plan's subscribers."""
    return f"plan.{plan_id}"


def event_message(event: RunEvent, plan_id: int) -> dict:
    """The wire form of an event (also what the REST range endpoint returns)."""
    return {
        "run": event.run_id,
        "plan": plan_id,
        "seq": event.seq,
        "kind": event.kind,
        "item": event.item_id,
        "at": event.created_at.isoformat(),
        "payload": event.payload,
    }


def run_event(*, run: PlanRun, kind: str, payload: dict, item=None) -> RunEvent:
    """Store the next numbered event of a run and publish it after commit."""
    with transaction.atomic():
        # The UPDATE locks the run row until commit, so concurrent emitters of one run get
        # consecutive numbers in commit order and a rollback leaves no gap.
        PlanRun.objects.filter(pk=run.pk).update(event_seq=F("event_seq") + 1)
        seq = PlanRun.objects.filter(pk=run.pk).values_list("event_seq", flat=True).get()
        event = RunEvent.objects.create(
            run_id=run.pk, seq=seq, kind=kind, item=item, payload=payload
        )
        if event.created_at is None:  # pragma: no cover - auto_now_add sets it
            event.created_at = timezone.now()
        message = event_message(event, run.plan_id)
        groups = [plan_group(run.plan_id), DASHBOARD_GROUP]
        transaction.on_commit(lambda: _publish_all(groups, message))
    return event


def plan_changed(plan, *, reason: str = "") -> None:
    """Tell subscribers a plan's state changed outside a run event (they re-snapshot)."""
    message = {
        "run": None,
        "plan": plan.pk,
        "seq": None,
        "kind": "plan.changed",
        "item": None,
        "at": timezone.now().isoformat(),
        "payload": {"status": plan.status, "reason": reason},
    }
    transaction.on_commit(lambda: _publish_all([plan_group(plan.pk), DASHBOARD_GROUP], message))


def _publish_all(groups: list[str], message: dict) -> None:
    # Signed-in viewers get the event as it is; status-link streams (no account) get a
    # redacted copy on their own group (migrations_app.live.redaction).
    publish(groups, message)
    publish([status_group(message["plan"])], status_event(message))
