"""Execution knobs: a Django setting when the project defines one, else the environment
variable of the same name, else the default (so worker processes started with only an
environment, e.g. by tests or systemd units, get the same values)."""

import os

from django.conf import settings

DEFAULTS = {
    "FERRY_REHEARSAL_SPEED": 20.0,  # simulated seconds per real second
    "FERRY_SAMPLE_SECONDS": 1.0,  # jobStats sampling interval
    "FERRY_LEASE_SECONDS": 30.0,  # claim lifetime without a heartbeat
    "FERRY_WATCHDOG_SECONDS": 60.0,  # abort a transfer that makes no progress this long
    "FERRY_TICK_SECONDS": 10.0,  # periodic reconcile / auto-start / window pass
    "FERRY_WORKER_POLL_SECONDS": 1.0,  # queue poll when no wake-up came (execution.wakeup)
}


def number(name: str) -> float:
    """The float value of an execution knob."""
    value = getattr(settings, name, None)
    if value is None:
        value = os.environ.get(name) or DEFAULTS[name]
    return float(value)
