"""The change-ticket gate's decisions and write-backs (docs/change-gate.md).

`change_gate_check` runs before `plan_start`'s transaction (a slow change-management
system then holds no plan lock) and records every decision, allow or refuse, in its own
committed audit event: a refusal raises after its event is written. The gate fails closed:
a system that cannot answer refuses the start. People without the admin role read a
classified reason; the raw answer is in the server log and in admins' messages.

`change_gate_after` queues the write-back (started, completed, failed) after the plan's
transaction commits; it is retried with back-off and each outcome is audited.
"""

import logging
import re
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.urls import reverse
from django.utils import timezone

from dashboard.audit.models import AuditEvent
from dashboard.audit.record import Actor, audit_record
from dashboard.errors import StateConflict
from dashboard.permissions import role_names
from migrations_app.changegate.adapters import ChangeRecord, GateUnavailable, change_adapter
from migrations_app.changegate.tasks import change_gate_writeback_task
from migrations_app.models import MigrationPlan

logger = logging.getLogger("ferry.changegate")

# A ticket reference goes into a remote query: letters, digits and . _ - only (no ^ that
# would add ServiceNow query terms, no / that would change the generic contract's path).
TICKET_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
EVENTS = ("started", "completed", "failed", "cancelled")
GATE_ACTOR = Actor.system("change-gate")
SCHEDULER_RETRY_SECONDS = 60


class ChangeGateRefused(StateConflict):
    """The change-management system does not allow this plan to start now (HTTP 409)."""


def change_gate_enabled() -> bool:
    return settings.FERRY_CHANGE_GATE != "off"


def _record(plan, *, actor, allowed: bool, why: str, record: ChangeRecord | None) -> None:
    after = {
        "allowed": allowed,
        "gate": settings.FERRY_CHANGE_GATE,
        "ticket": plan.change_ticket,
        "why": why,
    }
    if record is not None:
        after.update(
            record_url=record.url,
            approval=record.approval,
            state=record.state,
            window_start=record.window_start,
            window_end=record.window_end,
        )
    with transaction.atomic():
        audit_record(
            actor=actor,
            action="plan.change_gate." + ("allow" if allowed else "refuse"),
            obj=plan,
            after=after,
        )


def _refused_recently(plan, now) -> bool:
    last = (
        AuditEvent.objects.filter(object_type=plan._meta.label_lower, object_id=str(plan.pk))
        .filter(action__startswith="plan.change_gate.")
        .order_by("-sequence")
        .values_list("action", "created_at")
        .first()
    )
    return bool(
        last
        and last[0] == "plan.change_gate.refuse"
        and now - last[1] < timedelta(seconds=SCHEDULER_RETRY_SECONDS)
    )


def _refuse(plan, *, actor, why: str, record=None, detail: str = "") -> None:
    _record(plan, actor=actor, allowed=False, why=why, record=record)
    message = f"Plan '{plan.name}' may not start: {why}"
    if detail and "admin" in role_names(actor if hasattr(actor, "is_authenticated") else None):
        message += f" (detail for admins: {detail})"
    raise ChangeGateRefused(message)


def change_gate_check(*, plan: MigrationPlan, actor, now=None) -> ChangeRecord | None:
    """Ask the change-management system whether `plan` may start now; audit the answer.

    Returns the change record when allowed (None when the gate is off); raises
    ChangeGateRefused otherwise.
    """
    adapter = change_adapter()
    if adapter is None:
        return None
    now = now or timezone.now()
    if not hasattr(actor, "is_authenticated") and _refused_recently(plan, now):
        # The scheduler retries due plans every tick: ask (and audit) once a minute only.
        raise ChangeGateRefused(f"Plan '{plan.name}' waits for its change ticket.")
    ticket = (plan.change_ticket or "").strip()
    if not ticket:
        _refuse(plan, actor=actor, why="it has no change ticket, and starts need an approved one.")
    if not TICKET_RE.match(ticket):
        _refuse(
            plan,
            actor=actor,
            why=f"its change ticket '{ticket[:100]}' is not a ticket number "
            "(letters, digits, '.', '_' and '-' only).",
        )
    try:
        record = adapter.lookup(ticket)
    except GateUnavailable as exc:
        logger.warning("change gate lookup of %s failed: %s", ticket, exc.detail)
        _refuse(
            plan,
            actor=actor,
            why=f"the change-management system could not be asked ({exc.public}); "
            "try again, or ask an admin to check the gate.",
            detail=exc.detail,
        )
    if record is None:
        _refuse(plan, actor=actor, why=f"change ticket {ticket} does not exist.")
    if record.closed:
        _refuse(plan, actor=actor, why=f"change ticket {ticket} is closed.", record=record)
    if not record.approved:
        _refuse(
            plan,
            actor=actor,
            why=f"change ticket {ticket} is not approved (approval: {record.approval or '-'}).",
            record=record,
        )
    start, end = record.window_start, record.window_end
    if start is None or end is None or not start <= now <= end:
        window = f"{start:%Y-%m-%d %H:%M} – {end:%Y-%m-%d %H:%M} UTC" if start and end else "none"
        _refuse(
            plan,
            actor=actor,
            why=f"now is outside change ticket {ticket}'s window ({window}).",
            record=record,
        )
    _record(plan, actor=actor, allowed=True, why="approved and inside its window", record=record)
    return record


def change_gate_after(plan: MigrationPlan, event: str) -> None:
    """Queue the write-back of `event` after the caller's transaction commits."""
    if not change_gate_enabled() or not plan.change_ticket:
        return
    plan_id = plan.pk
    transaction.on_commit(lambda: _enqueue(plan_id, event, 1, None))


def _enqueue(plan_id: int, event: str, attempt: int, when) -> None:
    try:
        task = (
            change_gate_writeback_task.using(run_after=when) if when else change_gate_writeback_task
        )
        task.enqueue(plan_id, event, attempt)
    except Exception:  # a broken queue must not break the change that was committed
        logger.exception("could not queue the change write-back of plan %s", plan_id)


def _note(plan: MigrationPlan, event: str) -> str:
    base = settings.FERRY_BASE_URL.rstrip("/")
    link = base + reverse("change-record", args=[plan.pk])
    words = {
        "started": "started",
        "completed": "completed",
        "failed": "ended with failures",
        "cancelled": "was cancelled while running",
    }
    return (
        f"Ferry: plan '{plan.name}' (#{plan.pk}, content {plan.content_hash[:12]}) "
        f"{words[event]} at {timezone.now():%Y-%m-%d %H:%M:%S} UTC. "
        f"Change record: {link}"
    )


def change_gate_write_back(plan_id: int, event: str, *, attempt: int = 1) -> dict:
    """Tell the change-management system what happened; audit the outcome."""
    plan = MigrationPlan.objects.filter(pk=plan_id).first()
    adapter = change_adapter()
    if plan is None or adapter is None or event not in EVENTS:
        return {"plan": plan_id, "event": event, "status": "skipped"}
    if event != "started" and not _written(plan, "started"):
        if attempt < settings.FERRY_NOTIFY_MAX_ATTEMPTS:
            # The ticket hears "started" first: wait while its write-back is still retrying.
            _enqueue(plan_id, event, attempt + 1, timezone.now() + timedelta(seconds=30))
            return {"plan": plan_id, "event": event, "status": "waiting", "attempt": attempt}
    try:
        record = adapter.lookup(plan.change_ticket)
        if record is None:
            raise GateUnavailable("the ticket no longer exists", "lookup answered no record")
        adapter.write_back(record, event, _note(plan, event))
    except GateUnavailable as exc:
        logger.warning("change write-back for plan %s failed: %s", plan_id, exc.detail)
        if attempt >= settings.FERRY_NOTIFY_MAX_ATTEMPTS:
            _audit_write_back(plan, event, failed=True, error=exc.public)
        else:
            delay = min(3600, 30 * 2 ** (attempt - 1))
            _enqueue(plan_id, event, attempt + 1, timezone.now() + timedelta(seconds=delay))
        return {"plan": plan_id, "event": event, "status": "failed", "attempt": attempt}
    _audit_write_back(plan, event, failed=False, record_url=record.url)
    return {"plan": plan_id, "event": event, "status": "written", "attempt": attempt}


def _written(plan, event: str) -> bool:
    """Whether `event`'s write-back is over (written, or given up) for `plan`."""
    return AuditEvent.objects.filter(
        object_type=plan._meta.label_lower,
        object_id=str(plan.pk),
        action__in=["plan.change_gate.write_back", "plan.change_gate.write_back_failed"],
        after__event=event,
    ).exists()


def _audit_write_back(plan, event: str, *, failed: bool, **extra) -> None:
    action = "plan.change_gate.write_back" + ("_failed" if failed else "")
    with transaction.atomic():
        audit_record(
            actor=GATE_ACTOR,
            action=action,
            obj=plan,
            after={"event": event, "ticket": plan.change_ticket, **extra},
        )
