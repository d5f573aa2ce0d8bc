"""Validation runs and the check results they stored as evidence."""

from django.conf import settings
from django.db import models


class ValidationRun(models.Model):
    """One run of every check over a plan, kept so approvers see exactly what was checked."""

    plan = models.ForeignKey(
        "migrations_app.MigrationPlan", related_name="validation_runs", on_delete=models.CASCADE
    )
    created_at = models.DateTimeField(auto_now_add=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True
    )
    plan_version = models.PositiveIntegerField()
    content_hash = models.CharField(max_length=64)
    blockers = models.PositiveIntegerField(default=0)
    warnings = models.PositiveIntegerField(default=0)
    infos = models.PositiveIntegerField(default=0)
    estimate = models.JSONField(default=dict, blank=True)
    live = models.BooleanField(
        default=False, help_text="checks ran against live libvirt (preflight)"
    )

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self):
        return f"validation of plan {self.plan_id} v{self.plan_version}"

    @property
    def passed(self) -> bool:
        return self.blockers == 0


class ItemCheckResults(models.Model):
    """Every check's verdict on one item in one validation run, stored as one row.

    A run writes one row per item, not one per verdict: 10,000 items x 22 checks were
    220,000 rows (65 MB, five indexes, 440,000 foreign-key checks at commit on PostgreSQL),
    which took longer to store than the checks took to run. CheckResult reads them back
    one verdict per row through a database view, so every query of pages, API and reports
    stays as it was.
    """

    run = models.ForeignKey(ValidationRun, related_name="item_results", on_delete=models.CASCADE)
    item = models.ForeignKey(
        "migrations_app.PlanItem",
        related_name="check_result_sets",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
    )
    vm_name = models.CharField(max_length=200, blank=True)
    # [[check_id, severity, message, remedy, evidence], ...] in the order the checks ran;
    # at most RESULTS_PER_ROW of them (the view numbers a verdict row id * that + index).
    results = models.JSONField(default=list, blank=True)

    RESULTS_PER_ROW = 1000

    class Meta:
        ordering = ["id"]

    def __str__(self):
        return f"{len(self.results)} results of {self.vm_name or 'the plan'} in run {self.run_id}"


class CheckResult(models.Model):
    """The verdict of one check on one item (or on the plan as a whole).

    Read-only: a database view over ItemCheckResults (migration 0013) with one row per
    verdict; its id is the stored row's id * RESULTS_PER_ROW + the verdict's index, so
    ordering by id is the order the results were stored in. Deleting a run or an item acts
    on ItemCheckResults, which the view follows.
    """

    class Severity(models.TextChoices):
        BLOCKER = "blocker", "blocker"
        WARNING = "warning", "warning"
        INFO = "info", "info"
        OK = "ok", "ok"

    run = models.ForeignKey(
        ValidationRun, related_name="results", on_delete=models.DO_NOTHING, db_constraint=False
    )
    item = models.ForeignKey(
        "migrations_app.PlanItem",
        related_name="check_results",
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        null=True,
        blank=True,
    )
    vm_name = models.CharField(max_length=200, blank=True)
    check_id = models.CharField(max_length=40)
    severity = models.CharField(max_length=8, choices=Severity.choices)
    message = models.TextField()
    remedy = models.TextField(blank=True)
    evidence = models.JSONField(default=dict, blank=True)

    class Meta:
        managed = False
        db_table = "migrations_app_checkresult"
        ordering = ["id"]

    def __str__(self):
        return f"{self.check_id} {self.severity} {self.vm_name}"
