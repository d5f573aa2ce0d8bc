"""Migration policy: how items of a plan move (encryption, bandwidth, downtime, what to do
when pre-copy does not converge, timeouts, concurrency). Stored as JSON on the plan and,
as overrides, on items; always read through `Policy`, which validates every field."""

from dataclasses import asdict, dataclass, field, fields

# Concurrency that follows the link: how many migrations, each held to the per-migration
# bandwidth cap, fit the path between hosts: floor(path bandwidth ÷ cap), at least 1 (an
# uncapped migration fills the link by itself) and at most AUTO_MAX_PER_HOST (every
# migration also costs the source a QEMU migration thread and the destination a QEMU start).
AUTO_MAX_PER_HOST = 8
NON_CONVERGENCE_ACTIONS = ("raise_downtime", "auto_converge", "postcopy", "abort")
# What a timeout does (completion or progress): end the move with the VM on its source,
# switch to post-copy (the guest runs on the destination at once), or force-complete
# (pause the guest so the rest moves; the pause adds to the downtime).
TIMEOUT_ACTIONS = ("abort", "postcopy", "force_complete")
# Steps of a convergence schedule, fired one per stalled window, in order.
SCHEDULE_ACTIONS = ("max_downtime", "postcopy", "force_complete", "abort")
PRIORITIES = ("routine", "urgent")
# Compression of the data stream: only multifd's zstd (QEMU compresses each parallel
# channel's pages; needs parallel connections). xbzrle and the old "mt" threads are left
# out on purpose: QEMU deprecates "mt", and xbzrle did not help the lab's busy guests.
COMPRESSIONS = ("none", "zstd")
MAX_PARALLEL_CONNECTIONS = 32
PLACEMENT_STRATEGIES = ("spread", "pack")
# What a failed validation after switchover does: migrate the VM back to its source at
# once (a rollback attempt), or keep it on the destination for an operator to decide.
VALIDATION_FAILURE_ACTIONS = ("migrate_back", "keep")
# What a wave's failure does to the waves after it: they do not start (halt), or they go on.
WAVE_FAILURE_ACTIONS = ("halt", "continue")
VALIDATION_KEYS = ("guest_agent", "tcp", "http", "timeout_s", "retries", "delay_s", "on_failure")
VALIDATION_DEFAULTS = {"timeout_s": 5, "retries": 2, "delay_s": 2, "on_failure": "migrate_back"}


class PolicyError(ValueError):
    """A policy value that is unknown or out of range; the message names the field."""


@dataclass(frozen=True)
class Policy:
    """Every knob of a migration; defaults are what a careful operator would pick."""

    require_tls: bool = True
    bandwidth_mib_s: int | None = None  # None: no cap
    max_downtime_ms: int = 300
    on_no_convergence: str = "auto_converge"
    downtime_steps_ms: tuple[int, ...] = (500, 1000, 2000)
    completion_timeout_s_per_gib: int = 120
    completion_timeout_floor_s: int = 120
    completion_timeout_action: str = "abort"
    # No new low of the data still to send for this long: the move makes no progress
    # (0: off). The watchdog (FERRY_WATCHDOG_SECONDS) still ends a move that sends nothing.
    progress_timeout_s: int = 150
    progress_timeout_action: str = "abort"
    # [{"action": "max_downtime", "value": ms} | {"action": "postcopy" | "force_complete" |
    # "abort"}, ...]: one step per stalled window. Empty: derived from on_no_convergence.
    convergence_schedule: tuple = ()
    # An urgent plan (an evacuation) takes free migration slots before routine plans;
    # with preempt it also aborts routine moves still in pre-copy that hold a slot it needs.
    priority: str = "routine"
    preempt: bool = False
    # None = follow the link (see `per_link`); an explicit number always wins.
    max_concurrent: int | None = None
    max_outbound_per_host: int | None = None
    max_inbound_per_host: int | None = None
    # Parallel migration (VIR_MIGRATE_PARALLEL, QEMU multifd): this many data connections
    # (VIR_MIGRATE_PARAM_PARALLEL_CONNECTIONS), each with its own thread on both sides, which
    # helps most where one TLS stream is bound by one CPU. None: one connection.
    parallel_connections: int | None = None
    # "zstd": VIR_MIGRATE_COMPRESSED with VIR_MIGRATE_PARAM_COMPRESSION="zstd" on the
    # parallel channels (trades CPU on both hosts for bytes on the link).
    compression: str = "none"
    verify_seconds: int = 10
    remove_source_disks: bool = False
    placement_strategy: str = "spread"
    memory_reserve_mib: int = 1024
    cpu_allocation_ratio: float = 4.0
    assumed_dirty_rate_mib_s: float = 20.0
    assumed_bandwidth_mib_s: float = 110.0
    # After switchover (docs/validation-and-retry.md): {"guest_agent": bool, "tcp":
    # [{"host", "port"}], "http": [url], "timeout_s", "retries", "delay_s", "on_failure":
    # "migrate_back" | "keep"}. Empty: no validation. An item's override replaces it whole.
    validation: dict = field(default_factory=dict)
    # Transient failures (connection lost, timeouts) start again up to retry_max times,
    # after retry_backoff_s, doubling each time; retry_other_host picks another destination
    # through placement (the failed one excluded).
    retry_max: int = 0
    retry_backoff_s: int = 30
    retry_other_host: bool = False
    # Switch over only inside the window: an item starts only when its estimate ends inside
    # the window (it may start before the window opens so that its copy runs outside it).
    switchover_in_window: bool = False
    wave_failure: str = "halt"
    extra: dict = field(default_factory=dict, compare=False)

    @property
    def per_link(self) -> int:
        """Migrations per host that fit the path: floor(path bandwidth ÷ cap), 1–8.

        The path bandwidth is `assumed_bandwidth_mib_s` (set it to your migration network's
        real speed); the cap is `bandwidth_mib_s`. Without a cap one migration can fill the
        link, so the answer is 1. Scheduler and estimate both read the limits through
        `outbound_limit`, `inbound_limit` and `concurrent_limit`, so the plan's timeline
        follows the same rule as the run.
        """
        if not self.bandwidth_mib_s:
            return 1
        fit = int(self.assumed_bandwidth_mib_s // self.bandwidth_mib_s)
        return max(1, min(AUTO_MAX_PER_HOST, fit))

    @property
    def outbound_limit(self) -> int:
        """Migrations leaving one host at once: the explicit value, else `per_link`."""
        return self.max_outbound_per_host or self.per_link

    @property
    def inbound_limit(self) -> int:
        """Migrations arriving at one host at once: the explicit value, else `per_link`."""
        return self.max_inbound_per_host or self.per_link

    @property
    def concurrent_limit(self) -> int:
        """Migrations of the plan at once: the explicit value, else only the host limits."""
        return self.max_concurrent or 100

    @property
    def limits_follow_link(self) -> bool:
        """Whether any concurrency limit comes from the link rule rather than the policy."""
        return None in (self.max_concurrent, self.max_outbound_per_host, self.max_inbound_per_host)

    def completion_timeout_s(self, gib: float) -> float:
        """The completion timeout of a move of `gib` GiB (memory plus copied disks): the
        per-GiB allowance, never below the floor, and never below twice the time the data
        takes at the bandwidth cap (a timeout shorter than one pass is certain to fire)."""
        allowed = max(
            float(self.completion_timeout_floor_s), self.completion_timeout_s_per_gib * gib
        )
        if self.bandwidth_mib_s:
            allowed = max(allowed, 2 * gib * 1024 / self.bandwidth_mib_s)
        return allowed

    @property
    def schedule(self) -> list[dict]:
        """The convergence schedule in force: the explicit one, else the steps that
        on_no_convergence implies (raise_downtime: the downtime steps; postcopy and abort:
        that one step; auto_converge: none, QEMU throttles the guest by itself)."""
        if self.convergence_schedule:
            return [dict(step) for step in self.convergence_schedule]
        if self.on_no_convergence == "raise_downtime":
            return [{"action": "max_downtime", "value": v} for v in self.downtime_steps_ms]
        if self.on_no_convergence in ("postcopy", "abort"):
            return [{"action": self.on_no_convergence}]
        return []

    @property
    def may_postcopy(self) -> bool:
        """Whether a move may switch to post-copy (the capability is set at its start)."""
        return any(step["action"] == "postcopy" for step in self.schedule) or "postcopy" in (
            self.completion_timeout_action,
            self.progress_timeout_action,
        )

    @property
    def validation_spec(self) -> dict:
        """The validation in force with its defaults filled in ({} when none is asked)."""
        if not self.validation:
            return {}
        return {**VALIDATION_DEFAULTS, **self.validation}

    def retry_delay_s(self, retry_number: int) -> int:
        """The backoff before retry `retry_number` (1, 2, …): doubling, at most one hour."""
        return min(3600, self.retry_backoff_s * 2 ** max(0, retry_number - 1))

    @property
    def auto_converge(self) -> bool:
        return self.on_no_convergence == "auto_converge"

    def content(self) -> dict:
        """The policy as the plan's content hash covers it: fields added after approvals
        were first hashed count only when set, so an upgrade does not void approvals."""
        data = self.to_dict()
        for name, default in LATER_DEFAULTS.items():
            if data.get(name) == default:
                data.pop(name)
        return data

    @classmethod
    def names(cls) -> list[str]:
        return [f.name for f in fields(cls) if f.name != "extra"]

    @classmethod
    def from_dict(cls, data: dict | None, base: "Policy | None" = None) -> "Policy":
        """Validate a dict of policy values (unknown keys and bad values are errors)."""
        data = dict(data or {})
        unknown = set(data) - set(cls.names())
        if unknown:
            raise PolicyError(
                f"Unknown policy field(s): {', '.join(sorted(unknown))}. "
                f"Known: {', '.join(cls.names())}."
            )
        values = asdict(base) if base is not None else {}
        values.pop("extra", None)
        values.update(data)
        policy = cls(**values)
        return policy._validated()

    def with_overrides(self, overrides: dict | None) -> "Policy":
        """This policy with an item's overrides applied."""
        return Policy.from_dict(overrides, base=self)

    def to_dict(self) -> dict:
        data = asdict(self)
        data.pop("extra", None)
        data["downtime_steps_ms"] = list(self.downtime_steps_ms)
        data["convergence_schedule"] = [dict(step) for step in self.convergence_schedule]
        data["validation"] = dict(self.validation)
        return data

    def _validated(self) -> "Policy":
        def need(cond, name, message):
            if not cond:
                raise PolicyError(f"policy.{name}: {message}")

        def is_int(v):
            return isinstance(v, int) and not isinstance(v, bool)

        for name in ("require_tls", "remove_source_disks"):
            need(isinstance(getattr(self, name), bool), name, "must be true or false")
        need(
            self.bandwidth_mib_s is None
            or (is_int(self.bandwidth_mib_s) and 1 <= self.bandwidth_mib_s <= 100_000),
            "bandwidth_mib_s",
            "must be empty (no cap) or a whole number of MiB/s between 1 and 100000",
        )
        need(
            is_int(self.max_downtime_ms) and 10 <= self.max_downtime_ms <= 60_000,
            "max_downtime_ms",
            "must be 10–60000 ms",
        )
        need(
            self.on_no_convergence in NON_CONVERGENCE_ACTIONS,
            "on_no_convergence",
            f"'{self.on_no_convergence}' is not one of {', '.join(NON_CONVERGENCE_ACTIONS)}",
        )
        steps = self.downtime_steps_ms
        need(
            isinstance(steps, list | tuple)
            and len(steps) <= 10
            and all(is_int(s) and 10 <= s <= 60_000 for s in steps),
            "downtime_steps_ms",
            "must be a list of up to 10 values of 10–60000 ms",
        )
        object.__setattr__(self, "downtime_steps_ms", tuple(sorted(steps)))
        need(
            is_int(self.completion_timeout_s_per_gib)
            and 5 <= self.completion_timeout_s_per_gib <= 3600,
            "completion_timeout_s_per_gib",
            "must be 5–3600 seconds per GiB",
        )
        need(
            is_int(self.completion_timeout_floor_s)
            and 10 <= self.completion_timeout_floor_s <= 86_400,
            "completion_timeout_floor_s",
            "must be 10–86400 seconds",
        )
        for name in ("completion_timeout_action", "progress_timeout_action"):
            value = getattr(self, name)
            need(
                value in TIMEOUT_ACTIONS,
                name,
                f"'{value}' is not one of {', '.join(TIMEOUT_ACTIONS)}",
            )
        need(
            is_int(self.progress_timeout_s)
            and (self.progress_timeout_s == 0 or 10 <= self.progress_timeout_s <= 86_400),
            "progress_timeout_s",
            "must be 0 (off) or 10–86400 seconds",
        )
        object.__setattr__(
            self, "convergence_schedule", _schedule_checked(self.convergence_schedule, need)
        )
        need(
            self.priority in PRIORITIES,
            "priority",
            f"'{self.priority}' is not one of {', '.join(PRIORITIES)}",
        )
        need(isinstance(self.preempt, bool), "preempt", "must be true or false")
        object.__setattr__(self, "validation", _validation_checked(self.validation, need))
        need(
            is_int(self.retry_max) and 0 <= self.retry_max <= 10,
            "retry_max",
            "must be 0 (no retry) to 10",
        )
        need(
            is_int(self.retry_backoff_s) and 1 <= self.retry_backoff_s <= 3600,
            "retry_backoff_s",
            "must be 1–3600 seconds",
        )
        for name in ("retry_other_host", "switchover_in_window"):
            need(isinstance(getattr(self, name), bool), name, "must be true or false")
        need(
            self.wave_failure in WAVE_FAILURE_ACTIONS,
            "wave_failure",
            f"'{self.wave_failure}' is not one of {', '.join(WAVE_FAILURE_ACTIONS)}",
        )
        need(
            not self.preempt or self.priority == "urgent",
            "preempt",
            "only an urgent plan may preempt routine moves",
        )
        for name in ("max_concurrent", "max_outbound_per_host", "max_inbound_per_host"):
            value = getattr(self, name)
            need(
                value is None or (is_int(value) and 1 <= value <= 100),
                name,
                "must be empty (follow the link: path bandwidth ÷ per-migration cap) or 1–100",
            )
        need(
            self.parallel_connections is None
            or (
                is_int(self.parallel_connections)
                and 2 <= self.parallel_connections <= MAX_PARALLEL_CONNECTIONS
            ),
            "parallel_connections",
            f"must be empty (one connection) or 2–{MAX_PARALLEL_CONNECTIONS}",
        )
        need(
            self.compression in COMPRESSIONS,
            "compression",
            f"'{self.compression}' is not one of {', '.join(COMPRESSIONS)}",
        )
        need(
            self.compression == "none" or self.parallel_connections is not None,
            "compression",
            "zstd compresses the parallel (multifd) channels: set parallel_connections too",
        )
        need(
            is_int(self.verify_seconds) and 0 <= self.verify_seconds <= 600,
            "verify_seconds",
            "must be 0–600",
        )
        need(
            self.placement_strategy in PLACEMENT_STRATEGIES,
            "placement_strategy",
            f"'{self.placement_strategy}' is not one of {', '.join(PLACEMENT_STRATEGIES)}",
        )
        need(
            is_int(self.memory_reserve_mib) and 0 <= self.memory_reserve_mib <= 1_048_576,
            "memory_reserve_mib",
            "must be 0–1048576",
        )
        for name in ("cpu_allocation_ratio", "assumed_dirty_rate_mib_s", "assumed_bandwidth_mib_s"):
            value = getattr(self, name)
            need(
                isinstance(value, int | float)
                and not isinstance(value, bool)
                and 0 < value <= 100_000,
                name,
                "must be a positive number",
            )
        return self


def _schedule_checked(steps, need) -> tuple:
    """The convergence schedule as a tuple of plain dicts, or a PolicyError naming the step."""
    need(
        isinstance(steps, list | tuple) and len(steps) <= 10,
        "convergence_schedule",
        "must be a list of up to 10 steps",
    )
    out = []
    for number, step in enumerate(steps, start=1):
        where = f"convergence_schedule step {number}"
        need(
            isinstance(step, dict) and step.get("action") in SCHEDULE_ACTIONS,
            "convergence_schedule",
            f"{where}: needs an action, one of {', '.join(SCHEDULE_ACTIONS)}",
        )
        action = step["action"]
        extra = set(step) - ({"action", "value"} if action == "max_downtime" else {"action"})
        need(
            not extra, "convergence_schedule", f"{where}: unknown key(s) {', '.join(sorted(extra))}"
        )
        if action == "max_downtime":
            value = step.get("value")
            need(
                isinstance(value, int) and not isinstance(value, bool) and 10 <= value <= 60_000,
                "convergence_schedule",
                f"{where}: max_downtime needs a value of 10–60000 ms",
            )
            out.append({"action": action, "value": value})
        else:
            out.append({"action": action})
        need(
            action not in ("abort", "postcopy", "force_complete") or number == len(steps),
            "convergence_schedule",
            f"{where}: {action} ends the move's convergence; no step can follow it",
        )
    return tuple(out)


def _validation_checked(spec, need) -> dict:
    """The validation spec as a plain dict, or a PolicyError naming the key."""
    need(isinstance(spec, dict), "validation", "must be an object (empty: no validation)")
    unknown = set(spec) - set(VALIDATION_KEYS)
    need(
        not unknown,
        "validation",
        f"unknown key(s) {', '.join(sorted(unknown))}; known: {', '.join(VALIDATION_KEYS)}",
    )
    out = dict(spec)
    need(
        isinstance(out.get("guest_agent", False), bool),
        "validation",
        "guest_agent must be true or false",
    )
    tcp = out.get("tcp", [])
    need(isinstance(tcp, list) and len(tcp) <= 10, "validation", "tcp must be a list (up to 10)")
    for number, target in enumerate(tcp, start=1):
        port = target.get("port") if isinstance(target, dict) else None
        need(
            isinstance(target, dict)
            and set(target) == {"host", "port"}
            and isinstance(target["host"], str)
            and 0 < len(target["host"]) <= 253
            and isinstance(port, int)
            and not isinstance(port, bool)
            and 1 <= port <= 65535,
            "validation",
            f"tcp target {number} needs exactly a host name or address and a port 1–65535",
        )
    http = out.get("http", [])
    if isinstance(http, str):
        http = out["http"] = [http]
    need(
        isinstance(http, list)
        and len(http) <= 10
        and all(
            isinstance(u, str) and u.startswith(("http://", "https://")) and len(u) <= 500
            for u in http
        ),
        "validation",
        "http must be a list of http:// or https:// URLs (up to 10)",
    )
    for name, low, high in (("timeout_s", 1, 60), ("retries", 0, 10), ("delay_s", 0, 60)):
        value = out.get(name, VALIDATION_DEFAULTS[name])
        need(
            isinstance(value, int) and not isinstance(value, bool) and low <= value <= high,
            "validation",
            f"{name} must be a whole number {low}–{high}",
        )
    action = out.get("on_failure", VALIDATION_DEFAULTS["on_failure"])
    need(
        action in VALIDATION_FAILURE_ACTIONS,
        "validation",
        f"on_failure '{action}' is not one of {', '.join(VALIDATION_FAILURE_ACTIONS)}",
    )
    return out


# Fields added after plans' content was first hashed, with their defaults (Policy.content).
LATER_DEFAULTS = {
    "completion_timeout_floor_s": 120,
    "completion_timeout_action": "abort",
    "progress_timeout_s": 150,
    "progress_timeout_action": "abort",
    "convergence_schedule": [],
    "priority": "routine",
    "preempt": False,
    "validation": {},
    "retry_max": 0,
    "retry_backoff_s": 30,
    "retry_other_host": False,
    "switchover_in_window": False,
    "wave_failure": "halt",
    "parallel_connections": None,
    "compression": "none",
}
