"""The per-plan report as CSV and JSON: one row per VM with its start, end, bytes, passes,
achieved downtime, result and error class (the change record's VM table, for
spreadsheets and scripts)."""

import csv
import io

from django.http import HttpResponse
from django.utils import timezone

from dashboard.audit.export import csv_cell
from migrations_app.models import MigrationPlan
from migrations_app.reports.change_record import plan_items_and_runs
from migrations_app.reports.summary import headline, outcome_counts, vm_rows

# Column order of the CSV (and key order of each JSON row).
REPORT_FIELDS = (
    "item_id",
    "vm",
    "vm_uuid",
    "source",
    "destination",
    "mode",
    "outcome",
    "attempts",
    "driver",
    "started_at",
    "finished_at",
    "total_time_ms",
    "downtime_ms",
    "max_downtime_ms",
    "over_max",
    "bytes_transferred",
    "iterations",
    "error_class",
    "error_message",
)


class _Record:
    """What summary.vm_rows reads: the plan, its items and its runs."""

    def __init__(self, plan: MigrationPlan):
        self.plan = plan
        self.items, self.runs = plan_items_and_runs(plan)


def plan_report(plan: MigrationPlan) -> dict:
    """The report as JSON values: the plan, counts per outcome and one row per VM."""
    record = _Record(plan)
    rows = vm_rows(record)
    counts = outcome_counts(rows)
    return {
        "generated_at": timezone.now().isoformat(),
        "plan": {
            "id": plan.pk,
            "name": plan.name,
            "change_ticket": plan.change_ticket,
            "status": plan.status,
            "max_downtime_ms": plan.get_policy().max_downtime_ms,
        },
        "outcome": headline(counts, len(rows)),
        "counts": counts,
        "vms": [{k: row.as_dict()[k] for k in REPORT_FIELDS} for row in rows],
    }


def plan_report_csv(plan: MigrationPlan) -> HttpResponse:
    """The report's VM rows as a CSV file (header first)."""
    report = plan_report(plan)
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(REPORT_FIELDS)
    for row in report["vms"]:
        writer.writerow([csv_cell(row[k]) for k in REPORT_FIELDS])
    response = HttpResponse(buffer.getvalue(), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="plan-{plan.pk}-report.csv"'
    return response
