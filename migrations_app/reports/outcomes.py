"""What became of an attempt, in the words a change board uses.

- completed: the VM runs on its destination.
- rolled back: the transfer started and did not complete; the VM runs on its source (the
  runner and the reconciler only record failed or cancelled after a started transfer when
  they saw the VM running on its source and nowhere else; anything else needs an operator).
- failed: the attempt ended before the transfer started (preflight, prepare): nothing moved.
- cancelled: an operator cancelled it before the transfer started.
- needs attention: Ferry could not tell where the VM runs; an operator must look.

A migrate-back after a failed validation (an attempt of kind "rollback") that completed is
"rolled back" too: the VM runs on its source again.

One function for rows already loaded and one Q for querysets, so pages, reports and the
history API name the same attempts the same way.
"""

from django.db.models import Q

COMPLETED = "completed"
ROLLED_BACK = "rolled_back"
FAILED = "failed"
CANCELLED = "cancelled"
NEEDS_ATTENTION = "needs_attention"
NOT_RUN = "not_run"

# The outcomes of a finished attempt, in the order summaries list them.
OUTCOMES = (COMPLETED, ROLLED_BACK, FAILED, CANCELLED, NEEDS_ATTENTION)
LABELS = {
    COMPLETED: "completed",
    ROLLED_BACK: "rolled back",
    FAILED: "failed",
    CANCELLED: "cancelled",
    NEEDS_ATTENTION: "needs an operator",
    NOT_RUN: "not run",
}
FINISHED_STATUSES = ("completed", "failed", "cancelled", "needs_attention")


def attempt_outcome(status: str, migrate_called: bool, kind: str = "move") -> str:
    """The outcome of one attempt from its status, whether its transfer was started, and
    its kind (a completed migrate-back is a rollback)."""
    if status == "completed":
        return ROLLED_BACK if kind == "rollback" else COMPLETED
    if status == "needs_attention":
        return NEEDS_ATTENTION
    if status in ("failed", "cancelled"):
        if migrate_called:
            return ROLLED_BACK
        return FAILED if status == "failed" else CANCELLED
    return NOT_RUN


def outcome_q(outcome: str, prefix: str = "") -> Q:
    """A filter on ItemAttempt (or through `prefix`, e.g. "attempts__") for one outcome."""
    status, called = f"{prefix}status", f"{prefix}migrate_called_at__isnull"
    back = Q(**{status: "completed", f"{prefix}kind": "rollback"})
    if outcome == COMPLETED:
        return Q(**{status: "completed"}) & ~back
    if outcome == NEEDS_ATTENTION:
        return Q(**{status: "needs_attention"})
    if outcome == ROLLED_BACK:
        return Q(**{f"{status}__in": ("failed", "cancelled"), called: False}) | back
    if outcome in (FAILED, CANCELLED):
        return Q(**{status: outcome, called: True})
    raise ValueError(f"unknown outcome {outcome!r}")
