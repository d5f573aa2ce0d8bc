"""Workflow services: submit, approve, reject, start, pause, resume, cancel, finish, hold.

Each service is one transaction that locks the plan row (SELECT … FOR UPDATE; on SQLite
every write transaction is BEGIN IMMEDIATE, which serializes writers the same way), checks
the transition against `migrations_app.workflow.states.TRANSITIONS`, changes the plan, and
records
exactly one audit event. Two approvers at once, or an approval racing an edit, therefore
run one after the other and the second sees the first one's result.

Errors map to HTTP in the API: TransitionError → 409, WorkflowForbidden → 403, Django
ValidationError (a missing reason) → 400.

Start, pause, resume and cancel send the signals of migrations_app.workflow.signals inside
the transaction after the status change (execution's receivers act on the plan's run), so
a run created for a start commits or rolls back with it; anything that talks to libvirt or
a queue goes through `transaction.on_commit`.
"""

import logging
from datetime import timedelta

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.utils import timezone

from dashboard.accounts.people import person_key
from dashboard.audit.record import Actor, audit_record
from dashboard.permissions import can
from migrations_app.changegate.services import change_gate_after, change_gate_check
from migrations_app.content import plan_content_hash
from migrations_app.errors import TransitionError
from migrations_app.live.events import plan_changed
from migrations_app.models import Approval, MigrationPlan, ValidationRun
from migrations_app.notifications.services import notify_plan_event
from migrations_app.scoping import plan_scope_outside, plan_scope_used
from migrations_app.selectors.approvals import (
    approval_excluded_reason,
    approval_people,
    approvals_carried_count,
    approvals_required,
    approvals_tied_count,
    approvals_valid,
    approvals_valid_count,
    campaign_approval_tied,
)
from migrations_app.services.plan_edits import plan_contributor_note
from migrations_app.workflow import signals
from migrations_app.workflow.states import require_transition

logger = logging.getLogger("ferry.workflow")

S = MigrationPlan.Status
OUTCOMES = frozenset({S.COMPLETED, S.FAILED, S.PARTIALLY_COMPLETED})


class WorkflowForbidden(PermissionDenied):
    """The actor's role, or the four-eyes rule, does not allow the action (HTTP 403)."""


# ---------------------------------------------------------------------------------------
# helpers


def _is_user(actor) -> bool:
    return isinstance(actor, AbstractBaseUser)


def _require_role(
    actor, action: str, verb: str, *, plan: MigrationPlan | None = None, machine_allowed=False
) -> None:
    """Users need the matrix permission, for every host group the plan touches when their
    role is scoped; workers/system only where `machine_allowed`."""
    if _is_user(actor):
        if not can(actor, action):
            raise WorkflowForbidden(f"Your role does not allow you to {verb} plans.")
        if plan is not None and plan_scope_outside(plan, actor, action):
            raise WorkflowForbidden(
                f"Plan '{plan.name}' touches hosts outside the host groups your role covers: "
                f"someone whose role reaches all of them must {verb} it."
            )
        return
    if not (machine_allowed and isinstance(actor, Actor)):
        raise WorkflowForbidden(f"Only a signed-in person may {verb} a plan.")


# The matrix action whose scope an audited workflow action was taken under.
_SCOPE_ACTION = {"plan.submit": "plan.submit", "plan.approve": "plan.approve"}
_SCOPE_ACTION["plan.reject"] = "plan.approve"

_EXCLUDED = {
    "author": "you wrote plan '{name}'",
    "edited": "you edited plan '{name}'",
    "submitted": "you submitted plan '{name}'",
    "same_person": "another account of yours shaped plan '{name}' (four eyes counts people)",
}


def _require_four_eyes(plan: MigrationPlan, user, verb: str) -> None:
    # Four eyes holds for everyone, superusers and admins included: whoever shaped the
    # content (wrote, edited or submitted it) may not also judge it.
    reason = approval_excluded_reason(plan, user)
    if reason:
        raise WorkflowForbidden(
            f"Four eyes: {_EXCLUDED[reason].format(name=plan.name)}, so someone else must "
            f"{verb} it."
        )


def _require_reason(value: str, field: str, message: str) -> str:
    text = (value or "").strip()
    if not text:
        raise ValidationError({field: [message]})
    return text


def _locked(plan: MigrationPlan) -> MigrationPlan:
    """The plan re-read under a row lock; the caller's copy may be stale."""
    return MigrationPlan.objects.select_for_update(no_key=True).get(pk=plan.pk)


def _sync(target: MigrationPlan, source: MigrationPlan) -> MigrationPlan:
    """Copy the locked row's fields back onto the caller's instance."""
    for field in MigrationPlan._meta.concrete_fields:
        setattr(target, field.attname, getattr(source, field.attname))
    return target


def _state(plan: MigrationPlan) -> dict:
    return {"status": plan.status, "version": plan.version, "hold": plan.hold}


def _change(
    plan: MigrationPlan,
    *,
    actor,
    action: str,
    before: dict,
    reason: str = "",
    extra: dict | None = None,
    update_fields: list[str],
):
    """Save the plan and record its one audit event, in the caller's transaction."""
    plan.save(update_fields=[*update_fields, "updated_at"])
    after = {**_state(plan), **(extra or {})}
    if _is_user(actor):
        role_action = _SCOPE_ACTION.get(action, "plan.run")
        if not can(actor, role_action):
            role_action = "plan.edit"  # a planner cancelling a plan not yet started
        after["scope"] = plan_scope_used(actor, role_action)
    event = audit_record(
        actor=actor, action=action, obj=plan, before=before, after=after, reason=reason
    )
    plan_changed(plan, reason=action)
    return event


def _stale_frozen_content(plan: MigrationPlan) -> bool:
    return plan_content_hash(plan) != plan.content_hash


def in_window(plan: MigrationPlan, now) -> bool:
    """Whether `now` falls inside the plan's maintenance window (no window: always)."""
    if plan.window_start and now < plan.window_start:
        return False
    return not (plan.window_end and now > plan.window_end)


def validation_current(plan: MigrationPlan) -> tuple[ValidationRun | None, str]:
    """The latest validation of the plan's current content, or why there is none."""
    latest = (
        ValidationRun.objects.filter(plan=plan, live=False).order_by("-created_at", "-id").first()
    )
    if latest is None:
        return None, f"Plan '{plan.name}' has not been validated: run validation first."
    current_hash = plan_content_hash(plan)
    if latest.plan_version != plan.version or latest.content_hash != current_hash:
        return None, (
            f"The last validation of plan '{plan.name}' checked version {latest.plan_version}, "
            f"but the plan is now version {plan.version}: validate it again."
        )
    return latest, ""


# ---------------------------------------------------------------------------------------
# services


def plan_submit(*, plan: MigrationPlan, actor) -> MigrationPlan:
    """Freeze a validated draft and hand it to approvers."""
    _require_role(actor, "plan.submit", "submit", plan=plan)
    with transaction.atomic():
        locked = _locked(plan)
        require_transition(locked, S.SUBMITTED, "submit")
        run, problem = validation_current(locked)
        if run is None:
            raise TransitionError(problem)
        if run.blockers:
            raise TransitionError(
                f"Cannot submit plan '{locked.name}': its validation found {run.blockers} "
                f"blocker(s). Fix them and validate again."
            )
        before = _state(locked)
        locked.status = S.SUBMITTED
        locked.content_hash = run.content_hash
        locked.submitted_at = timezone.now()
        locked.submitted_by_name = actor.get_username()
        locked.status_reason = ""
        plan_contributor_note(locked, actor, "submitted")
        _change(
            locked,
            actor=actor,
            action="plan.submit",
            before=before,
            extra={"content_hash": locked.content_hash, "validation_run": run.pk},
            update_fields=[
                "status",
                "content_hash",
                "submitted_at",
                "submitted_by_name",
                "status_reason",
                "contributors",
            ],
        )
        notify_plan_event(locked, "submitted", actor=actor)
    return _sync(plan, locked)


def plan_approve(
    *, plan: MigrationPlan, actor, comment: str = "", expected_hash: str = ""
) -> Approval:
    """Record one approver's approval of the frozen content; enough of them approve the plan.

    `expected_hash` is the content hash the approver was shown; when given and no longer
    current, the approval is refused, so nobody approves something they did not see.
    """
    _require_role(actor, "plan.approve", "approve", plan=plan)
    with transaction.atomic():
        locked = _locked(plan)
        _require_four_eyes(locked, actor, "approve")
        required = approvals_required()
        now = timezone.now()
        valid_before = approvals_valid_count(locked, now=now)
        # An approved plan whose approvals have expired may be approved again.
        reapproval = locked.status == S.APPROVED and valid_before < required
        if not reapproval:
            require_transition(locked, S.APPROVED, "approve")
        if locked.status not in (S.SUBMITTED, S.APPROVED):
            raise TransitionError(f"Cannot approve plan '{locked.name}': it is not submitted.")
        if expected_hash and expected_hash != locked.content_hash:
            raise TransitionError(
                f"Plan '{locked.name}' changed since you looked at it: review it again."
            )
        if _stale_frozen_content(locked):
            raise TransitionError(
                f"The content of plan '{locked.name}' no longer matches what was submitted: "
                "it must be validated and submitted again."
            )
        already = Approval.objects.filter(
            plan=locked,
            approver=actor,
            decision=Approval.Decision.APPROVED,
            content_hash=locked.content_hash,
            voided_at__isnull=True,
        ).exclude(expires_at__lte=now)
        if already.exists():
            raise TransitionError(
                f"You have already approved plan '{locked.name}'; "
                f"it needs {required} distinct approver(s)."
            )
        if person_key(actor) in approval_people(approvals_valid(locked, now=now)):
            raise WorkflowForbidden(
                f"Another account of yours has already approved plan '{locked.name}': four "
                f"eyes counts people, so {required} different people must approve it."
            )
        ttl_hours = int(getattr(settings, "FERRY_APPROVAL_TTL_HOURS", 0))
        approval = Approval.objects.create(
            plan=locked,
            approver=actor,
            approver_name=actor.get_username(),
            decision=Approval.Decision.APPROVED,
            comment=(comment or "").strip(),
            content_hash=locked.content_hash,
            expires_at=now + timedelta(hours=ttl_hours) if ttl_hours > 0 else None,
        )
        count = valid_before + 1
        before = _state(locked)
        if count >= required:
            locked.status = S.APPROVED
        locked.status_reason = ""
        event = _change(
            locked,
            actor=actor,
            action="plan.approve",
            before=before,
            reason=approval.comment,
            extra={
                "approval": approval.pk,
                "content_hash": locked.content_hash,
                "approvals": count,
                "required": required,
                "expires_at": approval.expires_at,
            },
            update_fields=["status", "status_reason"],
        )
        # Tie the approval to its event in the hash chain; plan_start checks the tie.
        approval.audit_sequence = event.sequence
        approval.save(update_fields=["audit_sequence"])
        notify_plan_event(locked, "approved", actor=actor, extra={"approvals": count})
    _sync(plan, locked)
    return approval


def plan_reject(*, plan: MigrationPlan, actor, reason: str) -> Approval:
    """Reject a submitted plan with a reason (four eyes, like approval)."""
    _require_role(actor, "plan.approve", "reject", plan=plan)
    reason = _require_reason(reason, "reason", "Say why the plan is rejected.")
    with transaction.atomic():
        locked = _locked(plan)
        _require_four_eyes(locked, actor, "reject")
        require_transition(locked, S.REJECTED, "reject")
        rejection = Approval.objects.create(
            plan=locked,
            approver=actor,
            approver_name=actor.get_username(),
            decision=Approval.Decision.REJECTED,
            comment=reason,
            content_hash=locked.content_hash,
        )
        before = _state(locked)
        locked.status = S.REJECTED
        locked.status_reason = reason
        _change(
            locked,
            actor=actor,
            action="plan.reject",
            before=before,
            reason=reason,
            extra={"approval": rejection.pk, "content_hash": locked.content_hash},
            update_fields=["status", "status_reason"],
        )
        notify_plan_event(locked, "rejected", actor=actor, extra={"reason": reason})
    _sync(plan, locked)
    return rejection


def plan_start(*, plan: MigrationPlan, actor, override_reason: str = "") -> MigrationPlan:
    """Start an approved plan (an operator, or the scheduler as a system actor).

    Outside the maintenance window an override reason is required. The execution code
    creates its run in `on_plan_started` (see the module docstring).
    """
    _require_role(actor, "plan.run", "start", plan=plan, machine_allowed=True)
    override_reason = (override_reason or "").strip()
    gate = None
    current = MigrationPlan.objects.filter(pk=plan.pk).values_list("status", flat=True).first()
    if current in (S.APPROVED, S.SCHEDULED):
        # Outside the transaction: the change-management system's answer (and its audit
        # event, allow or refuse) must not hold the plan's lock while it is awaited.
        gate = change_gate_check(plan=plan, actor=actor)
    with transaction.atomic():
        locked = _locked(plan)
        # PAUSED → RUNNING is also legal in the table, but that is resume, not start.
        if locked.status not in (S.APPROVED, S.SCHEDULED):
            raise TransitionError(
                f"Cannot start plan '{locked.name}': it is {locked.get_status_display()}"
                + (" (resume it instead)." if locked.status == S.PAUSED else ".")
            )
        require_transition(locked, S.RUNNING, "start")
        if not _is_user(actor) and locked.hold:
            raise TransitionError(f"Plan '{locked.name}' is on hold: an operator must start it.")
        now = timezone.now()
        required = approvals_required()
        valid = approvals_tied_count(locked, now=now)
        if valid < required and locked.rerun_of_id:
            valid = max(valid, approvals_carried_count(locked, now=now))
        if locked.campaign_id is not None and campaign_approval_tied(locked):
            valid = required  # generated by a running, approved campaign (its approval)
        if valid < required:
            raise TransitionError(
                f"Cannot start plan '{locked.name}': it has {valid} valid approval(s) of "
                f"{required} required (approvals expire or are voided by edits, and count "
                "only from people who did not shape the plan, as the audit trail records)."
            )
        if _stale_frozen_content(locked):
            raise TransitionError(
                f"The content of plan '{locked.name}' no longer matches what was approved."
            )
        outside = not in_window(locked, now)
        if outside and not override_reason:
            raise ValidationError(
                {
                    "override_reason": [
                        "The plan is outside its maintenance window: "
                        "give an override reason to start it now."
                    ]
                }
            )
        before = _state(locked)
        locked.status = S.RUNNING
        locked.status_reason = override_reason if outside else ""
        _change(
            locked,
            actor=actor,
            action="plan.start",
            before=before,
            reason=override_reason if outside else "",
            extra={
                "outside_window": outside,
                "content_hash": locked.content_hash,
                **({"change_record": gate.url} if gate else {}),
            },
            update_fields=["status", "status_reason"],
        )
        change_gate_after(locked, "started")
        signals.plan_started.send(
            sender=MigrationPlan,
            plan=locked,
            actor=actor,
            reason=override_reason if outside else "",
        )
        notify_plan_event(locked, "started", actor=actor)
    return _sync(plan, locked)


def _simple_transition(
    plan: MigrationPlan,
    *,
    actor,
    target: str,
    verb: str,
    action: str,
    signal,
    reason: str = "",
    authorize=None,
) -> MigrationPlan:
    if authorize is None:
        _require_role(actor, "plan.run", verb, plan=plan, machine_allowed=True)
    with transaction.atomic():
        locked = _locked(plan)
        if authorize is not None:
            authorize(locked)
        require_transition(locked, target, verb)
        before = _state(locked)
        locked.status = target
        locked.status_reason = reason
        _change(
            locked,
            actor=actor,
            action=action,
            before=before,
            reason=reason,
            update_fields=["status", "status_reason"],
        )
        signal.send(sender=MigrationPlan, plan=locked, actor=actor, reason=reason)
        if target == S.CANCELLED:
            notify_plan_event(locked, "cancelled", actor=actor, extra={"reason": reason})
            if before["status"] in (S.RUNNING, S.PAUSED):
                change_gate_after(locked, "cancelled")  # the ticket heard "started"
    return _sync(plan, locked)


def plan_pause(*, plan: MigrationPlan, actor, reason: str = "") -> MigrationPlan:
    """Pause a running plan: items in flight finish, no new item starts. The reason (the
    scheduler's: a window closed, items failed) is kept on the plan and its run."""
    return _simple_transition(
        plan,
        actor=actor,
        target=S.PAUSED,
        verb="pause",
        action="plan.pause",
        signal=signals.plan_paused,
        reason=(reason or "").strip(),
    )


def plan_resume(*, plan: MigrationPlan, actor) -> MigrationPlan:
    """Resume a paused plan."""
    return _simple_transition(
        plan,
        actor=actor,
        target=S.RUNNING,
        verb="resume",
        action="plan.resume",
        signal=signals.plan_resumed,
    )


def plan_cancel(*, plan: MigrationPlan, actor, reason: str) -> MigrationPlan:
    """Cancel a plan with a reason; a running plan's libvirt jobs are aborted by the run's
    receiver.

    Operators may cancel any unfinished plan; planners may cancel plans not yet started.
    """
    reason = _require_reason(reason, "reason", "Say why the plan is cancelled.")

    def authorize(locked: MigrationPlan) -> None:
        # Checked on the locked row: whether the plan has started decides who may cancel.
        if not _is_user(actor) or can(actor, "plan.run"):
            _require_role(actor, "plan.run", "cancel", plan=locked, machine_allowed=True)
            return
        if not can(actor, "plan.edit"):
            raise WorkflowForbidden("Your role does not allow you to cancel plans.")
        _require_role(actor, "plan.edit", "cancel", plan=locked)
        if locked.status in (S.RUNNING, S.PAUSED):
            raise WorkflowForbidden("Only an operator may cancel a plan that has started.")

    return _simple_transition(
        plan,
        actor=actor,
        target=S.CANCELLED,
        verb="cancel",
        action="plan.cancel",
        signal=signals.plan_cancelled,
        reason=reason,
        authorize=authorize,
    )


def plan_finish(*, plan: MigrationPlan, actor, outcome: str, reason: str = "") -> MigrationPlan:
    """Record a run's outcome on its plan (completed, failed or partially completed).

    Called by the execution code (usually as a worker actor) when the last item ends.
    """
    if outcome not in OUTCOMES:
        raise ValidationError({"outcome": [f"Unknown outcome {outcome!r}."]})
    _require_role(actor, "plan.run", "finish", plan=plan, machine_allowed=True)
    with transaction.atomic():
        locked = _locked(plan)
        require_transition(locked, outcome, "finish")
        before = _state(locked)
        locked.status = outcome
        locked.status_reason = reason
        _change(
            locked,
            actor=actor,
            action=f"plan.{outcome}",
            before=before,
            reason=reason,
            update_fields=["status", "status_reason"],
        )
        event = "failed" if outcome == S.FAILED else "finished"
        notify_plan_event(locked, event, actor=actor, extra={"outcome": outcome})
        change_gate_after(locked, "completed" if outcome == S.COMPLETED else "failed")
    return _sync(plan, locked)


def _set_hold(plan: MigrationPlan, *, actor, hold: bool, reason: str) -> MigrationPlan:
    verb = "hold" if hold else "release"
    _require_role(actor, "plan.run", verb, plan=plan)
    with transaction.atomic():
        locked = _locked(plan)
        if locked.is_terminal or locked.status in (S.RUNNING, S.PAUSED):
            raise TransitionError(
                f"Cannot {verb} plan '{locked.name}': it is {locked.get_status_display()}."
            )
        if locked.hold == hold:
            state = "on hold" if hold else "not on hold"
            raise TransitionError(f"Plan '{locked.name}' is already {state}.")
        before = _state(locked)
        locked.hold = hold
        _change(
            locked,
            actor=actor,
            action=f"plan.{verb}",
            before=before,
            reason=reason,
            update_fields=["hold"],
        )
    return _sync(plan, locked)


def plan_hold(*, plan: MigrationPlan, actor, reason: str = "") -> MigrationPlan:
    """Put an operator hold on a plan so the scheduler does not start it by itself."""
    return _set_hold(plan, actor=actor, hold=True, reason=(reason or "").strip())


def plan_release(*, plan: MigrationPlan, actor, reason: str = "") -> MigrationPlan:
    """Lift an operator hold."""
    return _set_hold(plan, actor=actor, hold=False, reason=(reason or "").strip())
