"""The plan state machine: which transitions are legal. Services consult it; nothing else
changes a plan's status."""

from migrations_app.models import MigrationPlan

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


class TransitionError(Exception):
    """The plan's state does not allow the action (the API answers 409 with the message)."""


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
