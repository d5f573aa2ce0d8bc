"""Status links: read-only, tokenized views of one plan or one campaign for stakeholders
without a login."""

from django.conf import settings
from django.db import models
from django.utils import timezone


class ShareLink(models.Model):
    """A revocable link to a plan's or a campaign's status page; only the token's SHA-256 is
    stored. Exactly one of `plan` and `campaign` is set (one design for both: the same
    tokens, expiry, revocation and public page)."""

    token_hash = models.CharField(max_length=64, unique=True)
    # The first characters of the token, so people can tell their links apart in lists.
    token_prefix = models.CharField(max_length=8)
    plan = models.ForeignKey(
        "migrations_app.MigrationPlan",
        related_name="share_links",
        on_delete=models.CASCADE,
        null=True,
        blank=True,
    )
    campaign = models.ForeignKey(
        "migrations_app.Campaign",
        related_name="share_links",
        on_delete=models.CASCADE,
        null=True,
        blank=True,
    )
    label = models.CharField(max_length=200, blank=True)
    show_host_names = models.BooleanField(default=False)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, related_name="+", on_delete=models.SET_NULL, null=True
    )
    created_by_name = models.CharField(max_length=150)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    revoked_by_name = models.CharField(max_length=150, blank=True)

    class Meta:
        # Moved from the dashboard app; the table keeps its name (no data was copied).
        db_table = "dashboard_sharelink"
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(plan__isnull=False, campaign__isnull=True)
                | models.Q(plan__isnull=True, campaign__isnull=False),
                name="sharelink_plan_xor_campaign",
            )
        ]

    def __str__(self):
        if self.campaign_id:
            return f"status link {self.token_prefix}… for campaign {self.campaign_id}"
        return f"status link {self.token_prefix}… for plan {self.plan_id}"

    def state(self, now=None) -> str:
        """'active', 'revoked' or 'expired'."""
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= (now or timezone.now()):
            return "expired"
        return "active"
