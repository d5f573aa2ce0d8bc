"""The per-host step timeline of a campaign: one read shared by the API, the change record
and the public status page (each shows what its reader may see).

Every host has the same seven steps, in order, with stable keys and names (the change
record and its tests read them): enter maintenance, drain, gate, host action, wait
healthy, exit maintenance, failback. Times come from CampaignStep.timeline (written by the
engine), the runs of the generated plans (ItemAttempt start/finish) and the hook calls.

`overhead` splits the campaign's wall time into time in migrations, time in the host
action, and the rest (Ferry's own overhead: planning, checks, gates, waiting for health,
maintenance switches), with overlapping intervals counted once.
"""

from dataclasses import dataclass, field
from datetime import UTC, datetime

from django.utils import timezone
from django.utils.dateparse import parse_datetime

from migrations_app.models import Campaign, CampaignStep, HookCall, ItemAttempt, PlanItem

# (key, name) in the order a host goes through them; keys match CampaignStep.timeline.
STEPS = (
    ("maintenance", "enter maintenance"),
    ("drain", "drain"),
    ("gate", "gate"),
    ("host_action", "host action"),
    ("wait_healthy", "wait healthy"),
    ("exit", "exit maintenance"),
    ("failback", "failback"),
)
STEP_NAMES = dict(STEPS)
_ITEM_ENDED = frozenset({"completed", "failed", "cancelled", "needs_attention", "rolled_back"})


@dataclass
class StepTime:
    """One step of one host: when it started and ended, and what it found."""

    key: str
    name: str
    start: datetime | None = None
    end: datetime | None = None
    state: str = "pending"  # pending, running, done, failed, skipped
    detail: str = ""  # safe for every reader (no raw errors, no hook URLs)
    plan: dict | None = None  # {"id", "name", "status", "vms", "vms_moved"}
    calls: list = field(default_factory=list)  # host action: hook answers

    @property
    def duration_s(self) -> float | None:
        if self.start is None or self.end is None:
            return None
        return round((self.end - self.start).total_seconds(), 3)

    def as_dict(self) -> dict:
        return {
            "key": self.key,
            "name": self.name,
            "state": self.state,
            "start": _iso(self.start),
            "end": _iso(self.end),
            "duration_s": self.duration_s,
            "detail": self.detail,
            "plan": self.plan,
            "calls": self.calls,
        }


@dataclass
class HostTimeline:
    """A host of the campaign with its seven steps."""

    step_id: int
    position: int
    wave: int
    host_id: int
    host: str
    phase: str
    reason: str
    steps: list[StepTime]

    def as_dict(self) -> dict:
        return {
            "step": self.step_id,
            "position": self.position,
            "wave": self.wave,
            "host": self.host,
            "phase": self.phase,
            "steps": [s.as_dict() for s in self.steps],
        }


def _iso(value):
    return value.isoformat() if value else None


def _parse(value) -> datetime | None:
    if not value:
        return None
    parsed = parse_datetime(str(value))
    if parsed is not None and timezone.is_naive(parsed):
        parsed = timezone.make_aware(parsed, UTC)
    return parsed


def _span(attempts) -> tuple[datetime | None, datetime | None]:
    starts = [a.started_at for a in attempts if a.started_at]
    ends = [a.finished_at for a in attempts if a.finished_at]
    return (min(starts) if starts else None, max(ends) if ends else None)


def _plan_info(plan, items) -> dict:
    return {
        "id": plan.pk,
        "name": plan.name,
        "status": plan.status,
        "vms": len(items),
        "vms_moved": sum(1 for i in items if i.status == PlanItem.Status.COMPLETED),
    }


def _state(start, end, *, failed: bool = False) -> str:
    if failed:
        return "failed"
    if end is not None:
        return "done"
    return "running" if start is not None else "pending"


class _Loaded:
    """The rows a campaign's timeline is built from, loaded once (no query per host)."""

    def __init__(self, campaign: Campaign):
        self.steps = list(
            CampaignStep.objects.filter(campaign=campaign)
            .select_related("host", "plan")
            .order_by("position", "id")
        )
        self.plans = {p.pk: p for p in campaign.plans.all()}
        self.failback = max(
            (p for p in self.plans.values() if p.campaign_role == "failback"),
            key=lambda p: p.pk,
            default=None,
        )
        self.items: dict[int, list] = {}
        for item in PlanItem.objects.filter(plan_id__in=list(self.plans)).order_by("id"):
            self.items.setdefault(item.plan_id, []).append(item)
        self.attempts: dict[int, list] = {}
        for attempt in ItemAttempt.objects.filter(run__plan_id__in=list(self.plans)).only(
            "id", "item_id", "started_at", "finished_at", "status"
        ):
            self.attempts.setdefault(attempt.item_id, []).append(attempt)
        self.calls: dict[int | None, list] = {}
        for call in HookCall.objects.filter(campaign=campaign, event="host_action").order_by("id"):
            self.calls.setdefault(call.host_id, []).append(call)

    def attempts_of(self, items) -> list:
        return [a for i in items for a in self.attempts.get(i.pk, [])]


def _host_steps(campaign: Campaign, step: CampaignStep, data: _Loaded) -> list[StepTime]:
    t = step.timeline or {}
    out = []
    # enter maintenance: marked since the engine records it; before, it opened the drain.
    m = t.get("maintenance") or {}
    drain = t.get("drain") or {}
    start = _parse(m.get("start") or drain.get("start"))
    end = _parse(m.get("end") or drain.get("start"))
    out.append(StepTime("maintenance", STEP_NAMES["maintenance"], start, end, _state(start, end)))

    start, end = _parse(drain.get("start")), _parse(drain.get("end"))
    d = StepTime("drain", STEP_NAMES["drain"], start, end, _state(start, end))
    plan = data.plans.get(step.plan_id) if step.plan_id else None
    if plan is not None:
        items = data.items.get(plan.pk, [])
        d.plan = _plan_info(plan, items)
        d.detail = f"{d.plan['vms_moved']} of {d.plan['vms']} VMs moved"
    elif end is not None:
        d.detail = "no running VM to move"
    out.append(d)

    gate = t.get("gate") or {}
    start, end = _parse(gate.get("start")), _parse(gate.get("end"))
    checked = _parse(gate.get("checked"))
    g = StepTime("gate", STEP_NAMES["gate"], start, end or None)
    if end is not None:
        g.state, g.detail = "done", "passed: no running VM left, every item succeeded"
    elif checked is not None:
        g.end, g.state, g.detail = checked, "failed", "closed: the campaign paused"
    else:
        g.state = _state(start, None)
    out.append(g)

    action = t.get("host_action") or {}
    start, end = _parse(action.get("start")), _parse(action.get("end"))
    calls = data.calls.get(step.host_id, [])
    a = StepTime("host_action", STEP_NAMES["host_action"], start, end)
    a.calls = [
        {
            "ok": c.ok,
            "code": c.code,
            "outcome": c.outcome,
            "duration_ms": c.duration_ms,
            "at": _iso(c.created_at),
        }
        for c in calls
    ]
    last = calls[-1] if calls else None
    a.state = _state(start, end, failed=last is not None and not last.ok and end is not None)
    if last is not None:
        a.detail = f"{'ok' if last.ok else 'failed'}: {last.outcome} ({last.duration_ms} ms)"
    elif end is not None:
        a.detail = "no host action hook"
    out.append(a)

    for key in ("wait_healthy", "exit"):
        edge = t.get(key) or {}
        start, end = _parse(edge.get("start")), _parse(edge.get("end"))
        out.append(StepTime(key, STEP_NAMES[key], start, end, _state(start, end)))

    f = StepTime("failback", STEP_NAMES["failback"])
    if not campaign.failback:
        f.state, f.detail = "skipped", "no failback in this campaign"
    elif data.failback is not None:
        back = [
            i for i in data.items.get(data.failback.pk, []) if i.destination_host_id == step.host_id
        ]
        if back:
            f.start, f.end = _span(data.attempts_of(back))
            if f.end and any(i.status not in _ITEM_ENDED for i in back):
                f.end = None
            f.plan = _plan_info(data.failback, back)
            failed = any(i.status in ("failed", "cancelled") for i in back)
            f.state = _state(f.start, f.end, failed=failed and f.end is not None)
            f.detail = f"{f.plan['vms_moved']} of {f.plan['vms']} VMs returned"
        else:
            f.state, f.detail = "skipped", "no VM to return"
    out.append(f)
    return out


def campaign_timeline(campaign: Campaign) -> list[HostTimeline]:
    """Every host of the campaign with its seven steps, in campaign order."""
    data = _Loaded(campaign)
    return [
        HostTimeline(
            step_id=step.pk,
            position=step.position,
            wave=step.wave,
            host_id=step.host_id,
            host=step.host.name,
            phase=step.phase,
            reason=step.reason,
            steps=_host_steps(campaign, step, data),
        )
        for step in data.steps
    ]


def _union_seconds(intervals) -> float:
    spans = sorted((s, e) for s, e in intervals if s is not None and e is not None and e > s)
    total, current = 0.0, None
    for start, end in spans:
        if current is None or start > current[1]:
            if current is not None:
                total += (current[1] - current[0]).total_seconds()
            current = [start, end]
        else:
            current[1] = max(current[1], end)
    if current is not None:
        total += (current[1] - current[0]).total_seconds()
    return total


def campaign_overhead(campaign: Campaign, hosts: list[HostTimeline] | None = None) -> dict:
    """Wall time split: migrations (every attempt of the campaign's plans), host actions,
    and Ferry's own overhead (the rest); None values while the campaign has not started."""
    if campaign.started_at is None:
        return {"total_s": None, "migration_s": None, "host_action_s": None, "overhead_s": None}
    hosts = campaign_timeline(campaign) if hosts is None else hosts
    end = campaign.finished_at or timezone.now()
    total = (end - campaign.started_at).total_seconds()
    moves = [
        (a.started_at, a.finished_at)
        for a in ItemAttempt.objects.filter(run__plan__campaign=campaign).only(
            "started_at", "finished_at"
        )
    ]
    actions = [(s.start, s.end) for h in hosts for s in h.steps if s.key == "host_action"]
    return {
        "total_s": round(total, 3),
        "migration_s": round(_union_seconds(moves), 3),
        "host_action_s": round(_union_seconds(actions), 3),
        "overhead_s": round(max(0.0, total - _union_seconds(moves + actions)), 3),
    }
