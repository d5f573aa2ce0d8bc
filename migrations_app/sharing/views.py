"""The public status page of a share link: read-only, no login, hosts redacted by default.
A link shows a plan (live over its websocket) or a campaign (sharing.campaign_status; its
page polls the JSON twin every few seconds).

Only GET and HEAD are answered (405 for anything else); the page changes nothing and
records nothing, so a leaked link can at most be read until it is revoked or expires.
"""

from datetime import timedelta

from django.http import JsonResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_safe

from migrations_app.live.redaction import status_snapshot as redacted_for_status
from migrations_app.live.snapshots import plan_snapshot
from migrations_app.models import MigrationPlan
from migrations_app.selectors.runs import evidence_run, latest_run
from migrations_app.sharing.campaign_status import campaign_status_snapshot
from migrations_app.sharing.services import share_link_lookup

_DONE = {"completed"}
_FAILED = {"failed", "cancelled", "needs_attention"}


def _eta(plan: MigrationPlan):
    """Run start plus the estimated makespan of the validation the approvers saw."""
    if plan.status not in ("running", "paused"):
        return None
    run = latest_run(plan)
    evidence = evidence_run(plan)
    makespan = (evidence.estimate or {}).get("makespan_s") if evidence else None
    if run is None or not isinstance(makespan, int | float):
        return None
    return run.started_at + timedelta(seconds=makespan)


def _no_store(response):
    response["Cache-Control"] = "no-store"
    response["Referrer-Policy"] = "no-referrer"  # the token is in the URL
    response["X-Robots-Tag"] = "noindex"
    return response


# csrf_exempt only so that unsafe methods get a plain 405 from require_safe instead of a
# CSRF 403 page; either way nothing but GET/HEAD reaches the view body.
@csrf_exempt
@require_safe
def status_page(request, token):
    link = share_link_lookup(token)
    state = link.state() if link else "unknown"
    if state != "active":
        context = {"state": state, "expires_at": link.expires_at if link else None}
        code = 404 if link is None else 410
        return _no_store(render(request, "migrations_app/status_gone.html", context, status=code))
    if link.campaign_id:
        snapshot = campaign_status_snapshot(link.campaign, show_host_names=link.show_host_names)
        context = {"snapshot": snapshot, "now": timezone.now(), "token": token}
        return _no_store(render(request, "migrations_app/campaign_status.html", context))
    plan = link.plan
    snapshot = redacted_for_status(plan_snapshot(plan, redact_hosts=not link.show_host_names))
    statuses = [item["status"] for item in snapshot["items"]]
    total = len(statuses)
    done = sum(1 for s in statuses if s in _DONE)
    failed = sum(1 for s in statuses if s in _FAILED)
    context = {
        "snapshot": snapshot,
        "progress": {
            "total": total,
            "done": done,
            "failed": failed,
            "percent": int(100 * (done + failed) / total) if total else 0,
        },
        "outcome": plan.get_status_display() if plan.is_terminal else "",
        "eta": _eta(plan),
        "now": timezone.now(),
        "token": token,
    }
    return _no_store(render(request, "migrations_app/status.html", context))


@csrf_exempt
@require_safe
def status_snapshot(request, token):
    """The live page's REST twin: the same redacted snapshot its websocket starts with."""
    link = share_link_lookup(token)
    state = link.state() if link else "unknown"
    if state != "active":
        detail = "This status link has been revoked or has expired." if link else "Unknown link."
        return _no_store(
            JsonResponse({"detail": detail, "state": state}, status=404 if link is None else 410)
        )
    if link.campaign_id:
        snapshot = campaign_status_snapshot(link.campaign, show_host_names=link.show_host_names)
        return _no_store(JsonResponse(snapshot))
    snapshot = redacted_for_status(plan_snapshot(link.plan, redact_hosts=not link.show_host_names))
    eta = _eta(link.plan)
    snapshot["eta"] = eta.isoformat() if eta else None
    return _no_store(JsonResponse(snapshot))
