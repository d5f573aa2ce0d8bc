"""Errors of plan and run services, written for the person who made the request."""

from dashboard.errors import InputError, StateConflict


class PlanError(InputError):
    """Input a plan service cannot accept (400)."""


class PlanStateError(StateConflict):
    """The plan's state does not allow the edit (409)."""


class TransitionError(StateConflict):
    """The plan's state does not allow the workflow action (409)."""


class ExecutionStateError(StateConflict):
    """The run or item is not in a state that allows the action (409)."""
