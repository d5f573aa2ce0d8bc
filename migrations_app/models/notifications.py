"""Notification subscriptions (webhook or email; per plan, per campaign or global) and their
deliveries."""

from django.conf import settings
from django.db import models

NOTIFY_EVENTS = (
    "submitted",
    "approved",
    "rejected",
    "started",
    "finished",
    "failed",
    "cancelled",
    # an item needs an operator: a move Ferry could not finish safely by itself
    "attention",
    # campaigns (besides submitted, approved, rejected, started, finished, failed, cancelled)
    "paused",
    "host_maintenance",
    "gate_paused",
    "host_action_done",
    "host_action_failed",
    "failback_done",
)
# What a campaign sends ("finished" is its completion, as for plans).
CAMPAIGN_NOTIFY_EVENTS = (
    "submitted",
    "approved",
    "rejected",
    "started",
    "paused",
    "host_maintenance",
    "gate_paused",
    "host_action_done",
    "host_action_failed",
    "failback_done",
    "finished",
    "failed",
    "cancelled",
)


class NotificationSubscription(models.Model):
    """Who hears about which plan events: one webhook URL or one email address."""

    class Kind(models.TextChoices):
        WEBHOOK = "webhook", "webhook"
        EMAIL = "email", "email"

    kind = models.CharField(max_length=8, choices=Kind.choices)
    target = models.CharField(max_length=500, help_text="webhook URL or email address")
    # Per-subscription HMAC key: kept in clear because every delivery must be signed with it.
    secret = models.CharField(max_length=100, blank=True)
    plan = models.ForeignKey(
        "migrations_app.MigrationPlan",
        related_name="subscriptions",
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        help_text="empty (and no campaign): every plan and campaign",
    )
    campaign = models.ForeignKey(
        "migrations_app.Campaign",
        related_name="subscriptions",
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        help_text="this campaign's events only",
    )
    events = models.JSONField(default=list, blank=True, help_text="empty: every event")
    active = models.BooleanField(default=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, related_name="+", on_delete=models.SET_NULL, null=True
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "dashboard_notificationsubscription"  # moved from the dashboard app, table kept
        ordering = ["id"]

    def __str__(self):
        if self.campaign_id:
            scope = f"campaign {self.campaign_id}"
        else:
            scope = f"plan {self.plan_id}" if self.plan_id else "all plans and campaigns"
        return f"{self.kind} {self.target} ({scope})"

    def wants(self, event: str) -> bool:
        """Whether this subscription asked for the event."""
        return not self.events or event in self.events


class NotificationDelivery(models.Model):
    """One notification to one subscriber; retried with backoff until delivered or given up."""

    class Status(models.TextChoices):
        PENDING = "pending", "pending"
        DELIVERED = "delivered", "delivered"
        FAILED = "failed", "failed (gave up)"

    subscription = models.ForeignKey(
        NotificationSubscription, related_name="deliveries", on_delete=models.CASCADE
    )
    event = models.CharField(max_length=20)
    plan_id = models.BigIntegerField(null=True, blank=True)
    campaign_id = models.BigIntegerField(null=True, blank=True)
    # The exact bytes sent, so every retry carries the same body and signature.
    body = models.TextField()
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)

    class Meta:
        db_table = "dashboard_notificationdelivery"  # moved from the dashboard app, table kept
        ordering = ["-id"]

    def __str__(self):
        return f"{self.event} → {self.subscription_id} ({self.status})"


class DeliveryAttempt(models.Model):
    """One try of a delivery: what the receiver answered, or why it could not be reached."""

    delivery = models.ForeignKey(
        NotificationDelivery, related_name="attempt_log", on_delete=models.CASCADE
    )
    number = models.PositiveIntegerField()
    at = models.DateTimeField(auto_now_add=True)
    ok = models.BooleanField(default=False)
    status_code = models.PositiveIntegerField(null=True, blank=True)
    # `error` is classified ("connection refused", "timed out", "HTTP 500 ..."), for everyone
    # who may see the delivery; `error_detail` is the raw network error, for admins only.
    error = models.TextField(blank=True)
    error_detail = models.TextField(blank=True)
    duration_ms = models.PositiveIntegerField(default=0)

    class Meta:
        db_table = "dashboard_deliveryattempt"  # moved from the dashboard app, table kept
        ordering = ["delivery_id", "number"]

    def __str__(self):
        return f"attempt {self.number} of delivery {self.delivery_id}"
