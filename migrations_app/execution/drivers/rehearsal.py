"""Rehearsal driver: the same phases on a simulated pre-copy, for hosts on libvirt's test
driver (which has no migration API). Labelled "rehearsal" wherever it appears; never
chosen for a real host (see drivers.driver_name_for).

Physics (the pre-copy model the estimate uses): pass 1 sends all memory at the bandwidth;
each later pass sends what the guest dirtied meanwhile; switchover when the rest fits in
the allowed downtime. Auto-converge throttles the guest's dirtying step by step; post-copy
switches over at once. Bandwidth and dirty rate get a per-attempt noise that is seeded by
the attempt id, so the simulation is reproducible: a reconciler that recomputes it after a
worker crash sees the same job a crashed worker saw.

Time runs FERRY_REHEARSAL_SPEED times faster than real time (default 20: an 8 GiB VM at
110 MiB/s takes about 4 s), so a person can watch it in the demo.
"""

import random
import time

from django.conf import settings

from migrations_app.execution import errors, safety
from migrations_app.execution.drivers.base import Context, Known, Location, Session

MIB = 1024 * 1024
_STEP_S = 0.05  # simulated seconds per integration step
_SWITCHOVER_MS = 25  # fixed cost of the final stop-and-copy besides the data


def speed() -> float:
    """How many simulated seconds pass per real second."""
    return float(settings.FERRY_REHEARSAL_SPEED)


class _Sim:
    """A deterministic pre-copy simulation, advanced to a simulated time."""

    def __init__(self, ctx: Context, flags: dict):
        rng = random.Random(ctx.attempt_id)
        policy = ctx.policy
        bw_mib = policy.bandwidth_mib_s or policy.assumed_bandwidth_mib_s
        dirty_mib = (
            ctx.dirty_rate_mib_s
            if ctx.dirty_rate_mib_s is not None
            else policy.assumed_dirty_rate_mib_s
        )
        self.bw = bw_mib * MIB * rng.uniform(0.85, 1.05)
        self.dirty = dirty_mib * MIB * rng.uniform(0.8, 1.2)
        self.total = max(ctx.memory_mib, 1) * MIB
        self.disk_total = sum(int(d.get("capacity") or 0) for d in ctx.disks)
        self.storage_only = ctx.mode == "storage_only"
        self.copy_disks = ctx.mode in ("live_copy", "storage_only")
        self.max_downtime_ms = policy.max_downtime_ms
        self.auto_converge = flags.get("auto_converge", False)
        self.postcopy_requested = False
        self.paused_at: float | None = None  # force-complete: the guest stops dirtying
        self.t = 0.0
        self.disk_done = 0.0 if self.copy_disks and self.disk_total else float(self.disk_total)
        self.iteration = 1
        self.pass_left = float(self.total)
        self.dirtied = 0.0
        self.processed = 0.0
        self.throttle = 0.0
        self.done = False
        self.downtime_ms = None

    def advance(self, to_t: float) -> None:
        while self.t < to_t and not self.done:
            dt = min(_STEP_S, to_t - self.t)
            send = self.bw * dt
            if self.copy_disks and self.disk_done < self.disk_total:
                # Disks are mirrored first (like NON_SHARED_DISK); memory waits.
                self.disk_done = min(float(self.disk_total), self.disk_done + send)
                self.t += dt
                continue
            if self.storage_only:
                self.done = True
                self.downtime_ms = 0
                break
            self.processed += send
            self.pass_left -= send
            paused = self.paused_at is not None and self.t >= self.paused_at
            if not paused:
                self.dirtied = min(
                    float(self.total), self.dirtied + self.dirty * (1 - self.throttle) * dt
                )
            if self.pass_left <= 0:
                rest = self.dirtied
                if paused:
                    # Force-completed: the guest stands still from paused_at until the
                    # destination runs it; the rest goes at the bandwidth.
                    self.done = True
                    self.processed += rest
                    stood = self.t + rest / self.bw - self.paused_at
                    self.downtime_ms = int(stood * 1000) + _SWITCHOVER_MS
                elif self.postcopy_requested or rest / self.bw * 1000 <= self.max_downtime_ms:
                    self.done = True
                    sent_in_pause = 0 if self.postcopy_requested else rest
                    self.processed += sent_in_pause
                    self.downtime_ms = int(sent_in_pause / self.bw * 1000) + _SWITCHOVER_MS
                else:
                    self.iteration += 1
                    self.pass_left = rest
                    self.dirtied = 0.0
                    if self.auto_converge and self.iteration >= 3:
                        # libvirt/QEMU start at 20 % and add 10 % per stalled pass, up to 99 %.
                        self.throttle = min(0.99, 0.2 + 0.1 * (self.iteration - 3))
            self.t += dt

    def stats(self) -> dict:
        remaining = max(0.0, self.pass_left) + self.dirtied
        return {
            "type": 2,
            "time_elapsed": int(self.t * 1000),
            "memory_total": int(self.total),
            "memory_processed": int(self.processed),
            "memory_remaining": int(remaining),
            "memory_dirty_rate": int(self.dirty * (1 - self.throttle) / 4096),
            "memory_page_size": 4096,
            "memory_bps": int(self.bw),
            "memory_iteration": self.iteration,
            "data_processed": int(self.processed + self.disk_done),
            "disk_total": int(self.disk_total),
            "disk_processed": int(self.disk_done),
            "disk_remaining": int(self.disk_total - self.disk_done),
            "downtime": int(remaining / self.bw * 1000) + _SWITCHOVER_MS,
            "auto_converge_throttle": int(self.throttle * 100),
        }


class RehearsalSession(Session):
    """Simulated hypervisor for one attempt."""

    driver = "rehearsal"

    def __init__(self, ctx: Context):
        self.ctx = ctx
        policy = ctx.policy
        self.flags = {
            "auto_converge": policy.auto_converge,
            "postcopy": policy.may_postcopy,
            "tls": policy.require_tls,
        }
        self.sim = _Sim(ctx, self.flags)
        self.started_at: float | None = None  # wall clock (epoch) of the one start call
        self.aborted = False
        self.error: Exception | None = None
        self.source_autostart = False
        self.paused_copy = False
        self.source_resumed = False
        self.applied: list[str] = []  # safety actions carried out, in order

    def _now_sim(self) -> float:
        if self.started_at is None:
            return 0.0
        return max(0.0, (time.time() - self.started_at) * speed())

    def preflight(self) -> list[dict]:
        return [
            {
                "check_id": "rehearsal.simulated",
                "severity": "info",
                "message": "Rehearsal: hosts use libvirt's test driver; the move is simulated.",
                "evidence": {
                    "source": self.ctx.source_uri,
                    "destination": self.ctx.destination_uri,
                },
            }
        ]

    def prepare(self) -> dict:
        return {"driver": "rehearsal", "simulated_flags": self.flags, "speed": speed()}

    def start(self) -> None:
        self.started_at = time.time()

    def attach(self) -> None:
        # The simulated job started when migrate_called_at was set; recompute from there.
        self.started_at = self.ctx.migrate_called_epoch or time.time()
        if self.ctx.ferry_paused_epoch is not None:
            self.sim.paused_at = max(0.0, (self.ctx.ferry_paused_epoch - self.started_at) * speed())

    def poll(self) -> dict | None:
        if self.started_at is None or self.aborted:
            return None
        self.sim.advance(self._now_sim())
        return None if self.sim.done else self.sim.stats()

    def outcome(self) -> tuple[bool, Exception | None]:
        if self.aborted:
            return True, self.error
        self.sim.advance(self._now_sim())
        return self.sim.done, None

    def completed_stats(self) -> dict:
        stats = self.sim.stats()
        stats.update(
            type=3,
            downtime=self.sim.downtime_ms,
            memory_remaining=0,
            disk_remaining=0,
            data_total=stats["data_processed"],
        )
        return stats

    def set_max_downtime(self, ms: int) -> bool:
        self.sim.max_downtime_ms = ms
        return True

    def start_postcopy(self) -> None:
        self.guard.fence("start post-copy (simulated)")
        self.sim.postcopy_requested = True

    def postcopy_active(self) -> bool:
        return self.sim.postcopy_requested and self.started_at is not None

    def force_complete(self) -> None:
        self.guard.fence("pause the guest for force-complete (simulated)")
        self.sim.advance(self._now_sim())
        self.sim.paused_at = self.sim.t

    def abort(self) -> bool:
        if self.postcopy_active() or self.started_at is None or self.sim.done:
            return False
        self.guard.fence("abort (simulated)")
        self.aborted = True
        self.error = errors.ExecutionError(
            errors.ABORTED_ELSEWHERE,
            "The simulated job was aborted.",
            "operation aborted: migration out job: canceled by client (rehearsal)",
        )
        return True

    def _sides(self) -> tuple[safety.Side, safety.Side]:
        """The simulated domains on both hosts (the rehearsal's hypervisors)."""
        if self.started_at is None and self.ctx.migrate_called_epoch is not None:
            self.attach()  # a worker made the call: the simulated job runs since then
        if self.started_at is not None and not self.aborted:
            self.sim.advance(self._now_sim())
        moved = self.started_at is not None and not self.aborted and self.sim.done
        live = self.ctx.mode != "storage_only"
        in_flight = self.started_at is not None and not self.aborted and not moved
        if self.paused_copy:
            src = safety.Side("paused", "user", persistent=True)
        elif moved and live:
            src = safety.Side("shutoff", "migrated", persistent=True)
        elif self.sim.paused_at is not None and not self.source_resumed:
            # Paused by Ferry's force-complete (the same reason libvirt reports: user).
            src = safety.Side(
                "paused",
                "user",
                persistent=True,
                autostart=self.source_autostart,
                migration_job=in_flight,
            )
        else:
            src = safety.Side(
                "running",
                "booted",
                persistent=True,
                autostart=self.source_autostart,
                migration_job=self.started_at is not None and not self.aborted and not moved,
            )
        if moved and live:
            dst = safety.Side("running", "migrated", persistent=True)
        elif self.started_at is not None and not self.aborted and live:
            dst = safety.Side("paused", "migration")
        else:
            dst = safety.Side()
        return src, dst

    def call_result(self) -> str:
        if self.aborted:
            return safety.CALL_FAILED
        if self.started_at is not None and self.sim.done:
            return safety.CALL_SUCCEEDED
        return safety.CALL_UNKNOWN

    def situation(self, known: Known) -> safety.Situation:
        src, dst = self._sides()
        return safety.Situation(
            source=src,
            destination=dst,
            postcopy_recorded=known.postcopy or self.postcopy_active(),
            call=known.call,
            source_autostart=known.source_autostart,
            ferry_paused_source=known.ferry_paused_source,
        )

    def apply(self, action: str) -> str:
        """The simulated effect of one safety action (the same table as libvirt's)."""
        self.guard.fence(f"{action} (simulated)")
        if action == safety.PAUSE_SOURCE:
            self.paused_copy = True
        elif action == safety.RESTORE_SOURCE_AUTOSTART:
            self.source_autostart = True
        elif action == safety.DISABLE_SOURCE_AUTOSTART:
            self.source_autostart = False
        elif action == safety.RESUME_SOURCE:
            self.source_resumed = True
        self.applied.append(action)
        return f"{action} (simulated)"

    def locate(self) -> Location:
        src, dst = self._sides()
        return Location(
            source=src.state,
            destination=dst.state if self.ctx.mode != "storage_only" else None,
            job_active=src.migration_job,
            source_reason=src.reason,
            destination_reason=dst.reason,
        )

    def verify_once(self) -> str | None:
        return None

    def guest_ping(self, timeout: int) -> str:
        """The simulated guest's agent answers once the VM has arrived."""
        return "" if self.sim.done and not self.aborted else "The simulated VM has not arrived."

    def verify_progress(self) -> str | None:
        return None

    def cleanup(self, remove_source_disks: bool) -> dict:
        return {"driver": "rehearsal", "source_undefined": "simulated", "disks_removed": []}

    def new_disk_pools(self) -> dict:
        return {d["target"]: d["dest_pool"] for d in self.ctx.disks}
