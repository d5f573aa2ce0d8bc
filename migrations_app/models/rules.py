"""Placement rules: affinity and anti-affinity by VM tag, for every plan builder."""

from django.db import models


class PlacementRule(models.Model):
    """VMs carrying `tag` never share a host (anti-affinity) or run on one host (affinity);
    evacuation, move-to-group, balance and validation all honour the enabled ones."""

    class Kind(models.TextChoices):
        ANTI = "anti-affinity", "anti-affinity (never on one host)"
        TOGETHER = "affinity", "affinity (together on one host)"

    name = models.CharField(max_length=100, unique=True)
    kind = models.CharField(max_length=16, choices=Kind.choices)
    tag = models.CharField(max_length=100, help_text="the VM tag the rule binds")
    enabled = models.BooleanField(default=True)
    description = models.TextField(blank=True)
    created_by_name = models.CharField(max_length=150, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name", "id"]
        constraints = [
            models.UniqueConstraint(fields=["kind", "tag"], name="one_rule_per_kind_and_tag")
        ]

    def __str__(self):
        return f"{self.kind} rule '{self.name}' (tag {self.tag})"
