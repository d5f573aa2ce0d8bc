"""/metrics for Prometheus: plans and items by state, migration duration and downtime
histograms, bytes transferred, task queue depth and this process's websocket clients.

Readable with the scraper token (`Authorization: Bearer $FERRY_METRICS_TOKEN`) or from an
address in FERRY_METRICS_ALLOW (default: loopback only). Behind a proxy
(FERRY_BEHIND_PROXY) only the token counts: every client may appear to come from the
proxy's loopback address, and forwarded addresses are the client's to choose (L7). Plain text exposition format,
written here rather than through a client library: these are a handful of gauges computed
from the database at scrape time.
"""

import hmac
import ipaddress

from django.conf import settings
from django.db.models import Count, Sum
from django.http import HttpResponse, HttpResponseForbidden
from django.utils import timezone

from dashboard.audit.models import AuditOutbox
from dashboard.live.consumers import websocket_clients
from migrations_app.models import ItemAttempt, MigrationPlan, PlanItem

DURATION_BUCKETS_S = (1, 2, 5, 10, 30, 60, 120, 300, 600, 1800)
DOWNTIME_BUCKETS_MS = (50, 100, 200, 300, 500, 1000, 2000, 5000)


def _allowed(request) -> bool:
    token = settings.FERRY_METRICS_TOKEN
    header = request.headers.get("Authorization", "")
    if token and header.startswith("Bearer ") and hmac.compare_digest(header[7:].strip(), token):
        return True
    if getattr(settings, "FERRY_BEHIND_PROXY", False):
        return False
    try:
        address = ipaddress.ip_address(request.META.get("REMOTE_ADDR", ""))
    except ValueError:
        return False
    return any(
        address in ipaddress.ip_network(net, strict=False) for net in settings.FERRY_METRICS_ALLOW
    )


def _histogram(lines, name, help_text, values, buckets, scale=1.0):
    lines.append(f"# HELP {name} {help_text}")
    lines.append(f"# TYPE {name} histogram")
    values = [v / scale for v in values]
    for bound in buckets:
        lines.append(f'{name}_bucket{{le="{bound}"}} {sum(1 for v in values if v <= bound)}')
    lines.append(f'{name}_bucket{{le="+Inf"}} {len(values)}')
    lines.append(f"{name}_sum {sum(values):.3f}")
    lines.append(f"{name}_count {len(values)}")


def _queue_depth() -> int | None:
    if settings.TASK_BACKEND == "db":
        from django_tasks_db.models import DBTaskResult

        return DBTaskResult.objects.filter(status="READY").count()
    if settings.TASK_BACKEND == "rq":
        import django_rq

        return len(django_rq.get_queue("default"))
    return None


def metrics_view(request):
    """Prometheus text exposition."""
    if not _allowed(request):
        return HttpResponseForbidden(
            "metrics: give the scraper token or scrape from an allowed address\n"
        )
    lines = ["# HELP ferry_plans Plans by status.", "# TYPE ferry_plans gauge"]
    plan_counts = dict(MigrationPlan.objects.values_list("status").annotate(n=Count("id")))
    for status in MigrationPlan.Status.values:
        lines.append(f'ferry_plans{{status="{status}"}} {plan_counts.get(status, 0)}')
    lines += ["# HELP ferry_plan_items Plan items by status.", "# TYPE ferry_plan_items gauge"]
    item_counts = dict(PlanItem.objects.values_list("status").annotate(n=Count("id")))
    for status in PlanItem.Status.values:
        lines.append(f'ferry_plan_items{{status="{status}"}} {item_counts.get(status, 0)}')
    done = ItemAttempt.objects.filter(status="completed")
    durations = [v for v in done.values_list("total_time_ms", flat=True) if v is not None]
    downtimes = [v for v in done.values_list("downtime_ms", flat=True) if v is not None]
    _histogram(
        lines,
        "ferry_migration_duration_seconds",
        "Total time of completed migrations.",
        durations,
        DURATION_BUCKETS_S,
        1000.0,
    )
    _histogram(
        lines,
        "ferry_migration_downtime_milliseconds",
        "Downtime of completed migrations.",
        downtimes,
        DOWNTIME_BUCKETS_MS,
    )
    transferred = ItemAttempt.objects.aggregate(total=Sum("bytes_transferred"))["total"] or 0
    lines += [
        "# HELP ferry_bytes_transferred_total Bytes sent by migrations (all attempts).",
        "# TYPE ferry_bytes_transferred_total counter",
        f"ferry_bytes_transferred_total {transferred}",
    ]
    depth = _queue_depth()
    if depth is not None:
        lines += [
            "# HELP ferry_task_queue_depth Background tasks waiting for a worker.",
            "# TYPE ferry_task_queue_depth gauge",
            f"ferry_task_queue_depth {depth}",
        ]
    if settings.FERRY_AUDIT_SYSLOG_URL:
        # Forwarding drops nothing: what the receiver has not taken waits in the outbox.
        oldest = AuditOutbox.objects.order_by("sequence").values_list("created_at", flat=True)
        head = oldest.first()
        age = (timezone.now() - head).total_seconds() if head else 0.0
        lines += [
            "# HELP ferry_audit_forward_pending Audit events waiting to be sent to syslog.",
            "# TYPE ferry_audit_forward_pending gauge",
            f"ferry_audit_forward_pending {AuditOutbox.objects.count()}",
            "# HELP ferry_audit_forward_oldest_seconds Age of the oldest waiting audit event.",
            "# TYPE ferry_audit_forward_oldest_seconds gauge",
            f"ferry_audit_forward_oldest_seconds {age:.3f}",
        ]
    lines += [
        "# HELP ferry_websocket_clients Live subscribers connected to this web process.",
        "# TYPE ferry_websocket_clients gauge",
        f"ferry_websocket_clients {websocket_clients()}",
    ]
    return HttpResponse(
        "\n".join(lines) + "\n", content_type="text/plain; version=0.0.4; charset=utf-8"
    )
