"""The validation service: run every check on every item and keep the evidence."""

from django.contrib.auth import get_user_model
from django.db import transaction

from dashboard.audit.record import audit_record
from migrations_app.checks import checks_run
from migrations_app.checks.base import BLOCKER, INFO, WARNING
from migrations_app.checks.snapshot import snapshot_load
from migrations_app.content import plan_content_hash
from migrations_app.estimate import plan_estimate
from migrations_app.models import MigrationPlan, ValidationRun
from migrations_app.services.bulk_rows import check_results_insert, collector_paused
from migrations_app.services.plan_edits import plan_lock


@collector_paused()
def plan_validate(*, plan: MigrationPlan, actor) -> ValidationRun:
    """Run all checks on all items, store a ValidationRun with its check results (one
    ItemCheckResults row per item, read back as CheckResults) and the estimate, audit it,
    and return the run (bound to the plan's version and content hash).
    """
    User = get_user_model()
    with transaction.atomic():
        # The lock makes the run describe exactly one version: an edit cannot slip in
        # between reading the items and hashing them.
        plan = plan_lock(plan)
        snapshot = snapshot_load(plan)
        estimate = plan_estimate(snapshot)
        results = checks_run(snapshot, estimate.by_item)
        rows = []
        counts = {BLOCKER: 0, WARNING: 0, INFO: 0}
        for item, findings in results:
            verdicts = []
            for f in findings:
                if f.severity in counts:
                    counts[f.severity] += 1
                verdicts.append((f.check_id, f.severity, f.message, f.remedy, f.evidence))
            rows.append((item.id, item.vm.name[:200], verdicts))
        run = ValidationRun.objects.create(
            plan=plan,
            created_by=actor if isinstance(actor, User) else None,
            plan_version=plan.version,
            content_hash=plan_content_hash(plan),
            blockers=counts[BLOCKER],
            warnings=counts[WARNING],
            infos=counts[INFO],
            estimate=estimate.as_dict(),
        )
        check_results_insert(run.pk, rows)
        audit_record(
            actor=actor,
            action="plan.validated",
            obj=plan,
            after={
                "run": run.pk,
                "version": plan.version,
                "content_hash": run.content_hash,
                "items": len(results),
                "blockers": run.blockers,
                "warnings": run.warnings,
                "infos": run.infos,
                "makespan_s": round(estimate.makespan_s, 1),
            },
        )
    return run
