"""The change record of a plan: what an auditor files with the change ticket.

It opens with a one-screen summary (reports.summary: outcome, time against the estimate,
downtime against the allowed maximum, who did what and when, deviations, the chain head)
and the per-VM table, then gathers the plan, the check evidence and estimate the approvers saw (the validation run
whose content hash the approvals are bound to), every approval and rejection with its
comment, the execution timeline, and the plan's audit events with their hashes, plus the
head of the whole chain at the time of printing (an anchor for `audit_verify
--expect-head`).
"""

from dataclasses import dataclass, field

from django.db.models import Q, QuerySet
from django.utils import timezone

from dashboard.audit.models import AuditEvent
from dashboard.audit.selectors import audit_events_visible
from migrations_app.models import Approval, MigrationPlan, PlanRun, ValidationRun
from migrations_app.reports.summary import Summary, summary_build, vm_rows
from migrations_app.selectors.runs import evidence_run


@dataclass
class ChangeRecord:
    """Everything the change record page, its PDF and its JSON show."""

    plan: MigrationPlan
    items: list
    evidence_run: ValidationRun | None
    check_results: list
    approvals: list
    runs: list = field(default_factory=list)
    events: list = field(default_factory=list)
    chain_head: dict | None = None
    generated_at: object = None
    rows: list = field(default_factory=list)  # summary.VmRow per item
    summary: Summary | None = None


def plan_audit_query(plan: MigrationPlan, runs: list[PlanRun]) -> Q:
    query = Q(object_type="migrations_app.migrationplan", object_id=str(plan.pk))
    share_links = [str(pk) for pk in plan.share_links.values_list("pk", flat=True)]
    related = {
        "migrations_app.planitem": [str(pk) for pk in plan.items.values_list("pk", flat=True)],
        "migrations_app.approval": [str(pk) for pk in plan.approvals.values_list("pk", flat=True)],
        "migrations_app.planrun": [str(run.pk) for run in runs],
        # Status link events were recorded as dashboard.sharelink before the model moved.
        "dashboard.sharelink": share_links,
        "migrations_app.sharelink": share_links,
    }
    attempt_ids = [str(a.pk) for run in runs for a in run.attempts.all()]
    related["migrations_app.itemattempt"] = attempt_ids
    for object_type, ids in related.items():
        if ids:
            query |= Q(object_type=object_type, object_id__in=ids)
    return query


def plan_items_and_runs(plan: MigrationPlan) -> tuple[list, list]:
    """The plan's items (with VM and hosts) and its runs (with their attempts), in order."""
    runs = list(
        PlanRun.objects.filter(plan=plan)
        .order_by("started_at", "id")
        .prefetch_related(
            "attempts__item__vm", "attempts__source_host", "attempts__destination_host"
        )
    )
    items = list(
        plan.items.select_related("vm", "source_host", "destination_host").order_by(
            "position", "id"
        )
    )
    return items, runs


def change_record_build(plan: MigrationPlan, *, user=None) -> ChangeRecord:
    """Collect the change record of a plan (read-only). With `user`, the audit events are
    those that user may read (status-link events stay with auditors, L8)."""
    evidence = evidence_run(plan)
    items, runs = plan_items_and_runs(plan)
    head = AuditEvent.objects.order_by("-sequence").values("sequence", "hash").first()
    record = ChangeRecord(
        plan=plan,
        items=items,
        evidence_run=evidence,
        check_results=list(evidence.results.order_by("id")) if evidence else [],
        approvals=list(Approval.objects.filter(plan=plan).order_by("created_at", "id")),
        runs=runs,
        events=list(
            (audit_events_visible(user) if user is not None else AuditEvent.objects.all())
            .filter(plan_audit_query(plan, runs))
            .order_by("sequence")
        ),
        chain_head=head,
        generated_at=timezone.now(),
    )
    record.rows = vm_rows(record)
    record.summary = summary_build(record, record.rows)
    return record


def _iso(value):
    return value.isoformat() if value else None


def change_record_json(record: ChangeRecord) -> dict:
    """The change record as JSON values (the API's answer)."""
    plan = record.plan
    evidence = record.evidence_run
    return {
        "generated_at": _iso(record.generated_at),
        "summary": record.summary.as_dict() if record.summary else None,
        "vms": [row.as_dict() for row in record.rows],
        "plan": {
            "id": plan.pk,
            "name": plan.name,
            "description": plan.description,
            "change_ticket": plan.change_ticket,
            "status": plan.status,
            "status_reason": plan.status_reason,
            "author": plan.author_name,
            "version": plan.version,
            "content_hash": plan.content_hash,
            "window_start": _iso(plan.window_start),
            "window_end": _iso(plan.window_end),
            "submitted_at": _iso(plan.submitted_at),
            "policy": plan.policy,
        },
        "items": [
            {
                "id": item.pk,
                "vm": item.vm.name,
                "source": item.source_host.name,
                "destination": item.destination_host.name if item.destination_host else None,
                "mode": item.mode,
                "status": item.status,
                "status_reason": item.status_reason,
            }
            for item in record.items
        ],
        "validation": {
            "id": evidence.pk,
            "created_at": _iso(evidence.created_at),
            "plan_version": evidence.plan_version,
            "content_hash": evidence.content_hash,
            "matches_approved_hash": evidence.content_hash == plan.content_hash,
            "blockers": evidence.blockers,
            "warnings": evidence.warnings,
            "infos": evidence.infos,
            "estimate": evidence.estimate,
            "results": [
                {
                    "check": result.check_id,
                    "severity": result.severity,
                    "vm": result.vm_name,
                    "message": result.message,
                    "remedy": result.remedy,
                    "evidence": result.evidence,
                }
                for result in record.check_results
            ],
        }
        if evidence
        else None,
        "approvals": [
            {
                "decision": approval.decision,
                "approver": approval.approver_name,
                "comment": approval.comment,
                "content_hash": approval.content_hash,
                "created_at": _iso(approval.created_at),
                "expires_at": _iso(approval.expires_at),
                "voided_at": _iso(approval.voided_at),
                "void_reason": approval.void_reason,
            }
            for approval in record.approvals
        ],
        "runs": [
            {
                "id": run.pk,
                "status": run.status,
                "started_by": run.started_by_name,
                "override_reason": run.override_reason,
                "started_at": _iso(run.started_at),
                "finished_at": _iso(run.finished_at),
                "attempts": [
                    {
                        "item": attempt.item_id,
                        "vm": attempt.item.vm.name,
                        "number": attempt.number,
                        "driver": attempt.driver,
                        "phase": attempt.phase,
                        "status": attempt.status,
                        "started_at": _iso(attempt.started_at),
                        "finished_at": _iso(attempt.finished_at),
                        "total_time_ms": attempt.total_time_ms,
                        "downtime_ms": attempt.downtime_ms,
                        "phase_times": attempt.phase_times,
                        "error": attempt.error_message,
                    }
                    for attempt in run.attempts.all()
                ],
            }
            for run in record.runs
        ],
        "audit_events": [
            {
                "sequence": event.sequence,
                "at": _iso(event.created_at),
                "actor": event.actor_name,
                "actor_type": event.actor_type,
                "action": event.action,
                "object": f"{event.object_type}:{event.object_id}",
                "reason": event.reason,
                "before": event.before,
                "after": event.after,
                "prev_hash": event.prev_hash,
                "hash": event.hash,
            }
            for event in record.events
        ],
        "chain_head": record.chain_head,
    }


def audit_events_of_plan(user, plan) -> QuerySet[AuditEvent]:
    """A plan's timeline: its own events and its items', approvals', runs' and links'."""
    runs = list(PlanRun.objects.filter(plan=plan).prefetch_related("attempts"))
    return audit_events_visible(user).filter(plan_audit_query(plan, runs)).order_by("sequence")
