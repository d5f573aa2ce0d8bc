"""The change record of a maintenance campaign: what an auditor files with the change
ticket, built like a plan's (reports.change_record).

Summary first (outcome, hosts done, VMs moved, total time and Ferry's own overhead, who
drafted, submitted, approved and started it and when, the change ticket, deviations), then
every host with every step (campaigns.timeline.STEPS: enter maintenance, drain with its
plan, gate, host action with its hook answers, wait healthy, exit maintenance, failback),
the plans it generated, its audit events and the head of the audit chain.
"""

from dataclasses import dataclass, field

from django.db.models import Q
from django.utils import timezone

from dashboard.audit.models import AuditEvent
from dashboard.audit.selectors import audit_events_visible
from migrations_app.campaigns.timeline import (
    HostTimeline,
    campaign_overhead,
    campaign_timeline,
)
from migrations_app.models import Campaign, PlanItem

# audit action -> the role the person played (the summary's "who did what").
PEOPLE = {
    "campaign.created": "drafted",
    "campaign.submit": "submitted",
    "campaign.approve": "approved",
    "campaign.reject": "rejected",
    "campaign.start": "started",
    "campaign.resume": "resumed",
    "campaign.cancel": "cancelled",
}


@dataclass
class CampaignRecord:
    """Everything the campaign's change record page, PDF and JSON show."""

    campaign: Campaign
    hosts: list[HostTimeline]
    overhead: dict
    plans: list = field(default_factory=list)
    people: list = field(default_factory=list)
    deviations: list = field(default_factory=list)
    events: list = field(default_factory=list)
    chain_head: dict | None = None
    generated_at: object = None
    hosts_done: int = 0
    vms_moved: int = 0
    vms_returned: int = 0

    @property
    def headline(self) -> str:
        c = self.campaign
        hosts = f"{self.hosts_done} of {len(self.hosts)} hosts done"
        moved = f"{self.vms_moved} VM{'s' if self.vms_moved != 1 else ''} moved"
        back = f", {self.vms_returned} returned" if c.failback else ""
        return f"{c.get_status_display().capitalize()}: {hosts}, {moved}{back}."


def campaign_audit_query(campaign: Campaign) -> Q:
    """The campaign's own events (hooks, gates, pauses are recorded on it) and its links'."""
    query = Q(object_type="migrations_app.campaign", object_id=str(campaign.pk))
    links = [str(pk) for pk in campaign.share_links.values_list("pk", flat=True)]
    if links:
        query |= Q(object_type="migrations_app.sharelink", object_id__in=links)
    return query


def _deviations(campaign: Campaign, events: list, plans: list) -> list[dict]:
    out = []
    for e in events:
        after = e.after or {}
        text = ""
        if e.action == "campaign.start" and after.get("outside_window"):
            text, kind = f"Started outside its window: {e.reason}", "override"
        elif e.action == "campaign.transport_override" and after.get("reason"):
            text, kind = f"Moves without TLS allowed: {after['reason']}", "override"
        elif e.action == "campaign.pause":
            text, kind = f"Paused: {e.reason or 'no reason given'}", "pause"
        elif e.action == "campaign.resume":
            text, kind = "Resumed by an operator", "operator"
        elif e.action == "campaign.gate_closed":
            text, kind = f"Gate of {after.get('host', '?')} closed: {after.get('reason')}", "gate"
        elif e.action == "hook.failed":
            where = f" on {after['host']}" if after.get("host") else ""
            text = f"{after.get('event')} hook failed{where}: {after.get('outcome')}"
            kind = "hook"
        elif e.action == "campaign.failback_planned" and after.get("left"):
            text = f"Not returned: {'; '.join(after['left'][:5])}"
            kind = "failback"
        if text:
            out.append({"kind": kind, "text": text, "who": e.actor_name, "at": e.created_at})
    for plan in plans:
        bad = [i for i in plan["items"] if i.status not in ("completed",)]
        if bad and plan["status"] in ("completed", "partially_completed", "failed", "cancelled"):
            names = ", ".join(f"{i.vm.name} ({i.status})" for i in bad[:5])
            out.append({"kind": "item", "text": f"{plan['name']}: {names}", "who": "—", "at": None})
    return out


def campaign_record_build(campaign: Campaign, *, user=None) -> CampaignRecord:
    """Collect the change record of a campaign (read-only). With `user`, the audit events
    are those that user may read."""
    hosts = campaign_timeline(campaign)
    plans = []
    for plan in campaign.plans.order_by("id"):
        items = list(plan.items.select_related("vm").order_by("position", "id"))
        plans.append(
            {
                "id": plan.pk,
                "name": plan.name,
                "role": plan.campaign_role,
                "status": plan.status,
                "items": items,
                "vms": len(items),
                "vms_moved": sum(1 for i in items if i.status == PlanItem.Status.COMPLETED),
            }
        )
    source = audit_events_visible(user) if user is not None else AuditEvent.objects.all()
    events = list(source.filter(campaign_audit_query(campaign)).order_by("sequence"))
    people, seen = [], set()
    for e in events:
        role = PEOPLE.get(e.action)
        if role and (role, e.actor_name) not in seen:
            seen.add((role, e.actor_name))
            people.append({"role": role, "who": e.actor_name, "at": e.created_at})
    record = CampaignRecord(
        campaign=campaign,
        hosts=hosts,
        overhead=campaign_overhead(campaign, hosts),
        plans=plans,
        people=people,
        deviations=_deviations(campaign, events, plans),
        events=events,
        chain_head=AuditEvent.objects.order_by("-sequence").values("sequence", "hash").first(),
        generated_at=timezone.now(),
        hosts_done=sum(1 for h in hosts if h.phase == "done"),
        vms_moved=sum(p["vms_moved"] for p in plans if p["role"] == "evacuation"),
        vms_returned=sum(p["vms_moved"] for p in plans if p["role"] == "failback"),
    )
    return record


def _iso(value):
    return value.isoformat() if value else None


def campaign_timeline_json(campaign: Campaign) -> dict:
    """The per-host step timeline with the overhead split (GET .../timeline/)."""
    hosts = campaign_timeline(campaign)
    return {
        "campaign": campaign.pk,
        "status": campaign.status,
        "started_at": _iso(campaign.started_at),
        "finished_at": _iso(campaign.finished_at),
        "overhead": campaign_overhead(campaign, hosts),
        "hosts": [h.as_dict() for h in hosts],
    }


def campaign_record_json(record: CampaignRecord) -> dict:
    """The change record as JSON values (the API's answer)."""
    c = record.campaign
    return {
        "generated_at": _iso(record.generated_at),
        "summary": {
            "headline": record.headline,
            "outcome": c.status,
            "status_reason": c.status_reason,
            "hosts": len(record.hosts),
            "hosts_done": record.hosts_done,
            "vms_moved": record.vms_moved,
            "vms_returned": record.vms_returned,
            "started_at": _iso(c.started_at),
            "finished_at": _iso(c.finished_at),
            **record.overhead,
            "change_ticket": c.change_ticket,
            "content_hash": c.content_hash,
            "approved_hash": c.approved_hash,
            "people": [{**p, "at": _iso(p["at"])} for p in record.people],
            "deviations": [{**d, "at": _iso(d["at"])} for d in record.deviations],
            "chain_head": record.chain_head,
        },
        "campaign": {
            "id": c.pk,
            "name": c.name,
            "description": c.description,
            "window_start": _iso(c.window_start),
            "window_end": _iso(c.window_end),
            "group": c.group,
            "batch_size": c.batch_size,
            "failback": c.failback,
            "healthy_timeout_s": c.healthy_timeout_s,
            "policy": c.policy,
        },
        "hosts": [h.as_dict() for h in record.hosts],
        "plans": [
            {k: v for k, v in p.items() if k != "items"}
            | {"items": [{"vm": i.vm.name, "status": i.status} for i in p["items"]]}
            for p in record.plans
        ],
        "audit_events": [
            {
                "sequence": e.sequence,
                "at": _iso(e.created_at),
                "actor": e.actor_name,
                "actor_type": e.actor_type,
                "action": e.action,
                "object": f"{e.object_type}:{e.object_id}",
                "reason": e.reason,
                "after": e.after,
                "prev_hash": e.prev_hash,
                "hash": e.hash,
            }
            for e in record.events
        ],
        "chain_head": record.chain_head,
    }
