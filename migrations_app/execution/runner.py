"""The runner: one attempt, phase by phase.

preflight → prepare → transfer (→ converge) → switchover → verify → cleanup → done.
The runner holds the lease (a heartbeat every loop), makes the decisions the policy asks
for, and records every step through services; the driver session only talks to the
hypervisor. The transfer call is made at most once per attempt: `claims.mark_migrate_called`
must touch exactly one row right before it. After any failure both hosts are checked and
nothing is left paused (`session.make_safe`).
"""

import logging
import threading
import time

from django.conf import settings
from django.db import DatabaseError, transaction
from django.utils import timezone

from inventory.sync import host_capacity_refresh, host_sync, vm_refresh
from migrations_app.checks.cpu import cpu_compare_live, guest_arch_and_type, vm_cpu_xml
from migrations_app.execution import claims, errors, services
from migrations_app.execution.drivers import open_session
from migrations_app.execution.drivers.base import Session
from migrations_app.execution.drivers.rehearsal import speed as rehearsal_speed
from migrations_app.execution.preflight import item_preflight_findings
from migrations_app.execution.stats import stalled
from migrations_app.models import ItemAttempt

logger = logging.getLogger("ferry.execution.runner")

P = ItemAttempt.Phase
A = ItemAttempt.Status


class LeaseLost(Exception):
    """Another worker (the reconciler) owns the attempt now: stop without touching anything."""


def execute(attempt_id: int) -> str:
    """Claim a queued attempt and carry it out; returns what happened (for task results)."""
    worker = claims.worker_name()
    # The claim, the start (audit, events) and entering preflight commit together.
    with transaction.atomic():
        if not claims.claim(attempt_id, worker):
            # Delivered twice, cancelled before start, or already taken: never act twice.
            return "not claimed"
        attempt = services.attempt_load(attempt_id)
        services.attempt_started(attempt=attempt, worker=worker, phase=P.PREFLIGHT)
    return _drive(attempt, worker, reattach=False)


def reattach(attempt_id: int, worker: str) -> str:
    """Follow a transfer whose worker vanished (the caller has taken over the lease)."""
    attempt = services.attempt_load(attempt_id)
    services.attempt_started(attempt=attempt, worker=worker, reattached=True)
    return _drive(attempt, worker, reattach=True)


def _beat(attempt: ItemAttempt, worker: str) -> bool:
    """Renew the lease; raises LeaseLost; returns whether a cancel was requested."""
    owned, cancel = claims.heartbeat(attempt.pk, worker)
    if not owned:
        raise LeaseLost()
    return cancel


def _phase(attempt, worker, phase) -> None:
    if not services.attempt_phase(attempt=attempt, worker=worker, phase=phase):
        raise LeaseLost()


def _drive(attempt: ItemAttempt, worker: str, reattach: bool) -> str:
    session: Session | None = None
    policy = attempt.item.get_policy()
    try:
        session = open_session(attempt)
        if not reattach:
            findings = _preflight(attempt, session)
            blockers = [f for f in findings if f.get("severity") == "blocker"]
            if blockers:
                services.attempt_evidence(
                    attempt=attempt, worker=worker, key="preflight", value=findings
                )
                raise errors.ExecutionError(
                    blockers[0].get("error_class", errors.PREFLIGHT_BLOCKED),
                    "Preflight: " + "; ".join(f["message"] for f in blockers),
                    str(blockers[0].get("evidence", {}).get("libvirt", "")),
                )
            prepare_started = timezone.now().isoformat()
            try:
                prepared = session.prepare()
            except Exception:
                # The failure belongs to prepare; the checks that passed stay on record.
                services.attempt_evidence(
                    attempt=attempt, worker=worker, key="preflight", value=findings
                )
                _phase(attempt, worker, P.PREPARE)
                raise
            # Evidence, phases, the lease and the one-call gate: one commit, then the call.
            gate = services.attempt_transfer_begin(
                attempt=attempt,
                worker=worker,
                evidence={"preflight": findings, "prepare": prepared},
                prepare_started=prepare_started,
            )
            if gate == "cancelled":
                raise errors.ExecutionError(
                    errors.ABORTED_BY_OPERATOR, "Cancelled before the transfer started."
                )
            if gate != "go":
                raise LeaseLost()
            session.start()
        else:
            session.prepare()
            session.attach()
        failure = TransferMonitor(attempt, worker, session, policy).run()
        if failure is not None:
            raise failure
        _phase(attempt, worker, P.SWITCHOVER)
        stats = session.completed_stats()
        services.attempt_note(
            attempt=attempt,
            kind="item.switchover",
            payload={
                "downtime_ms": stats.get("downtime"),
                "total_time_ms": stats.get("time_elapsed"),
                "iterations": stats.get("memory_iteration"),
            },
        )
        _phase(attempt, worker, P.VERIFY)
        _verify(attempt, worker, session, policy)
        _phase(attempt, worker, P.CLEANUP)
        cleaned = session.cleanup(policy.remove_source_disks)
        services.attempt_finish(
            attempt=attempt,
            worker=worker,
            status=A.COMPLETED,
            stats=stats,
            evidence={"cleanup": cleaned, "reattached": reattach},
            disk_pools=session.new_disk_pools(),
        )
        return "completed"
    except LeaseLost:
        logger.warning("attempt %s: lease lost, leaving it to its new owner", attempt.pk)
        return "lease lost"
    except errors.ExecutionError as exc:
        return _fail(attempt, worker, session, exc)
    except DatabaseError:
        # Ferry's own database went away (failover, terminated backend), not the migration:
        # leave the attempt claimed; its lease expires and the reconciler asks libvirt for
        # the truth (requeue before the migrate call, re-attach after it).
        logger.warning("attempt %s: lost the database; leaving it to the reconciler", attempt.pk)
        raise
    except Exception as exc:
        if hasattr(exc, "get_error_message"):
            return _fail(attempt, worker, session, errors.from_libvirt(exc))
        logger.exception("attempt %s failed unexpectedly", attempt.pk)
        return _fail(
            attempt, worker, session, errors.ExecutionError(errors.LIBVIRT, str(exc), repr(exc))
        )
    finally:
        if session is not None:
            session.close()


def _blocked(findings) -> bool:
    return any(f.get("severity") == "blocker" for f in findings)


def _preflight(attempt, session) -> list[dict]:
    """The session's live checks, then the plan's checks on re-read inventory.

    The live checks only talk to libvirt; they run in a thread while this thread re-reads
    the inventory the plan's checks need (libvirt calls wait on the network, not on
    Python), so a move pays for the longer of the two instead of their sum.
    """
    if attempt.driver != ItemAttempt.Driver.LIBVIRT:
        return session.preflight()
    out: dict = {}

    def live() -> None:
        try:
            out["findings"] = session.preflight()
        except BaseException as exc:  # re-raised in the runner's thread below
            out["error"] = exc

    thread = threading.Thread(target=live, name=f"preflight-{attempt.pk}", daemon=True)
    thread.start()
    try:
        refreshed = _refresh_inventory(attempt, session)
    finally:
        thread.join()
    if "error" in out:
        raise out["error"]
    findings = out["findings"]
    if _blocked(findings):
        return findings
    return _with_plan_checks(attempt, session, findings, refreshed)


def _refresh_inventory(attempt, session) -> dict:
    """Re-read what the plan's checks read, on the session's open connections.

    The VM's own domain and the destination's capacity (a whole sync of both hosts, every
    domain and volume, costs more than the checks); each refresh falls back to a whole
    sync where a partial read could be wrong.
    """
    actor = services.worker_actor(attempt.driver)
    refreshed = {}
    try:
        refreshed["vm"] = vm_refresh(vm=attempt.item.vm, conn=session.src, actor=actor)
        refreshed["destination"] = host_capacity_refresh(
            host=attempt.destination_host, conn=session.dst or session.src, actor=actor
        )
    except Exception as exc:  # libvirt hiccup mid-read: the whole syncs are the safe answer
        logger.info("attempt %s: targeted refresh failed (%s); syncing hosts", attempt.pk, exc)
        for host in {attempt.source_host, attempt.destination_host}:
            host_sync(host=host, actor=actor)
        refreshed = {"hosts": "synced"}
    attempt.item.vm.refresh_from_db()
    return refreshed


def _with_plan_checks(attempt, session, findings: list[dict], refreshed: dict) -> list[dict]:
    """Re-run the plan's checks on live data (checks.preflight).

    The inventory was re-read just before (`_refresh_inventory`); the CPU check is
    libvirt's own comparison on the destination.
    """
    # Without a connection the plans code runs its offline CPU check; it is replaced below
    # by libvirt's comparison for the guest's own virt type and arch (a TCG guest compared
    # as if it were KVM would be refused for host features it never uses).
    plan_findings = [
        f.as_dict()
        for f in item_preflight_findings(item=attempt.item, dest_conn=None)
        if f.check_id != "cpu.compat"
    ]
    own = [f for f in findings if f["check_id"] != "live.cpu_compatible"]
    dest_conn = getattr(session, "dst", None)
    if dest_conn is not None and attempt.item.mode != "storage_only":
        xml = session.domain_xml()
        arch, virttype = guest_arch_and_type(xml)
        cpu = cpu_compare_live(dest_conn, vm_cpu_xml(xml), arch=arch, virttype=virttype).as_dict()
        if cpu["severity"] == "blocker":
            cpu["error_class"] = errors.CPU_INCOMPATIBLE
        plan_findings.append(cpu)
    refresh = {
        "check_id": "live.refreshed",
        "severity": "info",
        "message": "Inventory re-read before the checks: "
        + ", ".join(f"{k} {v}" for k, v in refreshed.items()),
        "evidence": refreshed,
    }
    return own + [refresh] + plan_findings


def _timeout_s(attempt: ItemAttempt, policy) -> float:
    """completion_timeout_s_per_gib × the GiB to move (memory, plus copied disks)."""
    gib = max(attempt.item.vm.memory_mib or 0, 256) / 1024
    if attempt.item.mode in ("live_copy", "storage_only"):
        disk_bytes = sum(d.capacity_bytes or 0 for d in attempt.item.vm.disks.all())
        gib += disk_bytes / 1024**3
    return policy.completion_timeout_s_per_gib * gib


def _scale(attempt: ItemAttempt) -> float:
    """Real seconds per policy second: a rehearsal runs faster than real time."""
    if attempt.driver == ItemAttempt.Driver.REHEARSAL:
        return 1.0 / max(rehearsal_speed(), 0.001)
    return 1.0


class TransferMonitor:
    """Follows one transfer: samples it about once a second until the call returns, and
    applies the policy (convergence steps, cancel, completion timeout, watchdog).

    `run()` returns None when the transfer succeeded, else the classified failure.
    """

    ABORT_GIVE_UP_S = 60  # an abort that has not ended the job by then: an operator looks
    ABORT_REPEAT_S = 5  # an abort sent in the setup phase may be ignored: send it again

    def __init__(self, attempt, worker, session, policy):
        self.attempt, self.worker, self.session, self.policy = attempt, worker, session, policy
        self.interval = float(settings.FERRY_SAMPLE_SECONDS)
        self.watchdog = float(settings.FERRY_WATCHDOG_SECONDS) * _scale(attempt)
        self.timeout = _timeout_s(attempt, policy) * _scale(attempt)
        self.started = time.monotonic()
        if attempt.migrate_called_at is not None and attempt.phase != P.QUEUED:
            # Re-attached: count from the original call, not from now.
            self.started -= (timezone.now() - attempt.migrate_called_at).total_seconds()
        self.last_progress = time.monotonic()
        self.last_processed = -1
        self.abort_reason: errors.ExecutionError | None = None
        self.abort_at: float | None = None
        self.downtime_set = False
        self.steps = list(policy.downtime_steps_ms)
        self.next_step_iteration = 0
        self.acted = False

    def run(self) -> errors.ExecutionError | None:
        while True:
            cancel = _beat(self.attempt, self.worker)
            finished, error = self.session.outcome()
            if finished:
                return self._result(error)
            stats = self.session.poll()
            now = time.monotonic()
            if stats:
                self.on_sample(stats, now)
            given_up = self.check_limits(now, cancel)
            if given_up is not None:
                return given_up
            time.sleep(self.interval)

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
            self.session.set_max_downtime(policy.max_downtime_ms)
            self.downtime_set = True
        if self.abort_reason is not None or not stalled(stats):
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

    def check_limits(self, now: float, cancel: bool) -> errors.ExecutionError | None:
        """Cancel, timeout and watchdog; repeats an abort, and gives up on one that hangs."""
        if self.abort_reason is None:
            if cancel:
                self.abort_reason = errors.ExecutionError(
                    errors.ABORTED_BY_OPERATOR, errors.EXPLANATIONS[errors.ABORTED_BY_OPERATOR]
                )
            elif now - self.started > self.timeout:
                self.abort_reason = errors.ExecutionError(
                    errors.TIMEOUT,
                    f"{errors.EXPLANATIONS[errors.TIMEOUT]} (limit {self.timeout:.0f} s)",
                )
            elif now - self.last_progress > self.watchdog:
                self.abort_reason = errors.ExecutionError(
                    errors.NO_PROGRESS,
                    f"{errors.EXPLANATIONS[errors.NO_PROGRESS]} "
                    f"(no progress for {self.watchdog:.0f} s)",
                )
            if self.abort_reason is not None:
                self.abort_at = now
                services.attempt_note(
                    attempt=self.attempt,
                    kind="item.aborting",
                    payload={
                        "error_class": self.abort_reason.error_class,
                        "message": self.abort_reason.message,
                    },
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
        ):
            self.session.abort()
        return None

    def converge(self, stats: dict, iteration: int) -> None:
        """Apply the policy's answer to a stalled pre-copy (recorded as evidence)."""
        attempt, policy = self.attempt, self.policy
        action = policy.on_no_convergence
        payload = {"policy": action, "iteration": iteration}
        if not self.acted:
            _phase(attempt, self.worker, P.CONVERGE)
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
            self.session.start_postcopy()
            payload["postcopy"] = "started"
        elif action == "abort":
            self.session.abort()
        self.acted = True
        services.attempt_note(attempt=attempt, kind="item.converge", payload=payload)
        services.attempt_evidence(
            attempt=attempt,
            worker=self.worker,
            key="converge",
            value={**(attempt.evidence or {}).get("converge", {}), str(iteration): payload},
        )


def _verify(attempt, worker, session, policy) -> None:
    """Watch the VM for verify_seconds: running on the destination only, the whole time."""
    seconds = policy.verify_seconds * _scale(attempt)
    deadline = time.monotonic() + seconds
    interval = min(1.0, float(settings.FERRY_SAMPLE_SECONDS))
    checks = 0
    while True:
        _beat(attempt, worker)
        problem = session.verify_once()
        checks += 1
        if problem is not None:
            raise errors.ExecutionError(
                errors.GUEST_DIED, f"{errors.EXPLANATIONS[errors.GUEST_DIED]} {problem}", problem
            )
        if time.monotonic() >= deadline:
            break
        time.sleep(interval)
    services.attempt_evidence(
        attempt=attempt,
        worker=worker,
        key="verify",
        value={"seconds": policy.verify_seconds, "checks": checks},
    )


def _fail(attempt, worker, session, exc: errors.ExecutionError) -> str:
    """Record a failure truthfully: make both hosts safe, then say where the VM is."""
    actions: list[str] = []
    where = None
    if session is not None:
        try:
            actions = session.make_safe()
        except Exception as safe_exc:  # the record must still be written
            actions = [f"safety check failed: {safe_exc}"]
        try:
            where = session.locate().as_dict()
        except Exception as loc_exc:
            where = {"errors": [str(loc_exc)]}
    attempt.refresh_from_db(fields=["migrate_called_at"])
    status = A.CANCELLED if exc.error_class == errors.ABORTED_BY_OPERATOR else A.FAILED
    if attempt.item.mode == "storage_only":
        on_source = where is not None and where.get("source") == "running"
    else:
        on_source = (
            where is not None
            and where.get("source") == "running"
            and where.get("destination") in (None, "shutoff")
        )
    moved = attempt.migrate_called_at is not None
    if exc.error_class == errors.AMBIGUOUS or (moved and not on_source):
        # The transfer was started and the VM is not (only) running on its source: Ferry
        # will not guess; an operator gets the evidence.
        status = A.NEEDS_ATTENTION
    evidence = {"failure": {"location": where, "safety_actions": actions}}
    services.attempt_finish(
        attempt=attempt, worker=worker, status=status, error=exc, evidence=evidence
    )
    return status
