"""Reads about approvals: which ones still count for a plan, and how many are needed."""

from django.conf import settings
from django.db.models import Q, QuerySet
from django.utils import timezone

from dashboard.accounts.people import person_key, person_keys
from dashboard.audit.models import AuditEvent
from migrations_app.content import plan_content_within
from migrations_app.models import Approval, Campaign, MigrationPlan


def approvals_required() -> int:
    """How many distinct approvers a plan needs (FERRY_APPROVALS_REQUIRED)."""
    return max(1, int(getattr(settings, "FERRY_APPROVALS_REQUIRED", 1)))


def approvals_valid(plan: MigrationPlan, *, now=None) -> QuerySet[Approval]:
    """Approvals that still count: bound to the frozen hash, not voided, not expired, and
    not given by anyone who shaped the plan (four eyes, checked again on read)."""
    now = now or timezone.now()
    valid = Approval.objects.filter(
        plan=plan,
        decision=Approval.Decision.APPROVED,
        voided_at__isnull=True,
        content_hash=plan.content_hash,
    ).filter(Q(expires_at__isnull=True) | Q(expires_at__gt=now))
    if plan.content_hash == "":
        return valid.none()
    ids, names = approval_excluded_people(plan)
    valid = valid.exclude(approver_id__in=ids).exclude(approver_name__in=names)
    # Four eyes counts people: another account of someone who shaped the plan (their IdP
    # account and their local one) does not count either.
    shapers = set(person_keys(ids).values())
    approver_ids = set(valid.values_list("approver_id", flat=True))
    same = [pk for pk, key in person_keys(approver_ids).items() if key in shapers]
    return valid.exclude(approver_id__in=same) if same else valid


def approval_people(approvals) -> set[str]:
    """The distinct people behind approvals: by account (an IdP account and a local one of
    one person are one), by name snapshot once the account is deleted."""
    rows = list(approvals.values_list("approver_id", "approver_name"))
    keys = person_keys(pk for pk, _ in rows)
    return {keys.get(pk) or f"name:{name}" for pk, name in rows}


def approvals_valid_count(plan: MigrationPlan, *, now=None) -> int:
    """Distinct people whose approval still counts (an approval survives the later
    deletion of its approver's account through its name snapshot)."""
    return len(approval_people(approvals_valid(plan, now=now)))


def approvals_tied_people(plan: MigrationPlan, *, now=None) -> set[str]:
    """People (person keys, see approval_people) whose valid approval is tied to its audit
    event: the event at the approval's audit sequence records this plan's approval by this approver of this
    content hash. plan_start counts these, so an Approval row that did not come through
    plan_approve (and so has no matching event in the hash chain) starts nothing."""
    approvals = list(approvals_valid(plan, now=now).exclude(audit_sequence__isnull=True))
    events = {
        event.sequence: event
        for event in AuditEvent.objects.filter(
            sequence__in=[a.audit_sequence for a in approvals],
            action="plan.approve",
            object_type=MigrationPlan._meta.label_lower,
            object_id=str(plan.pk),
        )
    }
    tied = set()
    keys = person_keys(a.approver_id for a in approvals)
    for approval in approvals:
        event = events.get(approval.audit_sequence)
        after = (event.after or {}) if event else {}
        if (
            event is not None
            and event.actor_name == approval.approver_name
            and (approval.approver_id is None or event.actor_user_id == approval.approver_id)
            and after.get("approval") == approval.pk
            and after.get("content_hash") == approval.content_hash
        ):
            tied.add(keys.get(approval.approver_id) or f"name:{approval.approver_name}")
    return tied


def approvals_tied_count(plan: MigrationPlan, *, now=None) -> int:
    """How many distinct people's approvals are tied (approvals_tied_people)."""
    return len(approvals_tied_people(plan, now=now))


def approvals_carried_count(plan: MigrationPlan, *, now=None) -> int:
    """A re-run of failed items counts its origin's tied approvals while its content lies
    within what they approved, minus anyone who shaped the re-run (four eyes, counted by
    person: another account of a shaper does not count either)."""
    origin = plan.rerun_of
    if origin is None or not plan.content_hash:
        return 0
    within, _why = plan_content_within(plan, origin)
    if not within:
        return 0
    ids, names = approval_excluded_people(plan)
    shapers = set(person_keys(ids).values()) | {f"name:{name}" for name in names}
    return len(approvals_tied_people(origin, now=now) - shapers)


def approval_excluded_people(plan: MigrationPlan) -> tuple[set, set]:
    """(user ids, user names) of everyone who may not approve `plan`: its author and
    everyone who edited or submitted it."""
    ids = {plan.author_id} - {None}
    names = {plan.author_name} - {""}
    for entry in plan.contributors or []:
        if entry.get("id") is not None:
            ids.add(entry["id"])
        if entry.get("name"):
            names.add(entry["name"])
    return ids, names


def approval_excluded_reason(plan: MigrationPlan, user) -> str:
    """Why `user` may not approve or reject `plan` under four eyes ("" when they may):
    "author", "submitted", "edited", or "same_person" (another account of someone who did). Pages, API and services all ask this function."""
    pk = getattr(user, "pk", None)
    name = _username(user)
    if plan.author_id is not None and plan.author_id == pk:
        return "author"
    if plan.author_id is None and plan.author_name and plan.author_name == name:
        return "author"
    for entry in plan.contributors or []:
        if (pk is not None and entry.get("id") == pk) or (name and entry.get("name") == name):
            roles = entry.get("as") or ["edited"]
            if "created" in roles:
                return "author"
            return "submitted" if "submitted" in roles else "edited"
    ids, _ = approval_excluded_people(plan)
    if pk is not None and ids and person_key(user) in set(person_keys(ids - {pk}).values()):
        return "same_person"
    return ""


def _username(user) -> str:
    return user.get_username() if hasattr(user, "get_username") else ""


def campaign_approval_tied(plan: MigrationPlan) -> bool:
    """Whether a plan generated by a campaign starts under the campaign's approval: the
    campaign runs, its approval is of its frozen content, by someone other than its author,
    and tied to the audit event that recorded it (as plan approvals are)."""
    if plan.campaign_id is None:
        return False
    campaign = Campaign.objects.filter(pk=plan.campaign_id).first()
    if (
        campaign is None
        or campaign.status != Campaign.Status.RUNNING
        or not campaign.approved_hash
        or campaign.approved_hash != campaign.content_hash
        or campaign.approval_audit_sequence is None
        or campaign.approved_by_name in ("", campaign.author_name)
    ):
        return False
    event = AuditEvent.objects.filter(
        sequence=campaign.approval_audit_sequence,
        action="campaign.approve",
        object_type=Campaign._meta.label_lower,
        object_id=str(campaign.pk),
    ).first()
    return (
        event is not None
        and event.actor_name == campaign.approved_by_name
        and (event.after or {}).get("content_hash") == campaign.approved_hash
    )
