"""What a status link may show (M4 of the security review): the stream and snapshot built
for people without an account, from an allowlist of fields rather than a denylist.

A status link is meant for stakeholders outside Ferry. Error text and reasons are written
for operators: they can name hosts, URIs, ports and worker machines ("Source host kvm1:
could not connect to qemu+tls://kvm1.internal:16514/system ..."). So status streams get
their own channel-layer group with a redacted copy of each event, and the status page a
redacted snapshot:

- payload fields pass only when listed here, numbers and booleans as they are, words only
  when they are a lower-case identifier (a status, a phase, an error class);
- worker names, error messages, reasons and anything else are dropped; an error class
  becomes its fixed explanation, a reason a fixed phrase for its status;
- host names only when the link's creator chose to show them.
"""

import re

_WORD = re.compile(r"^[a-z][a-z0-9_.]{0,40}$")
_WORD_KEYS = frozenset({"status", "phase", "error_class", "outcome", "driver", "mode", "policy"})
_NUMBER_KEYS = frozenset(
    {
        "attempt",
        "number",
        "items",
        "iteration",
        "elapsed_ms",
        "memory_total",
        "memory_processed",
        "memory_remaining",
        "dirty_rate_bps",
        "transfer_bps",
        "disk_total",
        "disk_processed",
        "disk_remaining",
        "expected_downtime_ms",
        "throttle_pct",
        "total_time_ms",
        "downtime_ms",
        "iterations",
        "max_downtime_ms",
        "approvals",
    }
)
# What a stakeholder reads for an attempt's error class (execution.errors has the operators'
# version; these say less on purpose, and live here so that live/ need not import
# execution/, which imports live/).
EXPLANATIONS = {
    "connection_lost": "A host could not be reached during the move.",
    "cpu_incompatible": "The destination cannot run this VM's CPU model.",
    "no_space": "A host ran out of disk space for the VM's storage.",
    "timeout": "The move took too long and was stopped; the VM stays where it was.",
    "no_progress": "The move stopped making progress and was stopped.",
    "not_converging": "The VM changed its memory faster than it could be copied.",
    "aborted_by_operator": "An operator cancelled the move; the VM stays where it was.",
    "guest_died_after_switchover": "The VM stopped running after the move.",
    "preflight_blocked": "A final check found a problem; nothing was moved.",
    "worker_lost": "The worker running the move disappeared; the outcome was recorded.",
    "ambiguous_state": "An operator must confirm where the VM runs.",
    "storage_not_shared": "The VM's disks need a storage copy for this move.",
    "libvirt_error": "The hypervisor reported an error; the operators have the details.",
}
# The phrase a stakeholder reads instead of a status's reason.
STATUS_PHRASES = {
    "paused": "paused by an operator or by the plan's rules",
    "failed": "the plan failed; its operators have the details",
    "partially_completed": "some VMs could not be moved; its operators have the details",
    "cancelled": "cancelled",
    "needs_attention": "an operator must look at this VM",
    "rolled_back": "checked after the move and moved back to where it was",
}


def status_group(plan_id: int) -> str:
    """Channel-layer group of a plan's status-link streams (redacted events only)."""
    return f"status.{plan_id}"


def redacted_payload(payload: dict | None) -> dict:
    """The allowlisted part of an event payload, with error classes explained."""
    out = {}
    for key, value in (payload or {}).items():
        if (
            key in _NUMBER_KEYS
            and (value is None or isinstance(value, int | float | bool))
            or key in _WORD_KEYS
            and isinstance(value, str)
            and _WORD.match(value)
        ):
            out[key] = value
    if out.get("error_class") in EXPLANATIONS:
        out["explanation"] = EXPLANATIONS[out["error_class"]]
    return out


def status_event(message: dict) -> dict:
    """The redacted copy of a live event for status-link streams."""
    return {
        "run": message.get("run"),
        "plan": message.get("plan"),
        "seq": message.get("seq"),
        "kind": message.get("kind") if _WORD.match(str(message.get("kind") or "")) else "event",
        "item": message.get("item"),
        "at": message.get("at"),
        "payload": redacted_payload(message.get("payload")),
    }


def _reason(status: str, reason: str) -> str:
    return STATUS_PHRASES.get(status, "") if reason else ""


def _attempt(attempt: dict | None) -> dict | None:
    if attempt is None:
        return None
    kept = {
        k: attempt.get(k)
        for k in (
            "number",
            "phase",
            "status",
            "started_at",
            "finished_at",
            "total_time_ms",
            "downtime_ms",
            "iterations",
            "error_class",
        )
    }
    kept["error_message"] = EXPLANATIONS.get(attempt.get("error_class") or "", "")
    return kept


def status_snapshot(snapshot: dict) -> dict:
    """A plan snapshot (migrations_app.live.snapshots.plan_snapshot, hosts already redacted
    or not as the link says) with every free text replaced by its classified phrase."""
    plan = dict(snapshot["plan"])
    plan["status_reason"] = _reason(plan.get("status", ""), plan.get("status_reason", ""))
    items = []
    for item in snapshot["items"]:
        row = dict(item)
        row["status_reason"] = _reason(row.get("status", ""), row.get("status_reason", ""))
        row["attempt"] = _attempt(row.get("attempt"))
        items.append(row)
    return {**snapshot, "plan": plan, "items": items}
