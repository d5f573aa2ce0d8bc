"""Maintenance campaigns: an approved, ordered walk over hosts (enter maintenance, drain,
gate, host action, wait healthy, exit), their per-host steps, and blocking hooks."""

from django.conf import settings
from django.db import models


class Campaign(models.Model):
    """Rolling maintenance of a list of hosts, reviewed and approved like a plan."""

    class Status(models.TextChoices):
        DRAFT = "draft", "draft"
        SUBMITTED = "submitted", "submitted"
        APPROVED = "approved", "approved"
        REJECTED = "rejected", "rejected"
        RUNNING = "running", "running"
        PAUSED = "paused", "paused"
        COMPLETED = "completed", "completed"
        FAILED = "failed", "failed"
        CANCELLED = "cancelled", "cancelled"

    class Stage(models.TextChoices):
        HOSTS = "hosts", "hosts"
        FAILBACK = "failback", "failback"
        DONE = "done", "done"

    TERMINAL = frozenset({"completed", "failed", "cancelled"})
    EDITABLE = frozenset({"draft", "submitted", "approved", "rejected"})

    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    change_ticket = models.CharField(max_length=100, blank=True)
    window_start = models.DateTimeField(null=True, blank=True)
    window_end = models.DateTimeField(null=True, blank=True)
    # The policy every generated plan (evacuations, failback) gets (migrations_app.policy).
    policy = models.JSONField(default=dict, blank=True)
    # "every host of group G, N at a time": recorded for the reader; the steps are what runs.
    group = models.CharField(max_length=100, blank=True)
    batch_size = models.PositiveSmallIntegerField(default=1)
    failback = models.BooleanField(default=False, help_text="return VMs to their origin at the end")
    healthy_timeout_s = models.PositiveIntegerField(default=600)
    # An admin's recorded decision that the campaign's plans may move VMs without TLS (as a
    # plan's transport override; copied onto every plan the campaign generates).
    transport_override_reason = models.TextField(blank=True)
    transport_override_by = models.CharField(max_length=150, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.DRAFT)
    stage = models.CharField(max_length=16, choices=Stage.choices, default=Stage.HOSTS)
    status_reason = models.TextField(blank=True)
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL, related_name="campaigns", on_delete=models.SET_NULL, null=True
    )
    author_name = models.CharField(max_length=150, blank=True)
    content_hash = models.CharField(max_length=64, blank=True, help_text="frozen at submit")
    submitted_at = models.DateTimeField(null=True, blank=True)
    approved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, related_name="+", on_delete=models.SET_NULL, null=True
    )
    approved_by_name = models.CharField(max_length=150, blank=True)
    approved_hash = models.CharField(max_length=64, blank=True)
    approved_at = models.DateTimeField(null=True, blank=True)
    # The audit event that recorded the approval: generated plans start only when it exists
    # and names this campaign, approver and hash (as plan approvals are tied).
    approval_audit_sequence = models.BigIntegerField(null=True, blank=True)
    # Bumped by start/resume: a chain of advance tasks carries it and stops when it is old,
    # so pausing and resuming never leaves two chains driving one campaign.
    chain = models.PositiveIntegerField(default=0)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self):
        return self.name

    @property
    def is_terminal(self) -> bool:
        return self.status in self.TERMINAL


class CampaignStep(models.Model):
    """One host of a campaign and where its maintenance stands."""

    class Phase(models.TextChoices):
        PENDING = "pending", "pending"
        DRAINING = "draining", "draining"
        GATE = "gate", "gate"
        HOST_ACTION = "host_action", "host action"
        WAIT_HEALTHY = "wait_healthy", "waiting until healthy"
        DONE = "done", "done"

    campaign = models.ForeignKey(Campaign, related_name="steps", on_delete=models.CASCADE)
    host = models.ForeignKey("inventory.Host", related_name="+", on_delete=models.PROTECT)
    position = models.PositiveIntegerField(default=0)
    wave = models.PositiveIntegerField(default=0, help_text="hosts of one wave run together")
    phase = models.CharField(max_length=16, choices=Phase.choices, default=Phase.PENDING)
    # The evacuation plan generated for this host (null until drained, or when it was empty).
    plan = models.ForeignKey(
        "migrations_app.MigrationPlan",
        related_name="+",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
    )
    # {phase: {"start": iso, "end": iso}}: the step timeline pages and the change record show.
    timeline = models.JSONField(default=dict, blank=True)
    # {vm id: origin host id} of the VMs drained here (what failback returns).
    origins = models.JSONField(default=dict, blank=True)
    # Host facts before the action (versions, CPU), compared when it comes back.
    facts_before = models.JSONField(default=dict, blank=True)
    action_started_at = models.DateTimeField(null=True, blank=True)
    healthy_deadline = models.DateTimeField(null=True, blank=True)
    reason = models.TextField(blank=True)

    class Meta:
        ordering = ["position", "id"]
        constraints = [
            models.UniqueConstraint(fields=["campaign", "host"], name="one_step_per_host")
        ]

    def __str__(self):
        return f"{self.campaign.name}: {self.host.name}"


class Hook(models.Model):
    """A call that can block: an HTTP POST signed like the webhooks, or (admins only) a
    command from the allowlisted directory on the worker."""

    class Event(models.TextChoices):
        PRE_MIGRATION = "pre_migration", "before each VM moves"
        POST_MIGRATION = "post_migration", "after each VM moved"
        HOST_ACTION = "host_action", "the host action (patch, reboot)"
        POST_HOST = "post_host", "after a host left maintenance"

    class Kind(models.TextChoices):
        HTTP = "http", "HTTP"
        COMMAND = "command", "command"

    class OnFailure(models.TextChoices):
        CONTINUE = "continue", "go on with the rest"
        PAUSE = "pause", "pause"

    campaign = models.ForeignKey(
        Campaign, related_name="hooks", on_delete=models.CASCADE, null=True, blank=True
    )
    plan = models.ForeignKey(
        "migrations_app.MigrationPlan",
        related_name="hooks",
        on_delete=models.CASCADE,
        null=True,
        blank=True,
    )
    event = models.CharField(max_length=16, choices=Event.choices)
    kind = models.CharField(max_length=8, choices=Kind.choices)
    url = models.URLField(max_length=500, blank=True)
    secret = models.CharField(max_length=64, blank=True)
    command = models.CharField(max_length=200, blank=True, help_text="a file name in the hook dir")
    args = models.JSONField(default=list, blank=True)
    timeout_s = models.PositiveIntegerField(default=30)
    on_failure = models.CharField(
        max_length=8, choices=OnFailure.choices, default=OnFailure.CONTINUE
    )
    created_by_name = models.CharField(max_length=150, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["event", "id"]

    def __str__(self):
        return f"{self.event} {self.kind}"


class HookCall(models.Model):
    """One call of a hook: when, how long, what came back (raw detail for admins only)."""

    hook = models.ForeignKey(Hook, related_name="calls", on_delete=models.SET_NULL, null=True)
    event = models.CharField(max_length=16)
    campaign = models.ForeignKey(
        Campaign, related_name="hook_calls", on_delete=models.CASCADE, null=True, blank=True
    )
    plan = models.ForeignKey(
        "migrations_app.MigrationPlan",
        related_name="hook_calls",
        on_delete=models.CASCADE,
        null=True,
        blank=True,
    )
    item = models.ForeignKey(
        "migrations_app.PlanItem", related_name="+", on_delete=models.SET_NULL, null=True
    )
    host = models.ForeignKey(
        "inventory.Host", related_name="+", on_delete=models.SET_NULL, null=True
    )
    ok = models.BooleanField(default=False)
    code = models.IntegerField(null=True, blank=True, help_text="HTTP status or exit code")
    outcome = models.CharField(max_length=200, blank=True, help_text="classified, for everyone")
    detail = models.TextField(blank=True, help_text="raw answer or error, admins only")
    duration_ms = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "id"]

    def __str__(self):
        return f"{self.event}: {self.outcome}"
