"""Reads about approvals: which ones still count for a plan, and how many are needed."""

from django.conf import settings
from django.db.models import Q, QuerySet
from django.utils import timezone

from migrations_app.models import Approval, MigrationPlan


def approvals_required() -> int:
    """How many distinct approvers a plan needs (FERRY_APPROVALS_REQUIRED)."""
    return max(1, int(getattr(settings, "FERRY_APPROVALS_REQUIRED", 1)))


def approvals_valid(plan: MigrationPlan, *, now=None) -> QuerySet[Approval]:
    """Approvals that still count: bound to the frozen hash, not voided, not expired,
    and not given by the plan's author (four eyes, checked again on read)."""
    now = now or timezone.now()
    valid = Approval.objects.filter(
        plan=plan,
        decision=Approval.Decision.APPROVED,
        voided_at__isnull=True,
        content_hash=plan.content_hash,
    ).filter(Q(expires_at__isnull=True) | Q(expires_at__gt=now))
    if plan.content_hash == "":
        return valid.none()
    if plan.author_id is not None:
        valid = valid.exclude(approver_id=plan.author_id)
    return valid


def approvals_valid_count(plan: MigrationPlan, *, now=None) -> int:
    """Distinct approvers whose approval still counts (by name snapshot, so an approval
    survives the later deletion of its approver's account)."""
    return approvals_valid(plan, now=now).values("approver_name").distinct().count()


def approval_excluded_reason(plan: MigrationPlan, user) -> str:
    """Why `user` may not approve or reject `plan` under four eyes ("" when they may)."""
    pk = getattr(user, "pk", None)
    if plan.author_id is not None and plan.author_id == pk:
        return "author"
    if plan.author_id is None and plan.author_name and plan.author_name == _username(user):
        return "author"
    return ""


def _username(user) -> str:
    return user.get_username() if hasattr(user, "get_username") else ""
