"""What a campaign's status link shows: state, per-host step progress and its plans at a
glance, nothing a stakeholder must not see.

Left out on purpose: the reason text of a pause (it carries VM names, gate evidence and
hook answers), hook calls and their answers, hook URLs, raw errors, plan and VM names, and
(unless the link's creator chose to show them) host names, replaced by "host 1", "host 2".
"""

from django.utils import timezone

from migrations_app.campaigns.timeline import campaign_timeline
from migrations_app.models import Campaign

_PAUSED_NOTE = "paused: waiting for an operator"


def _iso(value):
    return value.isoformat() if value else None


def _percent(done: int, total: int) -> int:
    return int(100 * done / total) if total else 0


def campaign_status_snapshot(campaign: Campaign, *, show_host_names: bool = False) -> dict:
    """The public, redacted picture of a campaign (the status page and its JSON twin)."""
    hosts = campaign_timeline(campaign)
    label = {h.host_id: h.host if show_host_names else f"host {h.position + 1}" for h in hosts}
    rows, plans = [], []
    for h in hosts:
        steps = []
        for s in h.steps:
            steps.append(
                {
                    "key": s.key,
                    "name": s.name,
                    "state": s.state,
                    "start": _iso(s.start),
                    "end": _iso(s.end),
                    "duration_s": s.duration_s,
                }
            )
            if s.plan is not None:
                role = "drain" if s.key == "drain" else "failback"
                plans.append(
                    {
                        "role": role,
                        "host": label[h.host_id],
                        "status": s.plan["status"],
                        "vms": s.plan["vms"],
                        "vms_done": s.plan["vms_moved"],
                        "percent": _percent(s.plan["vms_moved"], s.plan["vms"]),
                    }
                )
        rows.append(
            {
                "host": label[h.host_id],
                "position": h.position + 1,
                "wave": h.wave + 1,
                "phase": h.phase,
                "steps": steps,
            }
        )
    done = sum(1 for h in hosts if h.phase == "done")
    return {
        "kind": "campaign",
        "campaign": {
            "id": campaign.pk,
            "name": campaign.name,
            "status": campaign.status,
            "stage": campaign.stage,
            "note": _PAUSED_NOTE if campaign.status == Campaign.Status.PAUSED else "",
            "failback": campaign.failback,
            "window_start": _iso(campaign.window_start),
            "window_end": _iso(campaign.window_end),
            "started_at": _iso(campaign.started_at),
            "finished_at": _iso(campaign.finished_at),
            "terminal": campaign.is_terminal,
        },
        "progress": {
            "hosts": len(hosts),
            "hosts_done": done,
            "percent": _percent(done, len(hosts)),
        },
        "hosts": rows,
        "plans": plans,
        "generated_at": _iso(timezone.now()),
    }
