"""What "balance group G" found when it built a plan's moves."""

from django.db import models


class BalanceRun(models.Model):
    """One run of the balance planner for a plan: its inputs, and the planner's answer
    (spread before and after, moves with their reasons, and why the target was not reached
    when it was not), kept so the plan page and its reviewers see why these moves."""

    plan = models.ForeignKey(
        "migrations_app.MigrationPlan", related_name="balance_runs", on_delete=models.CASCADE
    )
    group = models.CharField(max_length=100)
    target_pct = models.FloatField()
    max_moves = models.PositiveIntegerField(null=True, blank=True)
    max_moved_mib = models.BigIntegerField(null=True, blank=True)
    reached = models.BooleanField(default=False)
    moves = models.PositiveIntegerField(default=0)
    memory_moved_mib = models.BigIntegerField(default=0)
    load_window_minutes = models.PositiveIntegerField(default=0)
    result = models.JSONField(default=dict, blank=True)
    created_by_name = models.CharField(max_length=150, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self):
        return f"balance of {self.group} for plan {self.plan_id}"
