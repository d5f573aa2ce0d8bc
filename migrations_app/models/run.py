"""Execution records: a run of a plan, attempts per item, progress samples and the
numbered event stream that live pages replay from."""

from django.conf import settings
from django.db import models


class PlanRun(models.Model):
    """One execution of an approved plan."""

    class Status(models.TextChoices):
        RUNNING = "running", "running"
        PAUSED = "paused", "paused"
        COMPLETED = "completed", "completed"
        FAILED = "failed", "failed"
        PARTIALLY_COMPLETED = "partially_completed", "partially completed"
        CANCELLED = "cancelled", "cancelled"

    plan = models.ForeignKey(
        "migrations_app.MigrationPlan", related_name="runs", on_delete=models.CASCADE
    )
    status = models.CharField(max_length=24, choices=Status.choices, default=Status.RUNNING)
    status_reason = models.TextField(blank=True)
    started_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True
    )
    started_by_name = models.CharField(max_length=150, blank=True)
    override_reason = models.TextField(blank=True, help_text="why it started outside its window")
    started_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # Last sequence number handed out to this run's events (see migrations_app.live.events).
    event_seq = models.BigIntegerField(default=0)

    class Meta:
        ordering = ["-started_at", "-id"]

    def __str__(self):
        return f"run {self.pk} of {self.plan_id}"


class ItemAttempt(models.Model):
    """One attempt to carry out a plan item, phase by phase."""

    class Phase(models.TextChoices):
        QUEUED = "queued", "queued"
        PREFLIGHT = "preflight", "preflight"
        PREPARE = "prepare", "prepare"
        TRANSFER = "transfer", "transfer"
        CONVERGE = "converge", "converge"
        SWITCHOVER = "switchover", "switchover"
        VERIFY = "verify", "verify"
        CLEANUP = "cleanup", "cleanup"
        DONE = "done", "done"

    class Status(models.TextChoices):
        QUEUED = "queued", "queued"
        RUNNING = "running", "running"
        COMPLETED = "completed", "completed"
        FAILED = "failed", "failed"
        CANCELLED = "cancelled", "cancelled"
        NEEDS_ATTENTION = "needs_attention", "needs an operator"

    class Driver(models.TextChoices):
        LIBVIRT = "libvirt", "libvirt"
        REHEARSAL = "rehearsal", "rehearsal (simulated)"

    class Kind(models.TextChoices):
        MOVE = "move", "move"
        RETRY = "retry", "retry after a transient failure"
        ROLLBACK = "rollback", "migrate back after failed validation"

    TERMINAL = frozenset({"completed", "failed", "cancelled", "needs_attention"})

    run = models.ForeignKey(PlanRun, related_name="attempts", on_delete=models.CASCADE)
    item = models.ForeignKey(
        "migrations_app.PlanItem", related_name="attempts", on_delete=models.CASCADE
    )
    number = models.PositiveIntegerField(default=1)
    kind = models.CharField(max_length=10, choices=Kind.choices, default=Kind.MOVE)
    driver = models.CharField(max_length=10, choices=Driver.choices, default=Driver.LIBVIRT)
    phase = models.CharField(max_length=12, choices=Phase.choices, default=Phase.QUEUED)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    source_host = models.ForeignKey("inventory.Host", related_name="+", on_delete=models.PROTECT)
    destination_host = models.ForeignKey(
        "inventory.Host", related_name="+", on_delete=models.PROTECT
    )
    # Claim and lease: a worker owns the attempt while its lease is fresh.
    claimed_by = models.CharField(max_length=100, blank=True)
    # When its task was last enqueued while the attempt waits to be claimed (creation, a
    # requeue, the tick's re-enqueue of a task that was lost: reconciler.orphans_requeue).
    queued_at = models.DateTimeField(null=True, blank=True)
    # Fencing token: every claim or take-over increments it, and a worker checks its epoch
    # (and a fresh lease) right before each action on a hypervisor.
    lease_epoch = models.PositiveIntegerField(default=0)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    # Set by a conditional update right before the one migrate call of this attempt.
    migrate_called_at = models.DateTimeField(null=True, blank=True)
    cancel_requested = models.BooleanField(default=False)
    # When post-copy began (Ferry asked for it, or libvirt reported it): from then on the
    # guest runs on the destination and the source must never be resumed.
    postcopy_at = models.DateTimeField(null=True, blank=True)
    # Force-complete: asked by an operator (or by the policy's timeout action), and when
    # Ferry paused the guest on the source for it (recorded before the pause, so a failure
    # after it resumes the source Ferry paused, and nothing else).
    force_complete_requested_at = models.DateTimeField(null=True, blank=True)
    force_complete_by = models.CharField(max_length=150, blank=True)
    ferry_paused_source_at = models.DateTimeField(null=True, blank=True)
    # An urgent plan that preempts this routine move (asked with cancel_requested): the
    # move is aborted in pre-copy and its item waits for a free slot again.
    preempted_by = models.ForeignKey(
        "migrations_app.MigrationPlan",
        related_name="+",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
    )
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    phase_times = models.JSONField(default=dict, blank=True)
    estimate = models.JSONField(default=dict, blank=True)
    error_class = models.CharField(max_length=40, blank=True)
    error_message = models.TextField(blank=True)
    libvirt_error = models.TextField(blank=True)
    total_time_ms = models.BigIntegerField(null=True, blank=True)
    downtime_ms = models.BigIntegerField(null=True, blank=True)
    iterations = models.PositiveIntegerField(null=True, blank=True)
    bytes_transferred = models.BigIntegerField(null=True, blank=True)
    final_stats = models.JSONField(default=dict, blank=True)
    evidence = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["status", "lease_expires_at"])]

    def __str__(self):
        return f"attempt {self.number} of item {self.item_id}"


class ProgressSample(models.Model):
    """One sample of libvirt job statistics (or of the rehearsal simulation)."""

    attempt = models.ForeignKey(ItemAttempt, related_name="samples", on_delete=models.CASCADE)
    at = models.DateTimeField()
    elapsed_ms = models.BigIntegerField()
    phase = models.CharField(max_length=12)
    memory_total = models.BigIntegerField(null=True, blank=True)
    memory_processed = models.BigIntegerField(null=True, blank=True)
    memory_remaining = models.BigIntegerField(null=True, blank=True)
    dirty_rate_bps = models.BigIntegerField(null=True, blank=True)
    transfer_bps = models.BigIntegerField(null=True, blank=True)
    iteration = models.PositiveIntegerField(null=True, blank=True)
    disk_total = models.BigIntegerField(null=True, blank=True)
    disk_processed = models.BigIntegerField(null=True, blank=True)
    disk_remaining = models.BigIntegerField(null=True, blank=True)
    expected_downtime_ms = models.BigIntegerField(null=True, blank=True)
    throttle_pct = models.PositiveIntegerField(null=True, blank=True)

    class Meta:
        ordering = ["attempt_id", "at", "id"]

    def __str__(self):
        return f"sample {self.attempt_id}@{self.elapsed_ms}ms"


class RunEvent(models.Model):
    """A numbered event of a run, published live and kept so clients can fill gaps."""

    run = models.ForeignKey(PlanRun, related_name="events", on_delete=models.CASCADE)
    seq = models.BigIntegerField()
    created_at = models.DateTimeField(auto_now_add=True)
    kind = models.CharField(max_length=32)
    item = models.ForeignKey(
        "migrations_app.PlanItem",
        related_name="+",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
    )
    payload = models.JSONField(default=dict)

    class Meta:
        ordering = ["run_id", "seq"]
        constraints = [models.UniqueConstraint(fields=["run", "seq"], name="one_event_per_seq")]

    def __str__(self):
        return f"{self.run_id}#{self.seq} {self.kind}"
