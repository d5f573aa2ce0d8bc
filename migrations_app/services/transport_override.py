"""An admin's override of the TLS rule for one plan (M1 of the security review).

Moving a VM to a host reached without TLS (the policy turns TLS off, or the destination is
registered over qemu+tcp://) streams its memory and disks unencrypted to whatever answers
at that address: security.transport makes it a blocker. An admin may lift it for one plan
with a reason. The override is content: setting or clearing it returns the plan to draft
and voids approvals, so approvers always see it, and the admin becomes a contributor who
may not approve the plan.
"""

from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.utils import timezone

from dashboard.audit.record import audit_record
from dashboard.permissions import can
from migrations_app.errors import PlanError
from migrations_app.models import MigrationPlan
from migrations_app.services.plan_edits import (
    plan_content_changed,
    plan_lock,
    plan_require_editable,
)


def plan_transport_override_set(*, plan: MigrationPlan, actor, reason: str) -> MigrationPlan:
    """Allow (reason given) or forbid again (empty reason) unencrypted moves for a plan."""
    if not can(actor, "plan.transport_override"):
        raise PermissionDenied("Only an admin may allow a plan to move VMs without TLS.")
    reason = (reason or "").strip()
    if len(reason) > 2000:
        raise PlanError("The override reason must be under 2000 characters.")
    with transaction.atomic():
        plan = plan_lock(plan)
        plan_require_editable(plan)
        before = {"reason": plan.transport_override_reason, "by": plan.transport_override_by}
        if reason == plan.transport_override_reason:
            return plan
        plan.transport_override_reason = reason
        plan.transport_override_by = actor.get_username() if reason else ""
        plan.transport_override_at = timezone.now() if reason else None
        plan.save(
            update_fields=[
                "transport_override_reason",
                "transport_override_by",
                "transport_override_at",
            ]
        )
        plan_content_changed(plan, actor, what="transport override")
        audit_record(
            actor=actor,
            action="plan.transport_override" if reason else "plan.transport_override_cleared",
            obj=plan,
            before=before,
            after={"reason": reason, "by": plan.transport_override_by},
            reason=reason,
        )
    return plan
