"""Login throttling per account (never per address: X-Forwarded-For is client-controlled)."""

from django.conf import settings
from django.db import models


class LoginThrottle(models.Model):
    """Consecutive failed logins of one username and, past the limit, until when it is locked."""

    # Keyed by the username typed (case-folded), whether or not such an account exists, so
    # the lockout answer does not reveal which accounts exist.
    username = models.CharField(max_length=150, unique=True)
    failures = models.PositiveIntegerField(default=0)
    last_failure_at = models.DateTimeField(null=True, blank=True)
    locked_until = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["username"]

    def __str__(self):
        return f"{self.username}: {self.failures} failure(s)"


class RoleGrant(models.Model):
    """A role a user holds for one named host group only (dashboard.accounts.scopes).

    A Django group named after a role grants that role for every host; a RoleGrant grants
    it for the hosts whose `inventory.Host.group` equals `host_group`, and nowhere else.
    """

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="role_grants"
    )
    role = models.CharField(max_length=16)
    host_group = models.CharField(max_length=100)
    # Who manages the grant: "local" (an admin through the API or admin site) or the
    # identity provider ("oidc", "ldap"), whose grants are rewritten at every login.
    source = models.CharField(max_length=8, default="local")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["user_id", "role", "host_group"]
        constraints = [
            models.UniqueConstraint(fields=["user", "role", "host_group"], name="role_grant_unique")
        ]

    def __str__(self):
        return f"{self.user_id}: {self.role} in {self.host_group}"


class AccountIdentity(models.Model):
    """Where an account comes from and which person it belongs to (four eyes counts people).

    Two accounts are one person when they share an explicit `person` link, or the same
    e-mail address that is verified (by the identity provider, or entered by an admin for a
    local account).
    """

    class Source(models.TextChoices):
        LOCAL = "local", "local account"
        OIDC = "oidc", "OpenID Connect"
        LDAP = "ldap", "LDAP"

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="identity"
    )
    source = models.CharField(max_length=8, choices=Source.choices, default=Source.LOCAL)
    subject = models.CharField(max_length=255, blank=True, help_text="the IdP's subject (sub/DN)")
    email_verified = models.BooleanField(default=False)
    person = models.CharField(
        max_length=150,
        blank=True,
        help_text="an explicit link: accounts with the same value are one person",
    )
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self):
        return f"{self.user_id} ({self.source})"
