"""Named moments of a move where a test injects a real fault at the right time.

The lab tests kill a libvirt daemon between two pivots, pause or crash the guest the moment
verify starts, and so on: real faults on real hosts, but their timing must fall inside a
window of milliseconds that only the engine knows. The engine calls `point(name)` at those
moments; nothing is armed outside tests (arming is a Python call, never a setting or an
input), so in production a point costs one dictionary lookup.
"""

from collections.abc import Callable
from contextlib import contextmanager

_ARMED: dict[str, Callable] = {}


def point(name: str, **context) -> None:
    """The engine reached `name`: run the fault armed there, once."""
    action = _ARMED.pop(name, None)
    if action is not None:
        action(**context)


@contextmanager
def armed(name: str, action: Callable):
    """Arm `action` (called with the point's context) at `name` for the block's duration."""
    _ARMED[name] = action
    try:
        yield
    finally:
        _ARMED.pop(name, None)
