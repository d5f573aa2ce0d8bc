"""Following one transfer: samples about once a second, the policy's answers to a stall
(its convergence schedule, one step per stalled window), cancel, force-complete, the
completion and progress timeouts (each with its action) and the watchdog, and post-copy,
during which nothing may abort the move.

`TransferMonitor.run()` returns None when the transfer call succeeded, else the
classified failure; the runner decides what happens next.
"""

import logging
import time

from django.conf import settings
from django.utils import timezone

from migrations_app.execution import errors, force_complete, services
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
        self.scale = scale
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
        self.schedule = policy.schedule
        self.fired: list[dict] = list((attempt.evidence or {}).get("convergence") or [])
        self.noted_auto_converge = False
        self.entered_converge = False
        self.stall = StallDetector(
            window_s=max(float(settings.FERRY_STALL_WINDOW_SECONDS) * scale, 3 * self.interval)
        )
        self.read_failures = 0
        self.postcopy = attempt.postcopy_at is not None
        self.force_completed = attempt.ferry_paused_source_at is not None
        # Progress: the lowest figure of data still to send, and when it was last lowered.
        self.progress_timeout = float(policy.progress_timeout_s) * scale
        self.lowest_remaining: int | None = None
        self.last_new_low = time.monotonic()
        self.timeouts_acted: set[str] = set()  # timeouts answered by post-copy/force-complete

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
            if self.guard.force_requested and not self.force_completed:
                self.force_complete("asked")
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
        """Store the sample, note progress, and answer a stalled pre-copy."""
        attempt, policy = self.attempt, self.policy
        elapsed_ms = int((now - self.started) * 1000)
        services.attempt_sample(attempt=attempt, stats=stats, elapsed_ms=elapsed_ms)
        processed = stats.get("data_processed") or stats.get("memory_processed") or 0
        if processed != self.last_processed:
            self.last_processed, self.last_progress = processed, now
        remaining = _remaining(stats)
        if remaining is not None and (
            self.lowest_remaining is None or remaining < self.lowest_remaining
        ):
            self.lowest_remaining, self.last_new_low = remaining, now
        if not self.downtime_set and attempt.item.mode != "storage_only":
            if not self.session.set_max_downtime(policy.max_downtime_ms):
                services.attempt_note(
                    attempt=attempt,
                    kind="item.policy_refused",
                    payload={"max_downtime_ms": policy.max_downtime_ms},
                )
            self.downtime_set = True
        stalled = self.stall.add(now, stats)
        if self.abort_reason is not None or self.postcopy or self.force_completed or not stalled:
            return
        self.converge(stats, now)

    def _limit_hit(self, now: float, cancel: bool) -> errors.ExecutionError | None:
        if cancel:
            self.attempt.refresh_from_db(fields=["preempted_by"])
            if self.attempt.preempted_by_id is not None:
                return errors.ExecutionError(
                    errors.PREEMPTED,
                    f"{errors.EXPLANATIONS[errors.PREEMPTED]} (urgent plan "
                    f"#{self.attempt.preempted_by_id})",
                )
            return errors.ExecutionError(
                errors.ABORTED_BY_OPERATOR, errors.EXPLANATIONS[errors.ABORTED_BY_OPERATOR]
            )
        if now - self.started > self.timeout and "completion" not in self.timeouts_acted:
            reason = errors.ExecutionError(
                errors.TIMEOUT,
                f"{errors.EXPLANATIONS[errors.TIMEOUT]} (limit {self.timeout:.0f} s)",
            )
            if self._timeout_answered("completion", self.policy.completion_timeout_action, reason):
                return None
            return reason
        if (
            self.progress_timeout
            and now - self.last_new_low > self.progress_timeout
            and "progress" not in self.timeouts_acted
        ):
            reason = errors.ExecutionError(
                errors.NO_PROGRESS,
                f"The data still to send has not gone below its lowest figure for "
                f"{self.progress_timeout:.0f} s (the policy's progress timeout).",
            )
            if self._timeout_answered("progress", self.policy.progress_timeout_action, reason):
                return None
            return reason
        if now - self.last_progress > self.watchdog:
            return errors.ExecutionError(
                errors.NO_PROGRESS,
                f"{errors.EXPLANATIONS[errors.NO_PROGRESS]} (no progress for {self.watchdog:.0f} s)",
            )
        return None

    def _timeout_answered(self, which: str, action: str, reason) -> bool:
        """A timeout whose policy action is post-copy or force-complete: take that action
        instead of aborting (once). False when the answer is to abort."""
        if action == "abort" or self.postcopy or self.attempt.item.mode == "storage_only":
            return False
        self.timeouts_acted.add(which)
        services.attempt_note(
            attempt=self.attempt,
            kind="item.timeout",
            payload={"timeout": which, "action": action, "message": reason.message},
        )
        self._record_step({"action": action, "why": f"{which} timeout"}, time.monotonic())
        if action == "postcopy":
            self.start_postcopy()
        elif not self.force_completed:
            self.force_complete(f"{which} timeout", by_policy=True)
        return True

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

    def converge(self, stats: dict, now: float) -> None:
        """A stalled window: fire the next step of the convergence schedule (recorded in the
        item's evidence with its time), then watch a whole new window before the next."""
        attempt = self.attempt
        if not self.entered_converge:
            phase_enter(attempt, self.guard, P.CONVERGE)
            self.entered_converge = True
        done = sum(1 for step in self.fired if step.get("why") == "stall")
        if done >= len(self.schedule):
            if self.policy.auto_converge and not self.noted_auto_converge:
                self.noted_auto_converge = True
                services.attempt_note(
                    attempt=attempt,
                    kind="item.converge",
                    payload={
                        "policy": "auto_converge",
                        "throttle_pct": stats.get("auto_converge_throttle"),
                        "stall": self.stall.evidence(),
                    },
                )
            return
        step = dict(self.schedule[done])
        step["why"] = "stall"
        step["stall"] = self.stall.evidence()
        self._record_step(step, now)
        action = step["action"]
        if action == "max_downtime":
            if not self.session.set_max_downtime(step["value"]):
                services.attempt_note(
                    attempt=attempt,
                    kind="item.policy_refused",
                    payload={"max_downtime_ms": step["value"]},
                )
        elif action == "postcopy":
            self.start_postcopy()
        elif action == "force_complete":
            self.force_complete("convergence schedule", by_policy=True)
        elif action == "abort":
            self.abort_reason = errors.ExecutionError(
                errors.NOT_CONVERGING, errors.EXPLANATIONS[errors.NOT_CONVERGING]
            )
            self.abort_at = now
            self.session.abort()
        self.stall.restart_window()

    def _record_step(self, step: dict, now: float) -> None:
        """A step of the schedule (or a timeout's action) fired: an event and evidence."""
        step = {**step, "at_s": round(now - self.started, 1), "at": timezone.now().isoformat()}
        self.fired.append(step)
        services.attempt_note(attempt=self.attempt, kind="item.converge", payload=step)
        services.attempt_evidence(
            attempt=self.attempt, worker=self.guard.worker, key="convergence", value=self.fired
        )

    def start_postcopy(self) -> None:
        # Recorded before the call: from here on the source is never resumed, even if the
        # worker dies before libvirt answers.
        services.attempt_postcopy_record(attempt=self.attempt, worker=self.guard.worker)
        self.postcopy = True
        self.session.start_postcopy()

    def force_complete(self, why: str, *, by_policy: bool = False) -> None:
        """Pause the guest on its source so the rest moves (recorded before the pause)."""
        attempt = self.attempt
        if self.postcopy or self.abort_reason is not None:
            return
        if by_policy:
            force_complete.policy_force_complete(attempt=attempt, worker=self.guard.worker, why=why)
        expected = force_complete.extra_downtime(attempt)
        force_complete.record_pause(attempt=attempt, worker=self.guard.worker)
        self.force_completed = True
        try:
            self.session.force_complete()
        except errors.ExecutionError as exc:
            services.attempt_note(
                attempt=attempt,
                kind="item.force_complete_failed",
                payload={"why": why, "message": exc.message},
            )
            return
        services.attempt_note(
            attempt=attempt, kind="item.force_complete", payload={"why": why, **expected}
        )
        services.attempt_evidence(
            attempt=attempt,
            worker=self.guard.worker,
            key="force_complete",
            value={"why": why, "at": timezone.now().isoformat(), **expected},
        )


def _remaining(stats: dict) -> int | None:
    """Data still to send: memory, plus disks still being mirrored."""
    memory = stats.get("memory_remaining")
    disk = stats.get("disk_remaining")
    if memory is None and disk is None:
        return None
    return int(memory or 0) + int(disk or 0)
