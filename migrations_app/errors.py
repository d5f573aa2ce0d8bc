"""Errors of plan services, written for the person who made the request."""


class PlanError(ValueError):
    """Input a plan service cannot accept (the API answers 400 with the message)."""


class PlanStateError(PlanError):
    """The plan's state does not allow the edit (the API answers 409 with the message)."""
