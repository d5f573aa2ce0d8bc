"""Reads of a plan's runs and of the validation its approvers judged."""

from migrations_app.models import MigrationPlan, PlanRun, ValidationRun


def latest_run(plan: MigrationPlan) -> PlanRun | None:
    """The plan's most recent run (None before it first started)."""
    return PlanRun.objects.filter(plan=plan).order_by("-started_at", "-id").first()


def evidence_run(plan: MigrationPlan) -> ValidationRun | None:
    """The validation whose content the approvers judged (matched by the frozen hash; the
    latest validation when none matches, e.g. before the plan was submitted)."""
    runs = ValidationRun.objects.filter(plan=plan, live=False).order_by("-created_at", "-id")
    if plan.content_hash:
        matching = runs.filter(content_hash=plan.content_hash).first()
        if matching is not None:
            return matching
    return runs.first()
