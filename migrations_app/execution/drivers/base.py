"""The one small interface both drivers implement.

The runner owns the phases, the database and the decisions (when to raise downtime, when
to abort); a driver session only talks to the hypervisor (real or simulated). Stats use
libvirt's jobStats keys (`memory_remaining`, `memory_iteration`, `disk_processed`, …) so
the runner reads both drivers the same way.

Every side effect a session has on a hypervisor goes through `self.guard.act(...)`
(fencing and a bounded call, see execution.guard); reads go through `self.guard.call`.
After a failure, `make_safe` asks the same decision table for every driver
(execution.safety) and carries out its actions.
"""

import time
from dataclasses import dataclass, field

from django.conf import settings

from migrations_app.execution import errors, safety
from migrations_app.execution.guard import Guard, Unguarded


@dataclass
class Context:
    """What a session needs to know about one attempt, loaded by the runner."""

    attempt_id: int
    mode: str  # live / live_copy / storage_only
    vm_name: str
    vm_uuid: str
    memory_mib: int
    source_uri: str
    destination_uri: str
    source_host: str
    destination_host: str
    destination_ip: str  # the destination libvirtd's peer address (control connection)
    policy: object
    # Disks that are copied (live_copy, storage_only): [{"target", "source_path",
    # "source_pool", "dest_pool", "dest_pool_id", "dest_path" (live_copy with a storage map
    # to a pool at another path), "capacity", "format" (qcow2, raw: a copy keeps it)}]
    disks: list = field(default_factory=list)
    # Disks that stay where they are because the destination reaches their pool:
    # [{"target", "source_path", "pool", "pool_id", "pool_type"}]
    kept_disks: list = field(default_factory=list)
    shared_storage: bool = True  # Ferry's inventory says every disk is on a shared pool
    # Set by the runner's preflight when a directory pool was proven shared and libvirt is
    # not told so by the destination's shared_filesystems: VIR_MIGRATE_UNSAFE is then safe.
    unsafe_proof: dict | None = None
    network_map: dict = field(default_factory=dict)
    dirty_rate_mib_s: float | None = None
    migrate_called_epoch: float | None = None  # for re-attach (rehearsal recomputes from it)
    # What the database recorded before the transfer (re-attach and the reconciler read it).
    source_autostart: bool | None = None
    postcopy_recorded: bool = False
    agent_expected: bool = False  # the guest agent answered on the source before the move
    destination_libvirt_version: int | None = None  # from the inventory (libvirt's number)
    # When Ferry paused the source for a force-complete (epoch seconds), for a re-attach.
    ferry_paused_epoch: float | None = None
    # Directories both hosts declare one shared filesystem (Host.shared_paths): a file
    # under one (a UEFI guest's NVRAM) is the same file on both.
    shared_paths: list = field(default_factory=list)
    # The destination's migration network address (QEMU's data stream; "": follow the
    # control connection) and the name its TLS certificate is checked against.
    destination_data_address: str = ""
    destination_tls_name: str = ""


@dataclass
class Location:
    """Where the VM is, as the hypervisors see it (the reconciler's truth)."""

    source: str | None  # domain state on the source ("running", "paused", …), None: absent
    destination: str | None
    job_active: bool  # Ferry's migration/copy job of this VM still runs on the source
    errors: list = field(default_factory=list)  # hosts that could not be asked
    source_reason: str = ""
    destination_reason: str = ""

    def as_dict(self) -> dict:
        return {
            "source": self.source,
            "source_reason": self.source_reason,
            "destination": self.destination,
            "destination_reason": self.destination_reason,
            "job_active": self.job_active,
            "errors": self.errors,
        }


@dataclass
class Known:
    """What the database knows about an attempt that the hypervisors may not say."""

    call: str = safety.CALL_NOT_MADE  # the migrate call's outcome
    postcopy: bool = False
    source_autostart: bool | None = None
    ferry_paused_source: bool = False


class ReadError(Exception):
    """A libvirt read failed for a reason that does not mean "no job" (a lost connection,
    a timeout): the monitor retries and reconnects; it never takes it for the job's end."""


class Session:
    """A driver's handle on one attempt. Methods raise ExecutionError on classified failures."""

    driver = "base"
    guard: Guard = Unguarded()

    def preflight(self) -> list[dict]:
        """Live checks; returns findings (dicts with check_id, severity, message, evidence)."""
        raise NotImplementedError

    def prepare(self) -> dict:
        """Make destination resources ready; returns evidence (flags chosen, volumes made)."""
        raise NotImplementedError

    def start(self) -> None:
        """The one transfer call (migrate or block copy); returns at once, runs in the background."""
        raise NotImplementedError

    def attach(self) -> None:
        """Follow a transfer another worker started (after a crash), without starting one."""
        raise NotImplementedError

    def poll(self) -> dict | None:
        """Current job stats, None when no job runs; ReadError when it cannot be told."""
        raise NotImplementedError

    def outcome(self) -> tuple[bool, Exception | None]:
        """(finished, error): whether the transfer call has returned, and how."""
        raise NotImplementedError

    def completed_stats(self) -> dict:
        """The final stats of the finished job (downtime, total time, iterations, bytes)."""
        raise NotImplementedError

    def set_max_downtime(self, ms: int) -> bool:
        """Ask for a downtime limit; False when the hypervisor refused it."""
        raise NotImplementedError

    def start_postcopy(self) -> None:
        raise NotImplementedError

    def force_complete(self) -> None:
        """Pause the guest on the source so the rest of its memory moves and the migration
        ends (the caller recorded the pause first). ExecutionError when it cannot."""
        raise errors.ExecutionError(errors.LIBVIRT, "This move cannot be force-completed.")

    def resume_after_force_complete(self) -> str | None:
        """After a force-completed move arrived: resume the guest on the destination if it
        was left paused there; returns what was done (None: nothing to do)."""
        return None

    def postcopy_active(self) -> bool:
        """Whether post-copy began, as the hypervisors say (state reasons, events)."""
        return False

    def postcopy_resume(self) -> bool:
        """Try to recover a failed post-copy (VIR_MIGRATE_POSTCOPY_RESUME); True when the
        recovered migration completed."""
        return False

    def abort(self) -> bool:
        """Cancel the transfer; False when it must not be (post-copy) or had nothing to stop."""
        raise NotImplementedError

    def situation(self, known: Known) -> safety.Situation:
        """Both hosts' view of the VM, for the decision table."""
        raise NotImplementedError

    def apply(self, action: str) -> str:
        """Carry out one action of a safety decision; returns what was done, for people."""
        raise NotImplementedError

    def locate(self) -> Location:
        raise NotImplementedError

    def verify_once(self) -> str | None:
        """None when the VM is healthy where it should be now, else what is wrong."""
        raise NotImplementedError

    def verify_progress(self) -> str | None:
        """Called at the start and the end of verify: None when the guest's vCPUs ran in
        between (a hung guest stays "running" to libvirt), else what is wrong."""
        return None

    def guest_ping(self, timeout: int) -> str:
        """Ask the guest agent where the VM runs now: '' when it answers, else why not
        (validation after switchover)."""
        return "This driver cannot ask a guest agent."

    def reconnect(self) -> bool:
        """Replace dead connections; True when the source answers again."""
        return True

    def cleanup(self, remove_source_disks: bool) -> dict:
        """Remove the source definition (and copied disks when asked); returns evidence."""
        raise NotImplementedError

    def make_safe(self, known: Known) -> dict:
        """After a failure: ask the decision table and carry out its actions (each fenced).

        Returns {"decision": …, "done": [what was done]}. A job that still runs (in flight)
        is aborted first when the table allows it, then the table is asked again.
        """
        situation = self._both_sides(known)
        done: list[str] = []
        if situation.source.migration_job:
            allowed, why = safety.abort_allowed(situation)
            if not allowed:
                decision = safety.Decision(safety.NEEDS_ATTENTION, why)
                return {"decision": decision.as_dict(), "done": done}
            if self.abort():
                done.append("aborted the migration job still running on the source")
            situation = self._after_abort(known)
            if situation.source.migration_job:
                decision = safety.Decision(
                    safety.NEEDS_ATTENTION,
                    "The migration job was aborted but did not stop; nothing else was done.",
                )
                return {"decision": decision.as_dict(), "done": done}
        decision = safety.decide(situation)
        for action in decision.actions:
            done.append(self.apply(action))
        return {"decision": decision.as_dict(), "done": done}

    ABORT_WAIT_S = 30.0
    ASK_AGAIN_S = 2.0

    def _both_sides(self, known: Known) -> safety.Situation:
        """The situation, with a host that cannot be asked asked again (reconnecting) for up
        to FERRY_RECONNECT_SECONDS: a daemon restarted by its service manager answers within
        seconds, and the decision table can only clear a failed move when it sees both
        sides (a copy it cannot see might be running). After that, it decides without."""
        situation = self.situation(known)
        deadline = time.monotonic() + float(settings.FERRY_RECONNECT_SECONDS)
        while not (situation.source.reachable and situation.destination.reachable):
            if time.monotonic() > deadline:
                break
            self.guard.beat()
            time.sleep(self.ASK_AGAIN_S)
            self.reconnect()
            situation = self.situation(known)
        return situation

    def _after_abort(self, known: Known) -> safety.Situation:
        """The situation once an abort has ended the job (or after ABORT_WAIT_S)."""
        deadline = time.monotonic() + self.ABORT_WAIT_S
        while True:
            situation = self.situation(known)
            if not situation.source.migration_job or time.monotonic() > deadline:
                return situation
            self.guard.beat()
            time.sleep(0.5)

    def new_disk_pools(self) -> dict:
        """{disk target: destination pool name} after a storage move, for the inventory."""
        return {}

    def close(self) -> None:
        pass
