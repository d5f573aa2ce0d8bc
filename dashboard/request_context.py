"""Who is acting and from where, for the audit trail, carried in a context variable so
services can record it without every caller passing the request down."""

import contextvars
from dataclasses import dataclass


@dataclass(frozen=True)
class RequestContext:
    """The request (or job) on whose behalf a service runs."""

    request_id: str = ""
    source_address: str = ""
    user_agent: str = ""


_current: contextvars.ContextVar[RequestContext] = contextvars.ContextVar(
    "ferry_request_context",
    default=RequestContext(),  # noqa: B039 - frozen dataclass, immutable
)


def current_context() -> RequestContext:
    """The context of the running request or job (empty outside one)."""
    return _current.get()


def set_context(context: RequestContext) -> contextvars.Token:
    """Bind a context; pass the returned token to reset_context when done."""
    return _current.set(context)


def reset_context(token: contextvars.Token) -> None:
    """Restore the previous context."""
    _current.reset(token)
