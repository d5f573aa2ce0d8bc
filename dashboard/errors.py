"""The errors every Ferry service may raise for a person to read, whatever the domain.

Services raise these (or their domain subclasses) with a message written for the person
who asked; the API maps them in one place (dashboard.api.errors: InputError → 400,
StateConflict → 409) and pages show the message (dashboard.permissions). A
refusal by role is Django's PermissionDenied (403), which both already understand.
"""


class FerryError(Exception):
    """A refusal Ferry can explain: the message says what is wrong and what to do."""


class InputError(FerryError, ValueError):
    """The request itself cannot be accepted (bad or missing input): HTTP 400."""


class StateConflict(FerryError):
    """The object's current state does not allow the action: HTTP 409."""


class TooManyRequests(FerryError):
    """A costly action asked for too often; try again later: HTTP 429."""
