"""Campaign services: create, add hooks, submit, approve, reject, start, pause, resume,
cancel. Each is one transaction that locks the campaign row, checks the transition and
records one audit event (as the plan workflow services do).

Each also tells the subscribers (notifications.services.notify_campaign_event, after
commit), as the plan workflow services do.

Four eyes: the author (and whoever submitted) may not approve. The approval is bound to the
content hash frozen at submit and tied to its audit event; the plans the campaign
generates start under it (migrations_app.selectors.approvals.campaign_approval_tied).
"""

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from dashboard.accounts.people import person_key, person_keys
from dashboard.audit.record import Actor, as_actor, audit_record
from dashboard.permissions import (
    actor_scope,
    can,
    in_scope,
    scope_filter,
    scope_label,
)
from inventory.models import Host
from migrations_app.campaigns.content import campaign_content_hash
from migrations_app.campaigns.tasks import campaign_advance_task
from migrations_app.errors import PlanError, TransitionError
from migrations_app.hooks import CAMPAIGN_EVENTS, hook_create
from migrations_app.models import Campaign, CampaignStep, Hook, MigrationPlan
from migrations_app.notifications.services import notify_campaign_event
from migrations_app.policy import Policy, PolicyError
from migrations_app.scoping import campaigns_in_scope  # noqa: F401  (pages and API use it here)
from migrations_app.workflow.services import WorkflowForbidden, plan_cancel

C = Campaign.Status

TRANSITIONS: dict[str, frozenset[str]] = {
    C.DRAFT: frozenset({C.SUBMITTED, C.CANCELLED}),
    C.SUBMITTED: frozenset({C.APPROVED, C.REJECTED, C.DRAFT, C.CANCELLED}),
    C.APPROVED: frozenset({C.RUNNING, C.CANCELLED}),
    C.REJECTED: frozenset({C.DRAFT, C.CANCELLED}),
    C.RUNNING: frozenset({C.PAUSED, C.COMPLETED, C.FAILED, C.CANCELLED}),
    C.PAUSED: frozenset({C.RUNNING, C.FAILED, C.CANCELLED}),
    C.COMPLETED: frozenset(),
    C.FAILED: frozenset(),
    C.CANCELLED: frozenset(),
}
MAX_HOSTS = 200


def _require(
    actor, action: str, verb: str, *, machine_allowed: bool = False, campaign=None
) -> None:
    if isinstance(actor, AbstractBaseUser):
        if not can(actor, action):
            raise WorkflowForbidden(f"Your role does not allow you to {verb} campaigns.")
        if campaign is not None:
            _require_scope(actor, action, verb, campaign_host_groups(campaign))
        return
    if not (machine_allowed and isinstance(actor, Actor)):
        raise WorkflowForbidden(f"Only a signed-in person may {verb} a campaign.")


def campaign_host_groups(campaign: Campaign) -> set[str]:
    """The host groups of the hosts a campaign walks ("" for ungrouped hosts)."""
    return set(CampaignStep.objects.filter(campaign=campaign).values_list("host__group", flat=True))


def _require_scope(actor, action: str, verb: str, groups) -> None:
    """A person whose role is scoped to host groups acts only on campaigns whose hosts all
    lie in that scope (as for plans: migrations_app.scoping)."""
    scope = actor_scope(actor, action)
    if not in_scope(scope, groups):
        outside = ", ".join(sorted(g or "(no group)" for g in set(groups) - set(scope)))
        raise WorkflowForbidden(
            f"Your role does not reach host group(s) {outside}, so you may not {verb} this "
            f"campaign (your scope: {scope_label(scope)})."
        )


def _locked(campaign: Campaign) -> Campaign:
    return Campaign.objects.select_for_update(no_key=True).get(pk=campaign.pk)


def _move(campaign: Campaign, target: str, verb: str) -> None:
    if target not in TRANSITIONS.get(campaign.status, frozenset()):
        raise TransitionError(
            f"Cannot {verb} campaign '{campaign.name}': it is {campaign.get_status_display()}."
        )


def _save(campaign, *, actor, action, before, fields, reason="", extra=None):
    campaign.save(update_fields=[*fields, "updated_at"])
    return audit_record(
        actor=actor,
        action=action,
        obj=campaign,
        before={"status": before},
        after={"status": campaign.status, **(extra or {})},
        reason=reason,
    )


def _clean_hosts(hosts, group: str, actor=None) -> list[Host]:
    # A person scoped to host groups sees hosts outside them as unknown (as for plans:
    # nobody learns by trying what lies outside their scope).
    reachable = scope_filter(Host.objects.all(), actor, "plan.edit")
    if group:
        found = list(reachable.filter(group=group).order_by("name"))
        if not found:
            raise PlanError(f"No host is in group '{group}'.")
        return found
    if not isinstance(hosts, list) or not hosts:
        raise PlanError("A campaign needs an ordered list of hosts, or a group.")
    if len(hosts) > MAX_HOSTS:
        raise PlanError(f"A campaign takes at most {MAX_HOSTS} hosts.")
    by_key = {}
    for h in reachable:
        by_key[str(h.pk)] = h
        by_key[h.name] = h
    out, unknown = [], []
    for key in hosts:
        host = by_key.get(str(key))
        if host is None:
            unknown.append(str(key))
        elif host in out:
            raise PlanError(f"Host {host.name} is listed twice.")
        else:
            out.append(host)
    if unknown:
        raise PlanError(f"Unknown host(s): {', '.join(unknown[:10])}.")
    return out


def campaign_create(
    *,
    actor,
    name: str,
    hosts=None,
    group: str = "",
    batch_size: int = 1,
    description: str = "",
    change_ticket: str = "",
    window_start=None,
    window_end=None,
    policy: dict | None = None,
    failback: bool = False,
    healthy_timeout_s: int = 600,
) -> Campaign:
    """Create a draft campaign over an ordered host list (one host per wave) or every host of
    a group, `batch_size` hosts per wave (people, or the system: the demo's campaign)."""
    _require(actor, "plan.edit", "create", machine_allowed=True)
    name = (name or "").strip()
    if not name or any(ord(ch) < 32 for ch in name):
        raise PlanError("A campaign needs a one-line name.")
    if any(ord(ch) < 32 for ch in change_ticket or ""):
        raise PlanError("The change ticket must be one line.")
    if window_start and window_end and window_end <= window_start:
        raise PlanError("The maintenance window ends before it starts.")
    try:
        batch_size = int(batch_size)
        healthy_timeout_s = int(healthy_timeout_s)
    except (TypeError, ValueError):
        raise PlanError("batch_size and healthy_timeout_s are whole numbers.") from None
    if not 1 <= batch_size <= 50:
        raise PlanError("batch_size is between 1 and 50 hosts at a time.")
    if not 10 <= healthy_timeout_s <= 24 * 3600:
        raise PlanError("healthy_timeout_s is between 10 seconds and 24 hours.")
    policy = dict(policy or {})
    try:
        Policy.from_dict(policy)
    except (PolicyError, TypeError) as exc:
        raise PlanError(f"Policy: {exc}") from None
    group = (group or "").strip()
    chosen = _clean_hosts(hosts, group, actor)
    who = as_actor(actor)
    with transaction.atomic():
        campaign = Campaign.objects.create(
            name=name[:200],
            description=description or "",
            change_ticket=(change_ticket or "").strip()[:100],
            window_start=window_start,
            window_end=window_end,
            policy=policy,
            group=group,
            batch_size=batch_size if group else 1,
            failback=bool(failback),
            healthy_timeout_s=healthy_timeout_s,
            author=actor if isinstance(actor, AbstractBaseUser) else None,
            author_name=who.name[:150],
        )
        per_wave = batch_size if group else 1
        CampaignStep.objects.bulk_create(
            CampaignStep(campaign=campaign, host=h, position=i, wave=i // per_wave)
            for i, h in enumerate(chosen)
        )
        audit_record(
            actor=actor,
            action="campaign.created",
            obj=campaign,
            after={
                "name": campaign.name,
                "hosts": [h.name for h in chosen],
                "group": group,
                "batch_size": campaign.batch_size,
                "failback": campaign.failback,
                "change_ticket": campaign.change_ticket,
            },
        )
    return campaign


def campaign_hook_add(*, campaign: Campaign, actor, **fields) -> Hook:
    """Add a hook to a draft campaign (command hooks: admins only)."""
    _require(actor, "plan.edit", "edit", campaign=campaign)
    with transaction.atomic():
        locked = _locked(campaign)
        if locked.status not in (C.DRAFT, C.REJECTED):
            raise TransitionError(
                f"Campaign '{locked.name}' is {locked.get_status_display()}: hooks are added "
                "to drafts only (return it to draft first)."
            )
        if fields.get("event") not in CAMPAIGN_EVENTS:
            raise PlanError(f"Hook event is one of {', '.join(CAMPAIGN_EVENTS)}.")
        hook = hook_create(actor=actor, campaign=locked, **fields)
        audit_record(
            actor=actor,
            action="campaign.hook_added",
            obj=locked,
            after={"hook": hook.pk, "event": hook.event, "kind": hook.kind},
        )
    return hook


def campaign_transport_override_set(*, campaign: Campaign, actor, reason: str) -> Campaign:
    """An admin allows (reason) or forbids again (empty) the campaign's plans to move VMs
    to hosts reached without TLS; part of the approved content (drafts only)."""
    if not can(actor, "plan.transport_override"):
        raise WorkflowForbidden("Only an admin may allow a campaign to move VMs without TLS.")
    reason = (reason or "").strip()[:2000]
    with transaction.atomic():
        locked = _locked(campaign)
        if locked.status not in (C.DRAFT, C.REJECTED):
            raise TransitionError(f"Campaign '{locked.name}' is not a draft.")
        before = {"reason": locked.transport_override_reason}
        locked.transport_override_reason = reason
        locked.transport_override_by = actor.get_username() if reason else ""
        locked.save(update_fields=["transport_override_reason", "transport_override_by"])
        audit_record(
            actor=actor,
            action="campaign.transport_override",
            obj=locked,
            before=before,
            after={"reason": reason},
            reason=reason,
        )
    return locked


def campaign_submit(*, campaign: Campaign, actor) -> Campaign:
    """Freeze the campaign's content and hand it to approvers."""
    _require(actor, "plan.submit", "submit", machine_allowed=True, campaign=campaign)
    with transaction.atomic():
        locked = _locked(campaign)
        _move(locked, C.SUBMITTED, "submit")
        before = locked.status
        locked.status = C.SUBMITTED
        locked.content_hash = campaign_content_hash(locked)
        locked.submitted_at = timezone.now()
        locked.status_reason = ""
        _save(
            locked,
            actor=actor,
            action="campaign.submit",
            before=before,
            fields=["status", "content_hash", "submitted_at", "status_reason"],
            extra={"content_hash": locked.content_hash},
        )
        notify_campaign_event(locked, "submitted", actor=actor)
    return locked


def campaign_approve(
    *, campaign: Campaign, actor, comment: str = "", expected_hash: str = ""
) -> Campaign:
    """Approve the frozen content (never by its author): this also approves the evacuation
    and failback plans the campaign will generate from it."""
    _require(actor, "plan.approve", "approve", campaign=campaign)
    with transaction.atomic():
        locked = _locked(campaign)
        # Four eyes counts people: another account of the author (an IdP account and a
        # local one of the same person) is the author too.
        same_person = locked.author_id is not None and person_key(actor) in set(
            person_keys([locked.author_id]).values()
        )
        if (
            actor.pk == locked.author_id
            or actor.get_username() == locked.author_name
            or same_person
        ):
            raise WorkflowForbidden(
                f"Four eyes: you wrote campaign '{locked.name}', so someone else must approve it."
            )
        _move(locked, C.APPROVED, "approve")
        if expected_hash and expected_hash != locked.content_hash:
            raise TransitionError(f"Campaign '{locked.name}' changed since you looked at it.")
        if campaign_content_hash(locked) != locked.content_hash:
            raise TransitionError(
                f"The content of campaign '{locked.name}' no longer matches what was submitted."
            )
        before = locked.status
        locked.status = C.APPROVED
        locked.approved_by = actor
        locked.approved_by_name = actor.get_username()
        locked.approved_hash = locked.content_hash
        locked.approved_at = timezone.now()
        event = _save(
            locked,
            actor=actor,
            action="campaign.approve",
            before=before,
            fields=["status", "approved_by", "approved_by_name", "approved_hash", "approved_at"],
            reason=(comment or "").strip(),
            extra={"campaign": locked.pk, "content_hash": locked.approved_hash},
        )
        locked.approval_audit_sequence = event.sequence
        locked.save(update_fields=["approval_audit_sequence"])
        notify_campaign_event(locked, "approved", actor=actor)
    return locked


def campaign_reject(*, campaign: Campaign, actor, reason: str) -> Campaign:
    """Reject a submitted campaign with a reason."""
    _require(actor, "plan.approve", "reject", campaign=campaign)
    reason = (reason or "").strip()
    if not reason:
        raise ValidationError({"reason": ["Say why the campaign is rejected."]})
    with transaction.atomic():
        locked = _locked(campaign)
        if actor.pk == locked.author_id:
            raise WorkflowForbidden("Four eyes: you wrote this campaign.")
        _move(locked, C.REJECTED, "reject")
        before = locked.status
        locked.status = C.REJECTED
        locked.status_reason = reason
        _save(
            locked,
            actor=actor,
            action="campaign.reject",
            before=before,
            fields=["status", "status_reason"],
            reason=reason,
        )
        notify_campaign_event(locked, "rejected", actor=actor, extra={"reason": reason})
    return locked


def _kick(campaign: Campaign) -> None:
    chain = campaign.chain
    transaction.on_commit(lambda: campaign_advance_task.enqueue(campaign.pk, chain))


def campaign_start(*, campaign: Campaign, actor, override_reason: str = "") -> Campaign:
    """Start an approved campaign (operators); outside its window a reason is required."""
    _require(actor, "plan.run", "start", campaign=campaign)
    override_reason = (override_reason or "").strip()
    with transaction.atomic():
        locked = _locked(campaign)
        _move(locked, C.RUNNING, "start")
        if locked.status != C.APPROVED:
            raise TransitionError(f"Campaign '{locked.name}' is paused: resume it instead.")
        if not locked.approved_hash or locked.approved_hash != campaign_content_hash(locked):
            raise TransitionError(f"Campaign '{locked.name}' has no valid approval.")
        now = timezone.now()
        outside = (locked.window_start and now < locked.window_start) or (
            locked.window_end and now > locked.window_end
        )
        if outside and not override_reason:
            raise ValidationError(
                {"override_reason": ["Outside the campaign's window: give a reason to start."]}
            )
        before = locked.status
        locked.status = C.RUNNING
        locked.started_at = now
        locked.chain += 1
        locked.status_reason = override_reason if outside else ""
        _save(
            locked,
            actor=actor,
            action="campaign.start",
            before=before,
            fields=["status", "started_at", "chain", "status_reason"],
            reason=locked.status_reason,
            extra={"content_hash": locked.approved_hash, "outside_window": bool(outside)},
        )
        notify_campaign_event(locked, "started", actor=actor)
        _kick(locked)
    return locked


def campaign_pause(
    *,
    campaign: Campaign,
    actor,
    reason: str = "",
    notify_event: str = "paused",
    notify_extra: dict | None = None,
) -> Campaign:
    """Pause a running campaign: a running evacuation plan finishes its items in flight,
    nothing new is done to any host until an operator resumes. The engine names why it
    paused in `notify_event` (gate_paused, host_action_failed) for the subscribers."""
    _require(actor, "plan.run", "pause", machine_allowed=True, campaign=campaign)
    with transaction.atomic():
        locked = _locked(campaign)
        _move(locked, C.PAUSED, "pause")
        before = locked.status
        locked.status = C.PAUSED
        locked.status_reason = (reason or "").strip()
        _save(
            locked,
            actor=actor,
            action="campaign.pause",
            before=before,
            fields=["status", "status_reason"],
            reason=locked.status_reason,
        )
        notify_campaign_event(
            locked,
            notify_event,
            actor=actor,
            extra={"reason": locked.status_reason, **(notify_extra or {})},
        )
    return locked


def campaign_resume(*, campaign: Campaign, actor) -> Campaign:
    """Resume a paused campaign where it stopped (a gate is checked again)."""
    _require(actor, "plan.run", "resume", campaign=campaign)
    with transaction.atomic():
        locked = _locked(campaign)
        if locked.status != C.PAUSED:
            raise TransitionError(f"Campaign '{locked.name}' is not paused.")
        before = locked.status
        locked.status = C.RUNNING
        locked.status_reason = ""
        locked.chain += 1
        # A host action whose worker died mid-call left its claim: the operator who resumes
        # has looked, so the action runs again.
        rerun = locked.steps.filter(
            phase=CampaignStep.Phase.HOST_ACTION, action_started_at__isnull=False
        ).update(action_started_at=None)
        _save(
            locked,
            actor=actor,
            action="campaign.resume",
            before=before,
            fields=["status", "status_reason", "chain"],
            extra={"host_actions_rerun": rerun},
        )
        _kick(locked)
    return locked


def campaign_cancel(*, campaign: Campaign, actor, reason: str) -> Campaign:
    """Cancel a campaign and the plans it generated that have not ended (their libvirt jobs
    are aborted; VMs keep running where they are). Hosts stay as they are (one in
    maintenance stays closed until an operator takes it out: Ferry does not guess whether
    its action finished)."""
    _require(actor, "plan.run", "cancel", campaign=campaign)
    reason = (reason or "").strip()
    if not reason:
        raise ValidationError({"reason": ["Say why the campaign is cancelled."]})
    with transaction.atomic():
        locked = _locked(campaign)
        _move(locked, C.CANCELLED, "cancel")
        before = locked.status
        locked.status = C.CANCELLED
        locked.status_reason = reason
        locked.finished_at = timezone.now()
        _save(
            locked,
            actor=actor,
            action="campaign.cancel",
            before=before,
            fields=["status", "status_reason", "finished_at"],
            reason=reason,
        )
        notify_campaign_event(locked, "cancelled", actor=actor, extra={"reason": reason})
        for plan in locked.plans.exclude(status__in=MigrationPlan.TERMINAL):
            plan_cancel(plan=plan, actor=Actor.system("campaign"), reason=f"campaign: {reason}")
    return locked


def campaign_finish(*, campaign: Campaign, actor, outcome: str, reason: str = "") -> Campaign:
    """Record the end of a campaign (the engine, as a system actor)."""
    with transaction.atomic():
        locked = _locked(campaign)
        _move(locked, outcome, "finish")
        before = locked.status
        locked.status = outcome
        locked.stage = Campaign.Stage.DONE
        locked.status_reason = reason
        locked.finished_at = timezone.now()
        _save(
            locked,
            actor=actor,
            action=f"campaign.{outcome}",
            before=before,
            fields=["status", "stage", "status_reason", "finished_at"],
            reason=reason,
        )
        # "finished" as for plans; the outcome says how it ended.
        notify_campaign_event(
            locked,
            "finished" if outcome == C.COMPLETED else "failed",
            actor=actor,
            extra={"outcome": outcome, **({"reason": reason} if reason else {})},
        )
    return locked
