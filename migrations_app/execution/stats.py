"""Pure arithmetic over libvirt's job statistics: progress sample fields, time left, whether
pre-copy stalls, and what a finished migration measured for the next estimate."""

from collections import deque

MIB = 1024 * 1024
# A move's fixed cost is measured only from moves of at most this many passes, unthrottled.
SETUP_MAX_PASSES = 5


def sample_fields(stats: dict) -> dict:
    """ProgressSample fields from libvirt jobStats keys."""
    page = stats.get("memory_page_size") or 4096
    dirty = stats.get("memory_dirty_rate")
    throttle = stats.get("auto_converge_throttle")
    return {
        "memory_total": stats.get("memory_total"),
        "memory_processed": stats.get("memory_processed"),
        "memory_remaining": stats.get("memory_remaining"),
        "dirty_rate_bps": dirty * page if dirty is not None else None,
        "transfer_bps": stats.get("memory_bps"),
        "iteration": stats.get("memory_iteration"),
        "disk_total": stats.get("disk_total"),
        "disk_processed": stats.get("disk_processed"),
        "disk_remaining": stats.get("disk_remaining"),
        "expected_downtime_ms": stats.get("downtime"),
        "throttle_pct": throttle if throttle is not None else None,
    }


def eta_seconds(fields: dict) -> float | None:
    """Time left from the measured transfer rate against the dirty rate."""
    remaining = (fields.get("memory_remaining") or 0) + (fields.get("disk_remaining") or 0)
    rate = (fields.get("transfer_bps") or 0) - (fields.get("dirty_rate_bps") or 0)
    if not remaining:
        return 0.0
    if rate <= 0:
        return None  # not converging at the current rates
    return round(remaining / rate, 1)


class StallDetector:
    """Pre-copy has stalled when the bytes still to send stop shrinking.

    Counted from this attempt's first sample: QEMU's iteration counter carries over from
    earlier cancelled attempts in the same QEMU process (VDSM notes the same), so absolute
    iteration numbers mislead. A stall is declared once at least two passes after the first
    sample have run and the lowest remaining figure of the last `window_s` seconds is not
    `min_shrink` below the lowest one seen before that window (KubeVirt's windowed minima).
    A guest that converges geometrically keeps setting lower minima and never stalls.
    """

    def __init__(self, window_s: float = 10.0, min_shrink: float = 0.1):
        self.window_s = window_s
        self.min_shrink = min_shrink
        self.first_iteration: int | None = None
        self.first_at: float | None = None
        self.samples: deque = deque()  # (time, remaining) of the last window
        self.earlier_min: int | None = None  # lowest remaining before the last window
        self.recent_min: int | None = None
        self.passes = 0
        self.window_started: float | None = None  # a stall needs one whole window of samples

    def add(self, now: float, stats: dict) -> bool:
        """Feed one sample; True when pre-copy is stalled now."""
        remaining = stats.get("memory_remaining")
        iteration = stats.get("memory_iteration")
        if remaining is None or iteration is None:
            return False
        if self.first_iteration is None:
            self.first_iteration, self.first_at = iteration, now
        self.passes = iteration - self.first_iteration
        if self.window_started is None:
            self.window_started = now
        self.samples.append((now, remaining))
        while self.samples and now - self.samples[0][0] > self.window_s:
            _, old = self.samples.popleft()
            self.earlier_min = old if self.earlier_min is None else min(self.earlier_min, old)
        self.recent_min = min(value for _, value in self.samples)
        if self.passes < 2 or self.earlier_min is None or now - self.window_started < self.window_s:
            return False
        return self.recent_min >= self.earlier_min * (1 - self.min_shrink)

    def restart_window(self) -> None:
        """After an answer to a stall: judge it on a whole new window (the figures seen so
        far become the 'before'), so the next step waits until that window has passed."""
        lows = [v for v in (self.earlier_min, self.recent_min) if v is not None]
        self.earlier_min = min(lows) if lows else None
        self.samples.clear()
        self.window_started = None

    def evidence(self) -> dict:
        return {
            "passes_since_first_sample": self.passes,
            "first_iteration_seen": self.first_iteration,
            "window_s": self.window_s,
            "lowest_remaining_in_window": self.recent_min,
            "lowest_remaining_before": self.earlier_min,
        }


def move_measurements(stats: dict, *, bandwidth_mib_s: float | None, rss_mib: int | None) -> dict:
    """What a completed migration's job stats measured for the next estimate of the VM.

    footprint: memory QEMU did not send as zero ("constant") pages; setup: libvirt's total
    time less the time QEMU's sent bytes take at the bandwidth cap (only when capped: an
    uncapped move's rate is not known well enough; and only from a plain move of a few
    passes: in a long convergence fight QEMU sends below the cap, its vCPU throttle and
    bitmap syncs taking the time, and that is not a fixed cost of the next move); rss
    overhead: the QEMU process's resident memory beyond that footprint, as rss was read
    right before the move.
    """
    out: dict = {}
    total = stats.get("memory_total")
    constant = stats.get("memory_constant")
    page = stats.get("memory_page_size") or 4096
    if total and constant is not None:
        footprint = max(int((total - constant * page) / MIB), 1)
        out["memory_footprint_mib"] = footprint
        if rss_mib:
            out["memory_rss_overhead_mib"] = max(rss_mib - footprint, 0)
    elapsed_ms = stats.get("time_elapsed")
    sent = stats.get("data_processed") or stats.get("memory_processed")
    plain = (stats.get("memory_iteration") or 0) <= SETUP_MAX_PASSES and not stats.get(
        "auto_converge_throttle"
    )
    if bandwidth_mib_s and elapsed_ms and sent and plain:
        out["migration_setup_s"] = round(
            max(elapsed_ms / 1000 - sent / MIB / bandwidth_mib_s, 0), 2
        )
    return out
