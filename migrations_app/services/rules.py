"""Placement rule services: add, change and remove affinity and anti-affinity rules by
tag. Each is one transaction with its audit event; a rule applies to plans validated or
placed after it changed (a running item's preflight checks it again)."""

from django.contrib.auth import get_user_model
from django.db import IntegrityError, transaction

from dashboard.audit.record import audit_record
from migrations_app.errors import PlanError
from migrations_app.models import PlacementRule

UNSET = object()
TAG_LIMIT = 100


def _state(rule: PlacementRule) -> dict:
    return {
        "name": rule.name,
        "kind": rule.kind,
        "tag": rule.tag,
        "enabled": rule.enabled,
        "description": rule.description,
    }


def _clean(name: str, kind: str, tag: str) -> tuple[str, str, str]:
    name, tag = (name or "").strip(), (tag or "").strip()
    if not name:
        raise PlanError("A rule needs a name.")
    if len(name) > 100:
        raise PlanError("A rule's name has at most 100 characters.")
    if kind not in PlacementRule.Kind.values:
        raise PlanError(
            f"kind must be one of {', '.join(PlacementRule.Kind.values)}, not {kind!r}."
        )
    if not tag or len(tag) > TAG_LIMIT or tag.startswith("anti:"):
        raise PlanError(
            "The tag must be 1–100 characters and must not start with 'anti:' (those tags "
            "are anti-affinity groups already)."
        )
    return name, kind, tag


def _save(rule: PlacementRule) -> None:
    try:
        with transaction.atomic():
            rule.save()
    except IntegrityError:
        raise PlanError(
            f"A rule named '{rule.name}' or a {rule.kind} rule on tag '{rule.tag}' exists already."
        ) from None


def rule_create(*, actor, name: str, kind: str, tag: str, description: str = "") -> PlacementRule:
    """Add an enabled rule."""
    name, kind, tag = _clean(name, kind, tag)
    user = actor if isinstance(actor, get_user_model()) else None
    with transaction.atomic():
        rule = PlacementRule(
            name=name,
            kind=kind,
            tag=tag,
            description=description or "",
            created_by_name=user.get_username() if user else getattr(actor, "name", "system"),
        )
        _save(rule)
        audit_record(actor=actor, action="rule.created", obj=rule, after=_state(rule))
    return rule


def rule_update(
    *, rule: PlacementRule, actor, name=UNSET, enabled=UNSET, description=UNSET
) -> PlacementRule:
    """Rename, enable or disable a rule, or change its description (kind and tag stay:
    a different rule is a new rule)."""
    with transaction.atomic():
        locked = PlacementRule.objects.select_for_update(no_key=True).get(pk=rule.pk)
        before = _state(locked)
        if name is not UNSET:
            locked.name, _kind, _tag = _clean(name, locked.kind, locked.tag)
        if enabled is not UNSET:
            locked.enabled = bool(enabled)
        if description is not UNSET:
            locked.description = description or ""
        after = _state(locked)
        if after != before:
            _save(locked)
            audit_record(actor=actor, action="rule.updated", obj=locked, before=before, after=after)
    return locked


def rule_delete(*, rule: PlacementRule, actor) -> None:
    """Remove a rule (its history stays in the audit trail)."""
    with transaction.atomic():
        locked = PlacementRule.objects.select_for_update(no_key=True).get(pk=rule.pk)
        audit_record(actor=actor, action="rule.deleted", obj=locked, before=_state(locked))
        locked.delete()
