"""Login throttling per account (never per address: X-Forwarded-For is client-controlled)."""

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
