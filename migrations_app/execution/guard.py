"""Fencing and bounded calls: a worker acts on a hypervisor only while it provably owns the
attempt, and no libvirt call can hold it past its lease.

Ownership is a lease with an epoch (claims.py): every claim and every take-over by the
reconciler increments the epoch. Right before each side effect (migrate, abort, pivot,
resume, pause, destroy, undefine, delete, autostart) the Guard checks, in this order:
- that its own last successful heartbeat is younger than the lease less a margin (a worker
  stopped by SIGSTOP, a long GC pause or a frozen VM wakes up with an old heartbeat and
  refuses at once, without asking anyone);
- that the database still shows this worker, this epoch and a lease in the future.
A refusal raises LeaseLost and is logged on the `ferry.execution.fencing` logger: the new
owner decides.

Calls run in a helper thread while the runner's thread keeps renewing the lease, so a call
that hangs (a hung NFS pool refresh, a job-lock wait) neither starves the heartbeat nor
blocks the worker forever: after its timeout the attempt fails with a classified error.

The window left: a worker that passes both checks and is frozen in the microseconds before
libvirt receives its call acts late. libvirt offers no token to carry into the call; the
margin keeps that window far inside the lease the reconciler waits out.
"""

import logging
import threading
import time

from django.conf import settings

from migrations_app.execution import claims, errors

logger = logging.getLogger("ferry.execution.fencing")


class LeaseLost(Exception):
    """Another worker (the reconciler) owns the attempt now: stop without touching anything."""


class Guard:
    """One worker's hold on one attempt: heartbeats, the fencing check, bounded calls."""

    def __init__(self, attempt_id: int, worker: str, epoch: int):
        self.attempt_id = attempt_id
        self.worker = worker
        self.epoch = epoch
        self.last_beat = time.monotonic()
        self.cancel_requested = False
        self.force_requested = False
        self.lost = False
        self.abandoned_calls = 0  # calls that timed out and may still be running in libvirt

    @staticmethod
    def lease() -> float:
        return claims.lease_seconds()

    def margin(self) -> float:
        """How much younger than the lease the last heartbeat must be to act on it."""
        return max(1.0, self.lease() / 3)

    def beat(self) -> bool:
        """Renew the lease (LeaseLost when another worker owns it); returns whether a
        cancel was requested."""
        owned, cancel, force = claims.heartbeat(self.attempt_id, self.worker, self.epoch)
        if not owned:
            self.lost = True
            logger.warning(
                "fencing: attempt %s: worker %s lost its lease (epoch %s); it acts no more",
                self.attempt_id,
                self.worker,
                self.epoch,
            )
            raise LeaseLost()
        self.last_beat = time.monotonic()
        self.cancel_requested = cancel
        self.force_requested = force
        return cancel

    def fence(self, action: str) -> None:
        """Raise LeaseLost unless this worker may act on the hypervisor right now."""
        age = time.monotonic() - self.last_beat
        reason = ""
        if self.lost:
            reason = "the lease was lost earlier"
        elif age > self.lease() - self.margin():
            reason = f"its last heartbeat is {age:.1f} s old (lease {self.lease():.0f} s)"
        elif not claims.owns(self.attempt_id, self.worker, self.epoch):
            reason = "the database shows another owner or an expired lease"
        if reason:
            self.lost = True
            logger.warning(
                "fencing: refused %s on attempt %s by worker %s (epoch %s): %s",
                action,
                self.attempt_id,
                self.worker,
                self.epoch,
                reason,
            )
            raise LeaseLost()

    def act(self, action: str, function, *args, timeout: float | None = None, **kwargs):
        """A side effect on a hypervisor: fenced first, then bounded like a read."""
        self.fence(action)
        return self.call(action, function, *args, timeout=timeout, **kwargs)

    def call(self, what: str, function, *args, timeout: float | None = None, **kwargs):
        """Run a libvirt call in a helper thread, renewing the lease while it runs; an
        ExecutionError(CALL_TIMEOUT) when it does not answer within the timeout."""
        timeout = float(timeout or settings.FERRY_LIBVIRT_CALL_SECONDS)
        box: dict = {}

        def run():
            try:
                box["value"] = function(*args, **kwargs)
            except BaseException as exc:  # handed to the caller's thread below
                box["error"] = exc

        thread = threading.Thread(target=run, name=f"libvirt {what}", daemon=True)
        started = time.monotonic()
        thread.start()
        beat_every = max(0.5, self.lease() / 4)
        while True:
            thread.join(min(0.5, beat_every))
            if not thread.is_alive():
                break
            now = time.monotonic()
            if now - self.last_beat >= beat_every:
                self.beat()
            if now - started > timeout:
                self.abandoned_calls += 1
                raise errors.ExecutionError(
                    errors.CALL_TIMEOUT,
                    f"libvirt did not answer '{what}' within {timeout:.0f} s; the call was "
                    "left running and the attempt stopped acting.",
                )
        if "error" in box:
            raise box["error"]
        return box.get("value")


class Unguarded(Guard):
    """For sessions used outside an owned attempt (tests of a session, a read-only look):
    calls are bounded, nothing is fenced, no lease is renewed."""

    def __init__(self):
        super().__init__(attempt_id=0, worker="", epoch=0)

    def beat(self) -> bool:
        self.last_beat = time.monotonic()
        return False

    def fence(self, action: str) -> None:
        return None
