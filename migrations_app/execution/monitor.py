"""Following one transfer: samples about once a second, the policy's answers to a stall,
cancel, the completion timeout and the watchdog, and post-copy, during which nothing may
abort the move.

`TransferMonitor.run()` returns None when the transfer call succeeded, else the
classified failure; the runner decides what happens next.
"""

import logging
import time

from django.conf import settings
from django.utils import timezone

from migrations_app.execution import errors, services
from migrations_app.execution.drivers.base import ReadError
from migrations_app.execution.guard import LeaseLost
from migrations_app.execution.stats import StallDetector
from migrations_app.models import ItemAttempt

logger = logging.getLogger("ferry.execution.monitor")

P = ItemAttempt.Phase


def phase_enter(attempt, guard, phase) -> None:
    """Enter a phase, or stop: another worker owns the attempt."""
    if not services.attempt_phase(attempt=attempt, worker=guard.worker, phase=phase):
        raise LeaseLost()


class TransferMonitor:
    """Follows one transfer until its call returns and applies the policy meanwhile."""

    ABORT_GIVE_UP_S = 60  # an abort that has not ended the job by then: an operator looks
    ABORT_REPEAT_S = 5  # an abort sent in the setup phase may be ignored: send it again
    READ_FAILURES_BEFORE_RECONNECT = 5

    def __init__(self, attempt, guard, session, policy, *, scale: float, timeout_s: float):
        self.attempt, self.guard, self.session, self.policy = attempt, guard, session, policy
        self.interval = float(settings.FERRY_SAMPLE_SECONDS)
        self.watchdog = float(settings.FERRY_WATCHDOG_SECONDS) * scale
        self.timeout = timeout_s
        self.started = time.monotonic()
        if attempt.migrate_called_at is not None and attempt.phase != P.QUEUED:
            # Re-attached: count from the original call, not from now.
            self.started -= (timezone.now() - attempt.migrate_called_at).total_seconds()
        self.last_progress = time.monotonic()
        self.last_processed = -1
        self.abort_reason: errors.ExecutionError | None = None
        self.abort_at: float | None = None
        self.refused: set[str] = set()  # abort reasons refused during post-copy (noted once)
        self.downtime_set = False
        self.steps = list(policy.downtime_steps_ms)
        self.next_step_iteration = 0
        self.acted = False
        self.stall = StallDetector(window_s=max(10.0, 10 * self.interval))
        self.read_failures = 0
        self.postcopy = attempt.postcopy_at is not None

    def run(self) -> errors.ExecutionError | None:
        while True:
            cancel = self.guard.beat()
            try:
                finished, error = self.session.outcome()
            except ReadError as exc:
                self._read_failed(exc)
                finished, error = False, None
            if finished:
                return self._result(error)
            self._note_postcopy()
            try:
                stats = self.session.poll()
                self.read_failures = 0
            except ReadError as exc:
                self._read_failed(exc)
                stats = None
            now = time.monotonic()
            if stats:
                self.on_sample(stats, now)
            given_up = self.check_limits(now, cancel)
            if given_up is not None:
                return given_up
            time.sleep(self.interval)

    def _read_failed(self, exc) -> None:
        """A read that says nothing about the job: retry, and reconnect after a few."""
        self.read_failures += 1
        logger.info("attempt %s: libvirt read failed (%s)", self.attempt.pk, exc)
        if self.read_failures % self.READ_FAILURES_BEFORE_RECONNECT == 0:
            if self.session.reconnect():
                logger.warning("attempt %s: reconnected to follow the job", self.attempt.pk)

    def _note_postcopy(self) -> None:
        """Record once, as soon as libvirt says so, that post-copy began."""
        if self.postcopy or not self.session.postcopy_active():
            return
        self.postcopy = True
        services.attempt_postcopy_record(attempt=self.attempt, worker=self.guard.worker)

    def _result(self, error) -> errors.ExecutionError | None:
        if self.abort_reason is None:
            return error
        if error is not None and getattr(error, "libvirt_message", ""):
            self.abort_reason.libvirt_message = error.libvirt_message
        return self.abort_reason

    def on_sample(self, stats: dict, now: float) -> None:
        """Store the sample, note progress, and act on a stalled pre-copy."""
        attempt, policy = self.attempt, self.policy
        elapsed_ms = int((now - self.started) * 1000)
        services.attempt_sample(attempt=attempt, stats=stats, elapsed_ms=elapsed_ms)
        processed = stats.get("data_processed") or stats.get("memory_processed") or 0
        if processed != self.last_processed:
            self.last_processed, self.last_progress = processed, now
        if not self.downtime_set and attempt.item.mode != "storage_only":
            if not self.session.set_max_downtime(policy.max_downtime_ms):
                services.attempt_note(
                    attempt=attempt,
                    kind="item.policy_refused",
                    payload={"max_downtime_ms": policy.max_downtime_ms},
                )
            self.downtime_set = True
        stalled = self.stall.add(now, stats)
        if self.abort_reason is not None or self.postcopy or not stalled:
            return
        iteration = stats.get("memory_iteration") or 0
        self.converge(stats, iteration)
        if policy.on_no_convergence == "raise_downtime" and iteration >= self.next_step_iteration:
            self.next_step_iteration = iteration + 2
        if policy.on_no_convergence == "abort":
            self.abort_reason = errors.ExecutionError(
                errors.NOT_CONVERGING, errors.EXPLANATIONS[errors.NOT_CONVERGING]
            )
            self.abort_at = now

    def _limit_hit(self, now: float, cancel: bool) -> errors.ExecutionError | None:
        if cancel:
            return errors.ExecutionError(
                errors.ABORTED_BY_OPERATOR, errors.EXPLANATIONS[errors.ABORTED_BY_OPERATOR]
            )
        if now - self.started > self.timeout:
            return errors.ExecutionError(
                errors.TIMEOUT,
                f"{errors.EXPLANATIONS[errors.TIMEOUT]} (limit {self.timeout:.0f} s)",
            )
        if now - self.last_progress > self.watchdog:
            return errors.ExecutionError(
                errors.NO_PROGRESS,
                f"{errors.EXPLANATIONS[errors.NO_PROGRESS]} (no progress for {self.watchdog:.0f} s)",
            )
        return None

    def check_limits(self, now: float, cancel: bool) -> errors.ExecutionError | None:
        """Cancel, timeout and watchdog; repeats an abort, and gives up on one that hangs.
        During post-copy each is refused (noted once): the guest runs on the destination."""
        if self.abort_reason is None:
            reason = self._limit_hit(now, cancel)
            if reason is None:
                return None
            if self.postcopy:
                if reason.error_class not in self.refused:
                    self.refused.add(reason.error_class)
                    services.attempt_note(
                        attempt=self.attempt,
                        kind="item.abort_refused",
                        payload={
                            "error_class": reason.error_class,
                            "message": reason.message,
                            "why": "Post-copy is running: the guest already runs on the "
                            "destination; aborting would lose it. Ferry lets it finish.",
                        },
                    )
                return None
            self.abort_reason, self.abort_at = reason, now
            services.attempt_note(
                attempt=self.attempt,
                kind="item.aborting",
                payload={"error_class": reason.error_class, "message": reason.message},
            )
            self.session.abort()
        elif self.abort_at is not None and now - self.abort_at > self.ABORT_GIVE_UP_S:
            return errors.ExecutionError(
                errors.AMBIGUOUS,
                "The job was aborted but did not stop within 60 s; an operator must look.",
            )
        elif (
            self.abort_at is not None
            and now - self.abort_at > self.ABORT_REPEAT_S
            and int(now - self.abort_at) % self.ABORT_REPEAT_S == 0
            and not self.postcopy
        ):
            self.session.abort()
        return None

    def converge(self, stats: dict, iteration: int) -> None:
        """Apply the policy's answer to a stalled pre-copy (recorded as evidence)."""
        attempt, policy = self.attempt, self.policy
        action = policy.on_no_convergence
        payload = {"policy": action, "iteration": iteration, "stall": self.stall.evidence()}
        if not self.acted:
            phase_enter(attempt, self.guard, P.CONVERGE)
        if action == "raise_downtime":
            if iteration < self.next_step_iteration or not self.steps:
                return
            value = self.steps.pop(0)
            self.session.set_max_downtime(value)
            payload["max_downtime_ms"] = value
        elif self.acted:
            return  # auto-converge, post-copy and abort act once
        elif action == "auto_converge":
            payload["throttle_pct"] = stats.get("auto_converge_throttle")
        elif action == "postcopy":
            # Recorded before the call: from here on the source is never resumed, even if
            # the worker dies before libvirt answers.
            services.attempt_postcopy_record(attempt=attempt, worker=self.guard.worker)
            self.postcopy = True
            self.session.start_postcopy()
            payload["postcopy"] = "started"
        elif action == "abort":
            self.session.abort()
        self.acted = True
        services.attempt_note(attempt=attempt, kind="item.converge", payload=payload)
        services.attempt_evidence(
            attempt=attempt,
            worker=self.guard.worker,
            key="converge",
            value={**(attempt.evidence or {}).get("converge", {}), str(iteration): payload},
        )
