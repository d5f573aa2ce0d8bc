"""The one small interface both drivers implement.

The runner owns the phases, the database and the decisions (when to raise downtime, when
to abort); a driver session only talks to the hypervisor (real or simulated). Stats use
libvirt's jobStats keys (`memory_remaining`, `memory_iteration`, `disk_processed`, …) so
the runner reads both drivers the same way.
"""

from dataclasses import dataclass, field


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
    destination_ip: str
    policy: object
    # storage_only / live_copy: [{"target", "source_path", "dest_pool", "capacity"}]
    disks: list = field(default_factory=list)
    shared_storage: bool = True  # Ferry's inventory says every disk is on a shared pool
    network_map: dict = field(default_factory=dict)
    dirty_rate_mib_s: float | None = None
    migrate_called_epoch: float | None = None  # for re-attach (rehearsal recomputes from it)


@dataclass
class Location:
    """Where the VM is, as the hypervisors see it (the reconciler's truth)."""

    source: (
        str | None
    )  # domain state name on the source ("running", "paused", "shutoff"), None: absent
    destination: str | None
    job_active: bool  # a migration/copy job of this VM is still running on the source
    errors: list = field(default_factory=list)  # hosts that could not be asked

    def as_dict(self) -> dict:
        return {
            "source": self.source,
            "destination": self.destination,
            "job_active": self.job_active,
            "errors": self.errors,
        }


class Session:
    """A driver's handle on one attempt. Methods raise ExecutionError on classified failures."""

    driver = "base"

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
        """Current job stats, or None when no job is running."""
        raise NotImplementedError

    def outcome(self) -> tuple[bool, Exception | None]:
        """(finished, error): whether the transfer call has returned, and how."""
        raise NotImplementedError

    def completed_stats(self) -> dict:
        """The final stats of the finished job (downtime, total time, iterations, bytes)."""
        raise NotImplementedError

    def set_max_downtime(self, ms: int) -> None:
        raise NotImplementedError

    def start_postcopy(self) -> None:
        raise NotImplementedError

    def abort(self) -> None:
        raise NotImplementedError

    def locate(self) -> Location:
        raise NotImplementedError

    def verify_once(self) -> str | None:
        """None when the VM is healthy where it should be now, else what is wrong."""
        raise NotImplementedError

    def cleanup(self, remove_source_disks: bool) -> dict:
        """Remove the source definition (and copied disks when asked); returns evidence."""
        raise NotImplementedError

    def make_safe(self) -> list[str]:
        """After a failure: leave nothing paused on either host; returns what was done."""
        raise NotImplementedError

    def new_disk_pools(self) -> dict:
        """{disk target: destination pool name} after a storage move, for the inventory."""
        return {}

    def close(self) -> None:
        pass
