"""The append-only, hash-chained audit trail (see dashboard.audit.record)."""

from django.db import models


class AuditEvent(models.Model):
    """One recorded change, chained to the previous one by SHA-256 (see dashboard.audit.record)."""

    class ActorType(models.TextChoices):
        USER = "user", "user"
        WORKER = "worker", "worker"
        SYSTEM = "system", "system"
        SHARE_LINK = "share_link", "share link"

    sequence = models.BigIntegerField(unique=True)
    created_at = models.DateTimeField(db_index=True)
    actor_type = models.CharField(max_length=16, choices=ActorType.choices)
    # A plain integer, not a foreign key: deleting a user must neither cascade into nor
    # block the audit trail, and the name snapshot keeps the record readable.
    actor_user_id = models.BigIntegerField(null=True, blank=True, db_index=True)
    actor_name = models.CharField(max_length=150)
    action = models.CharField(max_length=64, db_index=True)
    object_type = models.CharField(max_length=64, db_index=True)
    object_id = models.CharField(max_length=64, blank=True, db_index=True)
    object_repr = models.CharField(max_length=300, blank=True)
    before = models.JSONField(null=True, blank=True)
    after = models.JSONField(null=True, blank=True)
    reason = models.TextField(blank=True)
    request_id = models.CharField(max_length=64, blank=True)
    source_address = models.CharField(max_length=64, blank=True)
    user_agent = models.CharField(max_length=300, blank=True)
    prev_hash = models.CharField(max_length=64)
    hash = models.CharField(max_length=64, unique=True)

    class Meta:
        ordering = ["-sequence"]
        indexes = [models.Index(fields=["object_type", "object_id", "sequence"])]

    def __str__(self):
        return f"#{self.sequence} {self.actor_name} {self.action} {self.object_repr}"


class AuditOutbox(models.Model):
    """An audit event waiting to be forwarded to syslog, written in the event's own
    transaction and deleted once the receiver has it (see dashboard.audit.forward)."""

    sequence = models.BigIntegerField(unique=True)
    # The RFC 5424 message, built when the event was recorded (the actor's roles then).
    message = models.TextField()
    created_at = models.DateTimeField()
    attempts = models.IntegerField(default=0)
    last_error = models.CharField(max_length=300, blank=True)

    class Meta:
        ordering = ["sequence"]

    def __str__(self):
        return f"outbox #{self.sequence}"
