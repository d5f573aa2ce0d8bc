"""The plan state machine: which transitions are legal. Services consult it; nothing else
changes a plan's status."""

from dashboard.permissions import actor_scope, can, in_scope
from migrations_app.errors import TransitionError
from migrations_app.models import MigrationPlan
from migrations_app.scoping import plan_host_groups
from migrations_app.selectors.approvals import (
    approval_excluded_reason,
    approvals_required,
    approvals_valid_count,
)

S = MigrationPlan.Status

# from-state -> the states it may move to
TRANSITIONS: dict[str, frozenset[str]] = {
    S.DRAFT: frozenset({S.SUBMITTED, S.CANCELLED}),
    S.SUBMITTED: frozenset({S.APPROVED, S.REJECTED, S.DRAFT, S.CANCELLED}),
    S.APPROVED: frozenset({S.SCHEDULED, S.RUNNING, S.DRAFT, S.CANCELLED}),
    S.REJECTED: frozenset({S.DRAFT, S.CANCELLED}),
    S.SCHEDULED: frozenset({S.RUNNING, S.DRAFT, S.CANCELLED}),
    S.RUNNING: frozenset({S.PAUSED, S.COMPLETED, S.FAILED, S.PARTIALLY_COMPLETED, S.CANCELLED}),
    S.PAUSED: frozenset({S.RUNNING, S.COMPLETED, S.FAILED, S.PARTIALLY_COMPLETED, S.CANCELLED}),
    S.COMPLETED: frozenset(),
    S.FAILED: frozenset(),
    S.PARTIALLY_COMPLETED: frozenset(),
    S.CANCELLED: frozenset(),
}


def can_transition(current: str, target: str) -> bool:
    """Whether a plan in `current` may move to `target`."""
    return target in TRANSITIONS.get(current, frozenset())


def require_transition(plan: MigrationPlan, target: str, action: str) -> None:
    """Raise TransitionError with a readable message unless the move is legal."""
    if not can_transition(plan.status, target):
        raise TransitionError(
            f"Cannot {action} plan '{plan.name}': it is {plan.get_status_display()}"
            + (" (a finished plan stays finished)." if plan.is_terminal else ".")
        )


# The buttons a person may be offered, in the order pages show them: (action, the status
# the plan moves to, the role permission it needs). The services still decide.
_OFFERS = (
    ("submit", S.SUBMITTED, "plan.submit"),
    ("approve", S.APPROVED, "plan.approve"),
    ("reject", S.REJECTED, "plan.approve"),
    ("start", S.RUNNING, "plan.run"),
    ("hold", None, "plan.run"),
    ("release", None, "plan.run"),
    ("pause", S.PAUSED, "plan.run"),
    ("resume", S.RUNNING, "plan.run"),
)
_PRE_RUN = frozenset({S.DRAFT, S.SUBMITTED, S.APPROVED, S.REJECTED, S.SCHEDULED})


def available_actions(plan: MigrationPlan, user) -> list[str]:
    """The workflow actions worth offering `user` on `plan` now, derived from TRANSITIONS,
    the role matrix and the four-eyes rule (pages and the API ask this one function)."""
    status = plan.status
    offered = []
    groups = plan_host_groups(plan)  # a role scoped to host groups must reach all of them
    for action, target, permission in _OFFERS:
        if not _reaches(user, permission, groups):
            continue
        if action in ("approve", "reject"):
            if approval_excluded_reason(plan, user):
                continue
            reapproval = (
                action == "approve"
                and status == S.APPROVED
                and approvals_valid_count(plan) < approvals_required()
            )
            if status != S.SUBMITTED and not reapproval:
                continue
        elif action == "start":
            if status not in (S.APPROVED, S.SCHEDULED):
                continue  # PAUSED → RUNNING is resume, not start
        elif action in ("hold", "release"):
            if status not in (S.APPROVED, S.SCHEDULED) or plan.hold != (action == "release"):
                continue
        elif action == "resume":
            if status != S.PAUSED:
                continue
        elif not can_transition(status, target):
            continue
        offered.append(action)
    if can_transition(status, S.CANCELLED) and (
        _reaches(user, "plan.run", groups)
        or (status in _PRE_RUN and _reaches(user, "plan.edit", groups))
    ):
        offered.append("cancel")
    return offered


def _reaches(user, permission: str, groups) -> bool:
    return can(user, permission) and in_scope(actor_scope(user, permission), groups)
