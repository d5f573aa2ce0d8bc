"""The one rule every content edit of a plan follows (the approval workflow relies on it).

An approval is bound to the plan's content hash; any edit of the content (items,
destinations, modes, maps, overrides, policy, window, name, description, change ticket)
must therefore call
`plan_content_changed` inside the edit's transaction, with the plan row locked by
`plan_lock`. The approve service locks the same row and compares the hash, so an edit and
an approval racing each other serialize: whichever commits second sees the other's result.
"""

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils import timezone

from dashboard.audit.record import audit_record
from migrations_app.errors import PlanError, PlanStateError
from migrations_app.models import Approval, MigrationPlan
from migrations_app.scoping import plan_scope_outside

# Statuses a content edit sends back to draft: the frozen content no longer exists.
RETURN_TO_DRAFT = frozenset({"submitted", "approved", "rejected", "scheduled"})


def plan_lock(plan_or_id) -> MigrationPlan:
    """The plan row, locked for this transaction (call inside transaction.atomic)."""
    pk = plan_or_id.pk if isinstance(plan_or_id, MigrationPlan) else plan_or_id
    return MigrationPlan.objects.select_for_update(no_key=True).get(pk=pk)


def plan_require_editable(plan: MigrationPlan) -> None:
    """Raise PlanStateError unless the plan's content may still change."""
    if plan.status not in MigrationPlan.EDITABLE:
        if plan.is_terminal:
            reason = "a finished plan is kept as it ran"
        else:
            reason = "pause or cancel it first; a running plan's content cannot change"
        raise PlanStateError(f"Plan '{plan.name}' is {plan.get_status_display()}: {reason}.")


def plan_contributor_note(plan: MigrationPlan, actor, role: str) -> bool:
    """Remember that a person `role`d ("created", "edited", "submitted") the plan; True when
    `plan.contributors` changed (the caller saves it). Four eyes excludes all of them."""
    if not isinstance(actor, AbstractBaseUser):
        return False  # workers and the system act on a person's behalf, never choose content
    entries = [dict(entry) for entry in plan.contributors or []]
    for entry in entries:
        if entry.get("id") == actor.pk:
            if role in entry.setdefault("as", []):
                return False
            entry["as"].append(role)
            break
    else:
        entries.append({"id": actor.pk, "name": actor.get_username(), "as": [role]})
    plan.contributors = entries
    return True


def plan_content_changed(plan: MigrationPlan, actor, *, what: str = "") -> MigrationPlan:
    """Record that the plan's content changed: bump the version and, when the plan was
    submitted/approved/rejected/scheduled, return it to draft, clear the frozen hash and
    void its approvals (with an audit event). Call with the plan locked, in the edit's
    transaction; saves the plan."""
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("plan_content_changed must run inside the edit's transaction")
    plan_require_editable(plan)
    # The last line of the role scope: whatever path changed the content (items, placement,
    # balancing), a person scoped to host groups may not leave it touching another group.
    # Raising here rolls the whole edit back.
    outside = plan_scope_outside(plan, actor, "plan.edit")
    if outside:
        raise PlanError(
            f"Plan '{plan.name}' would reach hosts outside the host groups your role covers; "
            "choose VMs and destinations in your groups."
        )
    plan.version += 1
    fields = ["version", "updated_at"]
    if plan_contributor_note(plan, actor, "edited"):
        fields.append("contributors")
    if plan.status in RETURN_TO_DRAFT:
        before = {"status": plan.status, "content_hash": plan.content_hash}
        reason = f"content edited{': ' + what if what else ''} (plan version {plan.version})"
        now = timezone.now()
        voided = list(
            Approval.objects.filter(plan=plan, voided_at__isnull=True).values_list("pk", flat=True)
        )
        Approval.objects.filter(pk__in=voided).update(voided_at=now, void_reason=reason[:200])
        plan.status = MigrationPlan.Status.DRAFT
        plan.content_hash = ""
        plan.status_reason = reason
        fields += ["status", "content_hash", "status_reason"]
        audit_record(
            actor=actor,
            action="plan.returned_to_draft",
            obj=plan,
            before=before,
            after={"status": plan.status, "voided_approvals": voided, "version": plan.version},
            reason=reason,
        )
    plan.save(update_fields=fields)
    return plan
