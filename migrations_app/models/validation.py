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


class CheckResult(models.Model):
    """The verdict of one check on one item (or on the plan as a whole)."""

    class Severity(models.TextChoices):
        BLOCKER = "blocker", "blocker"
        WARNING = "warning", "warning"
        INFO = "info", "info"
        OK = "ok", "ok"

    run = models.ForeignKey(ValidationRun, related_name="results", on_delete=models.CASCADE)
    item = models.ForeignKey(
        "migrations_app.PlanItem",
        related_name="check_results",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
    )
    vm_name = models.CharField(max_length=200, blank=True)
    check_id = models.CharField(max_length=40, db_index=True)
    severity = models.CharField(max_length=8, choices=Severity.choices)
    message = models.TextField()
    remedy = models.TextField(blank=True)
    evidence = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["id"]

    def __str__(self):
        return f"{self.check_id} {self.severity} {self.vm_name}"
