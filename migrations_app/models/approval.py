"""Approvals and rejections, bound to the content hash of the plan they judged."""

from django.conf import settings
from django.db import models


class Approval(models.Model):
    """An approver's decision on one frozen version of a plan."""

    class Decision(models.TextChoices):
        APPROVED = "approved", "approved"
        REJECTED = "rejected", "rejected"

    plan = models.ForeignKey(
        "migrations_app.MigrationPlan", related_name="approvals", on_delete=models.CASCADE
    )
    approver = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True)
    approver_name = models.CharField(max_length=150)
    decision = models.CharField(max_length=10, choices=Decision.choices)
    comment = models.TextField(blank=True)
    content_hash = models.CharField(max_length=64)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    voided_at = models.DateTimeField(null=True, blank=True)
    void_reason = models.CharField(max_length=200, blank=True)
    # The sequence number of the audit event that recorded this approval: plan_start counts
    # an approval only when that event exists and says the same (approver, plan, hash), so
    # a row written into the table by hand does not start a plan.
    audit_sequence = models.BigIntegerField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self):
        return f"{self.decision} by {self.approver_name}"
