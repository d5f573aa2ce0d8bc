"""The campaign engine: one pass over a running campaign's current wave of hosts.

Per host: PENDING (enter maintenance, generate the evacuation plan with the existing
placement, validate it, approve it under the campaign's approval, start it) → DRAINING
(the plan runs through the normal execution code) → GATE (every item succeeded and libvirt
shows no running VM on the host; else the campaign pauses and nothing is done to the host)
→ HOST_ACTION (the host_action hooks) → WAIT_HEALTHY (libvirt answers, sync ok, facts not
gone backwards, within the timeout) → exit maintenance, post_host hooks → DONE. After the
last wave, an optional failback plan puts every VM back on its origin.

A pass is called by campaign_advance_task (a chain of tasks per start/resume, so an old
chain stops); each phase change is a conditional UPDATE from the phase the pass read, so
two passes at once cannot both act on a step. Hooks and syncs run outside any transaction.
"""

import logging

from django.db import transaction
from django.utils import timezone

from dashboard.audit.record import Actor, audit_record
from inventory.models import Host
from inventory.services import host_maintenance_enter, host_maintenance_exit
from migrations_app.campaigns.gate import host_facts, host_gate, host_healthy
from migrations_app.campaigns.services import campaign_finish, campaign_pause
from migrations_app.hooks import hooks_run
from migrations_app.models import (
    Campaign,
    CampaignStep,
    Hook,
    HookCall,
    MigrationPlan,
    PlanItem,
)
from migrations_app.notifications.services import notify_campaign_event
from migrations_app.services.plan_edits import plan_lock
from migrations_app.services.plans import plan_create, plan_delete, plan_evacuate_host
from migrations_app.services.validation import plan_validate
from migrations_app.workflow.services import plan_cancel, plan_start

logger = logging.getLogger("ferry.campaigns")

ENGINE = Actor.system("campaign")
P = CampaignStep.Phase
C = Campaign.Status
S = MigrationPlan.Status


class Paused(Exception):
    """The step cannot go on: the campaign pauses with this reason (`event` and `extra` are
    what its subscribers are told: gate_paused, host_action_failed, or plain paused)."""

    def __init__(self, reason: str, *, event: str = "paused", extra: dict | None = None):
        super().__init__(reason)
        self.event = event
        self.extra = extra or {}


def _now() -> str:
    return timezone.now().isoformat()


def _mark(step: CampaignStep, name: str, edge: str) -> None:
    entry = dict(step.timeline.get(name) or {})
    entry[edge] = _now()
    step.timeline = {**step.timeline, name: entry}


def _to(step: CampaignStep, phase: str, *, fields=(), **values) -> bool:
    """Move the step from the phase this pass read to `phase` (conditional UPDATE)."""
    for key, value in values.items():
        setattr(step, key, value)
    changed = CampaignStep.objects.filter(pk=step.pk, phase=step.phase).update(
        phase=phase, timeline=step.timeline, **{f: getattr(step, f) for f in fields}, **values
    )
    if changed:
        step.phase = phase
    return bool(changed)


def campaign_advance(campaign_id: int, *, chain: int | None = None) -> dict:
    """One pass of a running campaign; {"again": True} while it still runs."""
    campaign = Campaign.objects.filter(pk=campaign_id).first()
    if campaign is None or campaign.status != C.RUNNING:
        return {"campaign": campaign_id, "again": False}
    if chain is not None and campaign.chain != chain:
        return {"campaign": campaign_id, "again": False, "stale_chain": chain}
    try:
        if campaign.stage == Campaign.Stage.HOSTS:
            _hosts_pass(campaign)
        elif campaign.stage == Campaign.Stage.FAILBACK:
            _failback_pass(campaign)
    except Paused as exc:
        _pause(campaign, str(exc), event=exc.event, extra=exc.extra)
    campaign.refresh_from_db(fields=["status", "stage"])
    return {
        "campaign": campaign_id,
        "status": campaign.status,
        "again": campaign.status == C.RUNNING,
    }


def _pause(campaign: Campaign, reason: str, *, event: str = "paused", extra=None) -> None:
    logger.info("campaign %s pauses: %s", campaign.pk, reason)
    try:
        campaign_pause(
            campaign=campaign,
            actor=ENGINE,
            reason=reason[:2000],
            notify_event=event,
            notify_extra=extra,
        )
    except Exception:  # an operator paused or cancelled it meanwhile: theirs stands
        logger.info("campaign %s: pause not recorded (state moved on)", campaign.pk)


def _still_running(campaign: Campaign) -> bool:
    return Campaign.objects.filter(pk=campaign.pk, status=C.RUNNING).exists()


def _hosts_pass(campaign: Campaign) -> None:
    open_steps = campaign.steps.exclude(phase=P.DONE).select_related("host")
    first = open_steps.order_by("wave").first()
    if first is None:
        if campaign.failback:
            _failback_begin(campaign)
        else:
            campaign_finish(campaign=campaign, actor=ENGINE, outcome=C.COMPLETED)
        return
    for step in open_steps.filter(wave=first.wave).order_by("position"):
        if not _still_running(campaign):
            return
        _step_pass(campaign, step)


def _step_pass(campaign: Campaign, step: CampaignStep) -> None:
    # One pass may carry a step through several phases (nothing to wait for between them).
    for _ in range(6):
        before = step.phase
        if step.phase == P.PENDING:
            _drain_begin(campaign, step)
        elif step.phase == P.DRAINING:
            _draining(campaign, step)
        elif step.phase == P.GATE:
            _gate(campaign, step)
        elif step.phase == P.HOST_ACTION:
            _host_action(campaign, step)
        elif step.phase == P.WAIT_HEALTHY:
            _wait_healthy(campaign, step)
        if step.phase in (before, P.DONE) or not _still_running(campaign):
            return


# -- drain -------------------------------------------------------------------------------


def _drain_begin(campaign: Campaign, step: CampaignStep) -> None:
    host = Host.objects.get(pk=step.host_id)
    window_end = campaign.window_end
    if window_end and timezone.now() > window_end:
        raise Paused(f"The campaign's window closed before {host.name} started.")
    if host.state in (Host.State.UNREACHABLE, Host.State.DISABLED):
        raise Paused(f"{host.name} is {host.state}: Ferry does not start its maintenance.")
    _mark(step, "maintenance", "start")
    if host.state != Host.State.MAINTENANCE:
        host_maintenance_enter(host=host, actor=ENGINE, reason=f"campaign '{campaign.name}'")
        # Only when Ferry closed it: a drain planned again after a pause tells nobody twice.
        notify_campaign_event(campaign, "host_maintenance", actor=ENGINE, extra={"host": host.name})
    _mark(step, "maintenance", "end")
    _mark(step, "drain", "start")
    step.facts_before = host_facts(host)
    plan = plan_create(
        actor=ENGINE,
        name=f"{campaign.name}: drain {host.name}"[:200],
        description=f"Generated by campaign #{campaign.pk} ('{campaign.name}').",
        change_ticket=campaign.change_ticket,
        policy=campaign.policy,
    )
    _bind(plan, campaign, "evacuation")
    result = plan_evacuate_host(plan=plan, host=host, actor=ENGINE)
    problems = [f"{s['vm']}: {s['reason']}" for s in result["skipped"]]
    names = dict(PlanItem.objects.filter(plan=plan).values_list("pk", "vm__name"))
    problems += [
        f"{names.get(u['item'], u['item'])}: {u['reason'] or 'no destination fits'}"
        for u in result["unplaced"]
    ]
    if problems:
        plan_cancel(plan=plan, actor=ENGINE, reason="the campaign paused before it ran")
        raise Paused(f"The evacuation of {host.name} cannot be planned: " + "; ".join(problems[:5]))
    items = list(PlanItem.objects.filter(plan=plan).select_related("vm"))
    if not items:
        plan_delete(plan=plan, actor=ENGINE)
        _mark(step, "drain", "end")
        _mark(step, "gate", "start")
        _to(step, P.GATE, fields=("facts_before",), plan=None)
        return
    origins = {str(i.vm_id): i.source_host_id for i in items}
    _campaign_approve_plan(campaign, plan)
    plan_start(plan=plan, actor=ENGINE)
    _to(step, P.DRAINING, fields=("facts_before",), plan=plan, origins=origins)


def _bind(plan: MigrationPlan, campaign: Campaign, role: str) -> None:
    """Mark a generated plan as the campaign's, with the campaign's transport override
    (approved with the campaign) before it is validated."""
    MigrationPlan.objects.filter(pk=plan.pk).update(
        campaign=campaign,
        campaign_role=role,
        transport_override_reason=campaign.transport_override_reason,
        transport_override_by=campaign.transport_override_by,
        transport_override_at=timezone.now() if campaign.transport_override_reason else None,
    )


def _rehearsal_location(result) -> bool:
    evidence = result.evidence or {}
    return (
        result.check_id == "vm.state"
        and result.item is not None
        and evidence.get("now_on") is not None
        and result.item.destination_host_id is not None
        and evidence.get("now_on") == result.item.destination_host.name
    )


def _campaign_approve_plan(
    campaign: Campaign, plan: MigrationPlan, *, failback: bool = False
) -> None:
    """Validate the generated plan and freeze it as approved under the campaign's approval
    (the approver approved the campaign, which says how its plans are made)."""
    run = plan_validate(plan=plan, actor=ENGINE)
    blockers = list(run.results.filter(severity="blocker").select_related("item"))
    if failback and _rehearsal(campaign):
        # A rehearsal moved nothing, so the inventory still has every VM on its origin: the
        # "not where the plan expects it" finding is the rehearsal's, not a problem.
        blockers = [r for r in blockers if not _rehearsal_location(r)]
    if blockers:
        plan_cancel(plan=plan, actor=ENGINE, reason="its checks found blockers")
        listed = "; ".join(f"{r.vm_name}: {r.message}" for r in blockers[:3])
        raise Paused(f"Plan '{plan.name}' has {len(blockers)} blocker(s): {listed}")
    with transaction.atomic():
        locked = plan_lock(plan)
        locked.status = S.APPROVED
        locked.content_hash = run.content_hash
        locked.submitted_at = timezone.now()
        locked.submitted_by_name = ENGINE.name
        locked.save(update_fields=["status", "content_hash", "submitted_at", "submitted_by_name"])
        audit_record(
            actor=ENGINE,
            action="plan.approved_by_campaign",
            obj=locked,
            before={"status": S.DRAFT},
            after={
                "status": S.APPROVED,
                "content_hash": run.content_hash,
                "campaign": campaign.pk,
                "campaign_hash": campaign.approved_hash,
                "campaign_approver": campaign.approved_by_name,
                "validation_run": run.pk,
            },
        )


def _rehearsal(campaign: Campaign) -> bool:
    """Every host of the campaign is on libvirt's test driver (moves are rehearsed)."""
    return not campaign.steps.exclude(host__transport=Host.Transport.TEST).exists()


def _draining(campaign: Campaign, step: CampaignStep) -> None:
    plan = MigrationPlan.objects.get(pk=step.plan_id)
    busy = plan.items.filter(status=PlanItem.Status.RUNNING).exists()
    # A plan that paused (the scheduler pauses one whose items failed) with nothing in
    # flight has drained all it will: the gate says what is left on the host.
    if not (plan.is_terminal or (plan.status == S.PAUSED and not busy)):
        return
    _mark(step, "drain", "end")
    _mark(step, "gate", "start")
    _to(step, P.GATE)


# -- gate, host action, health ----------------------------------------------------------


def _gate(campaign: Campaign, step: CampaignStep) -> None:
    host = Host.objects.get(pk=step.host_id)
    plan = MigrationPlan.objects.filter(pk=step.plan_id).first()
    if plan is not None and plan.status == S.RUNNING:
        _to(step, P.DRAINING)  # an operator resumed the evacuation: wait for it again
        return
    result = host_gate(host, plan)
    _mark(step, "gate", "end" if result.ok else "checked")
    audit_record(
        actor=ENGINE,
        action="campaign.gate_passed" if result.ok else "campaign.gate_closed",
        obj=campaign,
        after={"host": host.name, "reason": result.reason, **result.evidence},
    )
    if not result.ok:
        CampaignStep.objects.filter(pk=step.pk).update(reason=result.reason, timeline=step.timeline)
        raise Paused(
            f"Gate of {host.name}: {result.reason} Nothing was done to the host.",
            event="gate_paused",
            extra={"host": host.name},
        )
    _to(step, P.HOST_ACTION, reason="")


def _hooks(campaign: Campaign, event: str):
    return list(Hook.objects.filter(campaign=campaign, event=event).order_by("id"))


def _payload(campaign: Campaign, host: Host, event: str) -> dict:
    return {
        "event": event,
        "campaign": campaign.pk,
        "campaign_name": campaign.name,
        "change_ticket": campaign.change_ticket,
        "host": host.name,
        "host_uri": host.uri,
    }


def _host_action(campaign: Campaign, step: CampaignStep) -> None:
    host = Host.objects.get(pk=step.host_id)
    # Claim the action: only the pass that sets action_started_at calls the hook.
    if not CampaignStep.objects.filter(pk=step.pk, action_started_at__isnull=True).update(
        action_started_at=timezone.now()
    ):
        return
    _mark(step, "host_action", "start")
    calls_before = HookCall.objects.filter(campaign=campaign, event=Hook.Event.HOST_ACTION)
    first_call = calls_before.order_by("-id").values_list("id", flat=True).first() or 0
    ok, why, _policy = hooks_run(
        _hooks(campaign, Hook.Event.HOST_ACTION),
        payload=_payload(campaign, host, Hook.Event.HOST_ACTION),
        obj=campaign,
        campaign=campaign,
        host=host,
    )
    _mark(step, "host_action", "end")
    answer = _answer(campaign, host, after=first_call)
    if not ok:
        # Resume runs the action again (the operator looked at why it failed).
        CampaignStep.objects.filter(pk=step.pk).update(
            action_started_at=None, reason=why, timeline=step.timeline
        )
        raise Paused(
            f"Host action on {host.name}: {why}. The host stays in maintenance.",
            event="host_action_failed",
            extra=answer,
        )
    notify_campaign_event(campaign, "host_action_done", actor=ENGINE, extra=answer)
    _mark(step, "wait_healthy", "start")
    _to(step, P.WAIT_HEALTHY, healthy_deadline=None)


def _answer(campaign: Campaign, host: Host, *, after: int) -> dict:
    """What subscribers hear of a host action: the classified answers and their duration
    (never the raw detail or the hook's URL)."""
    calls = HookCall.objects.filter(
        campaign=campaign, host=host, event=Hook.Event.HOST_ACTION, pk__gt=after
    ).order_by("id")
    answers = [{"ok": c.ok, "code": c.code, "outcome": c.outcome} for c in calls]
    return {
        "host": host.name,
        "duration_ms": sum(c.duration_ms for c in calls),
        "answers": answers,
    }


def _wait_healthy(campaign: Campaign, step: CampaignStep) -> None:
    host = Host.objects.get(pk=step.host_id)
    now = timezone.now()
    if step.healthy_deadline is None:
        step.healthy_deadline = now + timezone.timedelta(seconds=campaign.healthy_timeout_s)
        CampaignStep.objects.filter(pk=step.pk).update(healthy_deadline=step.healthy_deadline)
    result = host_healthy(host, step.facts_before or {}, actor=ENGINE)
    if not result.ok:
        if now > step.healthy_deadline:
            CampaignStep.objects.filter(pk=step.pk).update(
                healthy_deadline=None, reason=result.reason
            )
            raise Paused(
                f"{host.name} was not healthy within {campaign.healthy_timeout_s} s: "
                f"{result.reason}. It stays in maintenance."
            )
        return
    _mark(step, "wait_healthy", "end")
    _mark(step, "exit", "start")
    host_maintenance_exit(host=host, actor=ENGINE, reason=f"campaign '{campaign.name}'")
    _mark(step, "exit", "end")
    _to(step, P.DONE, reason="")
    ok, why, policy = hooks_run(
        _hooks(campaign, Hook.Event.POST_HOST),
        payload=_payload(campaign, host, Hook.Event.POST_HOST),
        obj=campaign,
        campaign=campaign,
        host=host,
    )
    if not ok and policy == Hook.OnFailure.PAUSE:
        raise Paused(f"After {host.name}: {why}.")


# -- failback ----------------------------------------------------------------------------


def _failback_begin(campaign: Campaign) -> None:
    """Plan the return of every drained VM to its origin. A VM someone moved since (the
    inventory puts it elsewhere than where the campaign sent it) is left, with the reason;
    on a rehearsal nothing really moved, so the campaign's own record says where it is."""
    moves, left = [], []
    for step in campaign.steps.exclude(plan=None).select_related("host"):
        items = PlanItem.objects.filter(plan_id=step.plan_id, status=PlanItem.Status.COMPLETED)
        for item in items.select_related("vm", "destination_host"):
            vm, here = item.vm, item.destination_host
            rehearsal = here.transport == Host.Transport.TEST
            if not rehearsal and vm.host_id != here.pk:
                left.append(f"{vm.name}: moved since (now on {vm.host or 'unknown'})")
                continue
            moves.append((vm, here, step.host))
    audit_record(
        actor=ENGINE,
        action="campaign.failback_planned",
        obj=campaign,
        after={"vms": len(moves), "left": left[:50]},
    )
    if not moves:
        _finish_stage(campaign, C.COMPLETED, "; ".join(left[:10]))
        return
    plan = plan_create(
        actor=ENGINE,
        name=f"{campaign.name}: return to origin"[:200],
        description=f"Failback of campaign #{campaign.pk}.",
        change_ticket=campaign.change_ticket,
        policy=campaign.policy,
    )
    with transaction.atomic():
        _bind(plan, campaign, "failback")
        PlanItem.objects.bulk_create(
            PlanItem(
                plan=plan,
                vm=vm,
                source_host=here,
                destination_host=origin,
                destination_chosen_by="campaign",
                mode=PlanItem.Mode.LIVE,
                position=i,
            )
            for i, (vm, here, origin) in enumerate(moves)
        )
    _campaign_approve_plan(campaign, plan, failback=True)
    plan_start(plan=plan, actor=ENGINE)
    Campaign.objects.filter(pk=campaign.pk).update(stage=Campaign.Stage.FAILBACK)


def _failback_pass(campaign: Campaign) -> None:
    plan = campaign.plans.filter(campaign_role="failback").order_by("-id").first()
    if plan is None:
        _finish_stage(campaign, C.COMPLETED, "")
        return
    if plan.status == S.PAUSED:
        raise Paused(f"Failback plan paused: {plan.status_reason or 'see the plan'}")
    if not plan.is_terminal:
        return
    if plan.status == S.COMPLETED:
        moved = plan.items.filter(status=PlanItem.Status.COMPLETED).count()
        notify_campaign_event(
            campaign, "failback_done", actor=ENGINE, extra={"plan": plan.pk, "vms": moved}
        )
        _finish_stage(campaign, C.COMPLETED, "")
    else:
        _finish_stage(campaign, C.FAILED, f"failback plan ended {plan.get_status_display()}")


def _finish_stage(campaign: Campaign, outcome: str, reason: str) -> None:
    campaign_finish(campaign=campaign, actor=ENGINE, outcome=outcome, reason=reason)
