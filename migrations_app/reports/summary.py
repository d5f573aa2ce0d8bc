"""The first screen of a change record, and its per-VM rows.

An auditor reads the outcome before anything else: how many VMs moved, how long it took
against the estimate, how long the VMs were down against the allowed maximum, who drafted,
submitted, approved and started it, and everything that did not go by the book (starts
outside the window, policy overrides, warnings accepted at approval, retries, operator
actions). The check evidence and the audit events follow in appendices.

Pure over a loaded ChangeRecord: no query here, so the page, the PDF, the JSON and the
CSV/JSON report give the same figures.
"""

import statistics
from dataclasses import asdict, dataclass, field

from migrations_app.reports.outcomes import (
    COMPLETED,
    LABELS,
    NOT_RUN,
    OUTCOMES,
    attempt_outcome,
)

# Actions that an operator (or Ferry on the operator's behalf) took besides starting.
OPERATOR_ACTIONS = {
    "plan.pause": "paused the plan",
    "plan.resume": "resumed the plan",
    "plan.cancel": "cancelled the plan",
    "plan.hold": "put the plan on hold",
    "plan.release": "released the hold",
    "item.cancel_requested": "cancelled an item",
}
# A run closed by a person (run_finish) rather than by its last item.
MANUAL_FINISH = ("run.completed", "run.failed", "run.partially_completed")
WARNINGS_NAMED = 3  # VM names listed per accepted warning before "and N more"


@dataclass
class VmRow:
    """One VM of the plan: what became of it, from its last attempt."""

    item_id: int
    vm: str
    vm_uuid: str
    source: str
    destination: str | None
    mode: str
    outcome: str
    outcome_label: str
    attempts: int
    driver: str
    started_at: object
    finished_at: object
    total_time_ms: int | None
    downtime_ms: int | None
    max_downtime_ms: int
    over_max: bool
    bytes_transferred: int | None
    iterations: int | None
    error_class: str
    error_message: str

    @property
    def total_time_s(self) -> float | None:
        return round(self.total_time_ms / 1000, 1) if self.total_time_ms is not None else None

    def as_dict(self) -> dict:
        data = asdict(self)
        for key in ("started_at", "finished_at"):
            data[key] = data[key].isoformat() if data[key] else None
        return data


@dataclass
class Summary:
    """The figures of the first screen."""

    items: int
    counts: dict
    headline: str
    started_at: object = None
    finished_at: object = None
    elapsed_s: float | None = None
    estimate_s: float | None = None
    vs_estimate_pct: float | None = None
    # A rehearsal runs faster than real time (FERRY_REHEARSAL_SPEED): its wall time is not
    # comparable with the estimate, which is for real hosts, so no percentage is given.
    rehearsal_speed: float | None = None
    downtime: dict = field(default_factory=dict)
    people: list = field(default_factory=list)
    change_ticket: str = ""
    deviations: list = field(default_factory=list)
    chain_head: dict | None = None

    def as_dict(self) -> dict:
        data = asdict(self)
        for key in ("started_at", "finished_at"):
            data[key] = data[key].isoformat() if data[key] else None
        for row in data["people"] + data["deviations"]:
            if row.get("at") is not None:
                row["at"] = row["at"].isoformat()
        return data


def _attempts_by_item(record) -> dict:
    by_item: dict = {}
    for run in record.runs:
        for attempt in run.attempts.all():
            by_item.setdefault(attempt.item_id, []).append(attempt)
    for attempts in by_item.values():
        attempts.sort(key=lambda a: (a.number, a.id))
    return by_item


def vm_rows(record) -> list[VmRow]:
    """Per VM: the outcome of its last attempt, with its times, downtime, bytes, passes."""
    plan_policy = record.plan.get_policy()
    by_item = _attempts_by_item(record)
    rows = []
    for item in record.items:
        attempts = by_item.get(item.pk, [])
        last = attempts[-1] if attempts else None
        policy = (
            plan_policy.with_overrides(item.policy_overrides) if item.policy_overrides else None
        )
        max_ms = (policy or plan_policy).max_downtime_ms
        outcome = (
            attempt_outcome(last.status, last.migrate_called_at is not None, last.kind)
            if last
            else NOT_RUN
        )
        downtime = last.downtime_ms if last and outcome == COMPLETED else None
        rows.append(
            VmRow(
                item_id=item.pk,
                vm=item.vm.name,
                vm_uuid=str(item.vm.uuid),
                source=item.source_host.name,
                destination=item.destination_host.name if item.destination_host else None,
                mode=item.mode,
                outcome=outcome,
                outcome_label=LABELS[outcome],
                attempts=len(attempts),
                driver=last.driver if last else "",
                started_at=attempts[0].started_at if attempts else None,
                finished_at=last.finished_at if last else None,
                total_time_ms=last.total_time_ms if last else None,
                downtime_ms=downtime,
                max_downtime_ms=max_ms,
                over_max=downtime is not None and downtime > max_ms,
                bytes_transferred=last.bytes_transferred if last else None,
                iterations=last.iterations if last else None,
                error_class=last.error_class if last else "",
                error_message=last.error_message if last else "",
            )
        )
    return rows


def outcome_counts(rows: list[VmRow]) -> dict:
    """How many VMs ended in each outcome (every outcome listed, zeros included)."""
    counts = dict.fromkeys((*OUTCOMES, NOT_RUN), 0)
    for row in rows:
        counts[row.outcome] += 1
    return counts


def headline(counts: dict, total: int) -> str:
    """'5 of 6 completed, 1 rolled back' (outcomes with no VM are left out)."""
    parts = [f"{counts.get(COMPLETED, 0)} of {total} completed"]
    for outcome in (*OUTCOMES[1:], NOT_RUN):
        if counts.get(outcome):
            parts.append(f"{counts[outcome]} {LABELS[outcome]}")
    return ", ".join(parts)


def _downtime(rows: list[VmRow], plan_max_ms: int) -> dict:
    measured = [r for r in rows if r.downtime_ms is not None]
    if not measured:
        return {"measured": 0, "max_allowed_ms": plan_max_ms, "over_max": []}
    worst = max(measured, key=lambda r: (r.downtime_ms, r.vm))
    return {
        "measured": len(measured),
        "worst_ms": worst.downtime_ms,
        "worst_vm": worst.vm,
        "median_ms": statistics.median(r.downtime_ms for r in measured),
        "max_allowed_ms": plan_max_ms,
        # Items may allow more (or less) than the plan through their policy overrides.
        "over_max": [
            {"vm": r.vm, "downtime_ms": r.downtime_ms, "max_allowed_ms": r.max_downtime_ms}
            for r in measured
            if r.over_max
        ],
    }


def _people(record) -> list[dict]:
    plan = record.plan
    people = [{"role": "drafted", "who": plan.author_name or "—", "at": plan.created_at}]
    submits = [e for e in record.events if e.action == "plan.submit"]
    if submits:
        people.append(
            {"role": "submitted", "who": submits[-1].actor_name, "at": submits[-1].created_at}
        )
    for approval in record.approvals:
        if (
            approval.decision == "approved"
            and approval.voided_at is None
            and approval.content_hash == plan.content_hash
        ):
            people.append(
                {"role": "approved", "who": approval.approver_name, "at": approval.created_at}
            )
    for run in record.runs:
        people.append({"role": "started", "who": run.started_by_name or "—", "at": run.started_at})
    return people


def _accepted_warnings(record) -> list[dict]:
    by_check: dict = {}
    for result in record.check_results:
        if result.severity == "warning":
            by_check.setdefault(result.check_id, []).append(result)
    approvers = ", ".join(
        a.approver_name
        for a in record.approvals
        if a.decision == "approved"
        and a.voided_at is None
        and a.content_hash == record.plan.content_hash
    )
    out = []
    for check_id, results in sorted(by_check.items()):
        names = [r.vm_name or "the plan" for r in results]
        shown = ", ".join(names[:WARNINGS_NAMED])
        if len(names) > WARNINGS_NAMED:
            shown += f" and {len(names) - WARNINGS_NAMED} more"
        out.append(
            {
                "kind": "warning accepted",
                "text": f"{check_id} on {shown}: {results[0].message}",
                "who": approvers or "—",
                "at": None,
            }
        )
    return out


def _deviations(record, rows: list[VmRow]) -> list[dict]:
    out = []
    for run in record.runs:
        if run.override_reason:
            out.append(
                {
                    "kind": "override",
                    "text": f"Started outside its maintenance window: {run.override_reason}",
                    "who": run.started_by_name or "—",
                    "at": run.started_at,
                }
            )
    for item in record.items:
        if item.policy_overrides:
            values = ", ".join(f"{k}={v}" for k, v in sorted(item.policy_overrides.items()))
            out.append(
                {
                    "kind": "override",
                    "text": f"{item.vm.name} moved under its own policy ({values}).",
                    "who": "—",
                    "at": None,
                }
            )
    out.extend(_accepted_warnings(record))
    names = {row.item_id: row.vm for row in rows}
    retried = {}
    for event in record.events:
        if event.action == "item.retry" and event.object_type == "migrations_app.planitem":
            retried.setdefault(int(event.object_id), []).append(event)
    for row in rows:
        if row.attempts > 1:
            events = retried.get(row.item_id, [])
            who = ", ".join(sorted({e.actor_name for e in events})) or "—"
            out.append(
                {
                    "kind": "retry",
                    "text": f"{row.vm}: {row.attempts} attempts; the last {row.outcome_label}.",
                    "who": who,
                    "at": events[-1].created_at if events else None,
                }
            )
    for event in record.events:
        label = OPERATOR_ACTIONS.get(event.action)
        if label is None and event.action in MANUAL_FINISH and event.actor_type == "user":
            label = "finished the run by hand"
        if label is None:
            continue
        target = ""
        if event.object_type == "migrations_app.planitem":
            target = f" ({names.get(int(event.object_id), 'item ' + event.object_id)})"
        reason = f": {event.reason}" if event.reason else ""
        out.append(
            {
                "kind": "operator action",
                "text": f"{label.capitalize()}{target}{reason}",
                "who": event.actor_name,
                "at": event.created_at,
            }
        )
    return out


def _rehearsal_speed(record) -> float | None:
    """The rehearsal speed the run's attempts reported (None: a real run)."""
    for run in record.runs:
        for attempt in run.attempts.all():
            if attempt.driver == "rehearsal":
                prepared = (attempt.evidence or {}).get("prepare") or {}
                return float(prepared.get("speed") or 1.0)
    return None


def summary_build(record, rows: list[VmRow] | None = None) -> Summary:
    """The first screen of the change record (see the module docstring)."""
    rows = vm_rows(record) if rows is None else rows
    counts = outcome_counts(rows)
    runs = record.runs
    started = runs[0].started_at if runs else None
    finished = runs[-1].finished_at if runs else None
    elapsed = (finished - started).total_seconds() if started and finished else None
    estimate = (
        (record.evidence_run.estimate or {}).get("makespan_s") if record.evidence_run else None
    )
    speed = _rehearsal_speed(record)
    versus = None
    if elapsed is not None and estimate and speed is None:
        versus = round((elapsed - estimate) / estimate * 100, 1)
    return Summary(
        items=len(rows),
        counts=counts,
        headline=headline(counts, len(rows)),
        started_at=started,
        finished_at=finished,
        elapsed_s=round(elapsed, 1) if elapsed is not None else None,
        estimate_s=round(float(estimate), 1) if estimate is not None else None,
        vs_estimate_pct=versus,
        rehearsal_speed=speed,
        downtime=_downtime(rows, record.plan.get_policy().max_downtime_ms),
        people=_people(record),
        change_ticket=record.plan.change_ticket,
        deviations=_deviations(record, rows),
        chain_head=record.chain_head,
    )
