"""Re-run failed items: a new plan that carries only the items of a finished plan that did
not complete (failed, or rolled back after a failed validation).

The new plan copies each item as it was approved (VM, hosts, mode, maps, overrides) with
the origin's policy, window, change ticket and transport decision. Its approval is the
origin's while its content stays within what was approved (content.plan_content_within,
checked again by plan_start); an edit returns it to draft and it needs approvals of its
own, like any plan. The person who asks for the re-run becomes a contributor, so their own
approval of the origin does not count for it (four eyes).
"""

from django.core.exceptions import PermissionDenied
from django.db import transaction

from dashboard.audit.record import audit_record
from dashboard.permissions import can
from migrations_app.content import plan_content_hash
from migrations_app.errors import PlanStateError
from migrations_app.models import Hook, MigrationPlan, PlanItem
from migrations_app.selectors.approvals import approvals_carried_count, approvals_required
from migrations_app.services.plan_edits import plan_contributor_note, plan_lock

S = MigrationPlan.Status
I = PlanItem.Status  # noqa: E741
RERUN_FROM = frozenset({S.FAILED, S.PARTIALLY_COMPLETED})
RERUN_ITEMS = (I.FAILED, I.ROLLED_BACK)


class RerunRefused(PlanStateError):
    """The plan has no failed items to re-run, or is not finished."""


def plan_rerun_failed(*, plan: MigrationPlan, actor) -> MigrationPlan:
    """A new plan with the failed items of a finished plan (see the module docstring)."""
    if not can(actor, "plan.run"):
        raise PermissionDenied("Your role does not allow re-running a plan's items.")
    with transaction.atomic():
        origin = plan_lock(plan)
        if origin.status not in RERUN_FROM:
            raise RerunRefused(
                f"Plan '{origin.name}' is {origin.get_status_display()}: only a failed or "
                "partially completed plan has failed items to re-run."
            )
        failed = list(origin.items.filter(status__in=RERUN_ITEMS).order_by("position", "id"))
        if not failed:
            raise RerunRefused(f"Plan '{origin.name}' has no failed or rolled-back items.")
        number = origin.reruns.count() + 1
        rerun = MigrationPlan.objects.create(
            name=f"{origin.name} (re-run {number})"[:200],
            description=(
                f"Re-run of the {len(failed)} failed item(s) of plan {origin.pk} "
                f"'{origin.name}'.\n\n{origin.description}"
            ),
            change_ticket=origin.change_ticket,
            window_start=origin.window_start,
            window_end=origin.window_end,
            policy=origin.policy,
            author=origin.author,
            author_name=origin.author_name,
            contributors=list(origin.contributors or []),
            transport_override_reason=origin.transport_override_reason,
            transport_override_by=origin.transport_override_by,
            transport_override_at=origin.transport_override_at,
            rerun_of=origin,
        )
        PlanItem.objects.bulk_create(
            PlanItem(
                plan=rerun,
                vm_id=item.vm_id,
                source_host_id=item.source_host_id,
                destination_host_id=item.destination_host_id,
                destination_chosen_by=item.destination_chosen_by,
                mode=item.mode,
                storage_map=item.storage_map,
                network_map=item.network_map,
                policy_overrides=item.policy_overrides,
                placement_note=item.placement_note,
                position=item.position,
                wave=item.wave,
            )
            for item in failed
        )
        # The hooks the approvers approved go with the items (same URL or command and
        # secret: the receiving side already trusts it).
        Hook.objects.bulk_create(
            Hook(
                plan=rerun,
                event=hook.event,
                kind=hook.kind,
                url=hook.url,
                secret=hook.secret,
                command=hook.command,
                args=hook.args,
                timeout_s=hook.timeout_s,
                on_failure=hook.on_failure,
                created_by_name=hook.created_by_name,
            )
            for hook in origin.hooks.order_by("id")
        )
        plan_contributor_note(rerun, actor, "created")
        rerun.content_hash = plan_content_hash(rerun)
        carried = approvals_carried_count(rerun)
        required = approvals_required()
        if carried >= required:
            rerun.status = S.APPROVED
            rerun.status_reason = (
                f"Re-run of plan {origin.pk}: its approval covers this content (the same "
                "items, policy and window); an edit needs a new approval."
            )
        else:
            # Nobody else approved the origin (or the approvers shaped this re-run): it
            # goes to approvers like any submitted plan.
            rerun.status = S.SUBMITTED
            rerun.status_reason = (
                f"Re-run of plan {origin.pk}: {carried} of {required} approval(s) carry over; "
                "it needs approval."
            )
        rerun.save()
        audit_record(
            actor=actor,
            action="plan.rerun_created",
            obj=rerun,
            after={
                "rerun_of": origin.pk,
                "items": [i.vm_id for i in failed],
                "content_hash": rerun.content_hash,
                "status": rerun.status,
                "approvals_carried": carried,
                "approvals_required": required,
            },
            reason=rerun.status_reason,
        )
    return rerun
