"""Plans and their items."""

from django.conf import settings
from django.db import models

from migrations_app.policy import Policy


class MigrationPlan(models.Model):
    """A set of VM moves with a policy, a change ticket and a maintenance window."""

    class Status(models.TextChoices):
        DRAFT = "draft", "draft"
        SUBMITTED = "submitted", "submitted"
        APPROVED = "approved", "approved"
        REJECTED = "rejected", "rejected"
        SCHEDULED = "scheduled", "scheduled"
        RUNNING = "running", "running"
        PAUSED = "paused", "paused"
        COMPLETED = "completed", "completed"
        FAILED = "failed", "failed"
        PARTIALLY_COMPLETED = "partially_completed", "partially completed"
        CANCELLED = "cancelled", "cancelled"

    TERMINAL = frozenset({"completed", "failed", "partially_completed", "cancelled"})
    # States in which the plan's content may change (anything else is frozen or history).
    EDITABLE = frozenset({"draft", "submitted", "approved", "rejected", "scheduled"})

    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    change_ticket = models.CharField(max_length=100, blank=True)
    window_start = models.DateTimeField(null=True, blank=True)
    window_end = models.DateTimeField(null=True, blank=True)
    policy = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=24, choices=Status.choices, default=Status.DRAFT)
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL, related_name="plans", on_delete=models.SET_NULL, null=True
    )
    author_name = models.CharField(max_length=150, blank=True)
    content_hash = models.CharField(max_length=64, blank=True, help_text="frozen at submit")
    version = models.PositiveIntegerField(default=1, help_text="bumped by every edit")
    hold = models.BooleanField(default=False, help_text="operator hold: do not auto-start")
    status_reason = models.TextField(blank=True)
    submitted_at = models.DateTimeField(null=True, blank=True)
    submitted_by_name = models.CharField(max_length=150, blank=True)
    # Everyone who shaped the plan: created, edited or submitted it ([{id, name, as: [...]}]).
    # Four eyes: none of them may approve it, and their approvals never count.
    contributors = models.JSONField(default=list, blank=True)
    # An admin's recorded decision that this plan may move VMs to hosts reached without TLS
    # (security.transport is a blocker otherwise); part of the approved content.
    transport_override_reason = models.TextField(blank=True)
    transport_override_by = models.CharField(max_length=150, blank=True)
    transport_override_at = models.DateTimeField(null=True, blank=True)
    # "Re-run failed items": the plan whose failed items this one carries again. The
    # origin's approvals count for this plan while its content stays within what they
    # approved (content.plan_content_within); any edit needs approvals of its own.
    rerun_of = models.ForeignKey(
        "self", related_name="reruns", null=True, blank=True, on_delete=models.SET_NULL
    )
    # A plan a campaign generated (a host's evacuation, or the failback): the campaign's
    # approval covers it, so it starts without an approval of its own.
    campaign = models.ForeignKey(
        "migrations_app.Campaign",
        related_name="plans",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
    )
    campaign_role = models.CharField(max_length=16, blank=True, help_text="evacuation or failback")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self):
        return self.name

    def get_policy(self) -> Policy:
        """The plan's validated policy."""
        return Policy.from_dict(self.policy)

    @property
    def is_terminal(self) -> bool:
        return self.status in self.TERMINAL


class PlanItem(models.Model):
    """One VM of a plan: where it goes and how."""

    class Mode(models.TextChoices):
        LIVE = "live", "live (shared storage)"
        LIVE_COPY = "live_copy", "live with storage copy"
        STORAGE_ONLY = "storage_only", "storage only (disks move, VM stays)"

    class Status(models.TextChoices):
        PENDING = "pending", "pending"
        QUEUED = "queued", "queued"
        RUNNING = "running", "running"
        COMPLETED = "completed", "completed"
        FAILED = "failed", "failed"
        CANCELLED = "cancelled", "cancelled"
        NEEDS_ATTENTION = "needs_attention", "needs an operator"
        # Validation after switchover failed and Ferry migrated the VM back to its source.
        ROLLED_BACK = "rolled_back", "rolled back"

    plan = models.ForeignKey(MigrationPlan, related_name="items", on_delete=models.CASCADE)
    vm = models.ForeignKey(
        "inventory.VirtualMachine", related_name="plan_items", on_delete=models.PROTECT
    )
    source_host = models.ForeignKey(
        "inventory.Host", related_name="outbound_items", on_delete=models.PROTECT
    )
    destination_host = models.ForeignKey(
        "inventory.Host",
        related_name="inbound_items",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
    )
    destination_chosen_by = models.CharField(
        max_length=16, blank=True, help_text="'planner' or 'placement'"
    )
    mode = models.CharField(max_length=16, choices=Mode.choices, default=Mode.LIVE)
    # {source pool id (str): destination pool id}, for copied disks and storage-only moves
    storage_map = models.JSONField(default=dict, blank=True)
    # {source network name: destination network name}, where names differ
    network_map = models.JSONField(default=dict, blank=True)
    policy_overrides = models.JSONField(default=dict, blank=True)
    placement_note = models.JSONField(default=dict, blank=True)
    # While queued in a running plan: the budget that keeps it from starting (scheduler).
    held_by = models.CharField(max_length=300, blank=True)
    position = models.PositiveIntegerField(default=0)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.PENDING)
    status_reason = models.TextField(blank=True)
    # A retry the worker scheduled after a transient failure: {"after": ISO time, "number":
    # n, "destination": host id (another host placement chose) or None, "reason": text}.
    # The scheduler starts it (within the budgets) once `after` has passed.
    retry = models.JSONField(default=dict, blank=True)
    # Waves with dependencies: an item of wave N starts only when every item of the waves
    # before it completed (policy.wave_failure says what a failure does to later waves).
    # 0 = the first wave, like a plan without waves.
    wave = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["position", "id"]
        constraints = [
            models.UniqueConstraint(fields=["plan", "vm"], name="one_item_per_vm_per_plan")
        ]

    def __str__(self):
        return f"{self.plan.name}: {self.vm.name}"

    def get_policy(self) -> Policy:
        """The plan policy with this item's overrides."""
        return self.plan.get_policy().with_overrides(self.policy_overrides)
