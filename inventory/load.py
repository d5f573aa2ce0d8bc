"""Measured load: what VMs and hosts really use, from libvirt's bulk statistics.

Every sync reads it on the sync's own connection, and the housekeeping task samples every
active host each FERRY_LOAD_SAMPLE_SECONDS (`load_sample_all`). A sample stores libvirt's
cumulative counters; rates (busy CPU cores, disk and network bytes per second) come from
the previous sample of the same VM on the same host (a VM that moved runs in a new QEMU
process whose counters start again). Samples are kept FERRY_LOAD_RETENTION_HOURS; the
averages over the last FERRY_LOAD_WINDOW_MINUTES are what the balance planner reads
(`load_averages`).

Not audited, like the other measurements (vm_record_measurements): nobody changed
anything. Hosts on libvirt's test driver are not sampled: its figures are fixed fictions.
"""

import datetime as dt
import logging
from dataclasses import dataclass, field

import libvirt
from django.conf import settings
from django.db import transaction
from django.db.models import Avg, Count, Max, Subquery
from django.utils import timezone

from inventory.libvirt_client import CONNECTIONS, HostUnreachable
from inventory.libvirt_read import HostLoadFacts, read_load
from inventory.models import Host, HostLoadSample, VirtualMachine, VmLoadSample

logger = logging.getLogger("ferry.inventory.load")

MIN_INTERVAL_S = 0.5  # two samples closer than this give no rate (timer noise dominates)
SAMPLED_STATES = (Host.State.ACTIVE, Host.State.MAINTENANCE)
_RATES = (
    ("block_rd_bytes", "disk_read_bps"),
    ("block_wr_bytes", "disk_write_bps"),
    ("net_rx_bytes", "net_rx_bps"),
    ("net_tx_bytes", "net_tx_bps"),
)


@dataclass
class LoadResult:
    """What one sampling of one host stored."""

    host: str
    ok: bool
    vms: int = 0
    with_rates: int = 0
    error: str = ""
    skipped: list = field(default_factory=list)

    def summary(self) -> dict:
        return {
            "host": self.host,
            "ok": self.ok,
            "vms": self.vms,
            "with_rates": self.with_rates,
            "error": self.error,
        }


def measurable(host: Host) -> bool:
    """Whether Ferry samples this host's load (not the test driver, not disabled)."""
    return host.transport != Host.Transport.TEST and host.state in SAMPLED_STATES


def _rate(now_value, prev_value, seconds: float):
    if now_value is None or prev_value is None or now_value < prev_value:
        return None  # no counter, or it started again (a new QEMU process)
    return (now_value - prev_value) / seconds


def _interval(at: dt.datetime, prev) -> float | None:
    if prev is None:
        return None
    seconds = (at - prev.at).total_seconds()
    return seconds if seconds >= MIN_INTERVAL_S else None


def load_record(*, host: Host, facts: HostLoadFacts) -> LoadResult:
    """Store one reading of a host and its VMs (rates against each one's previous sample)."""
    at = dt.datetime.fromtimestamp(facts.at, tz=dt.UTC)
    result = LoadResult(host=host.name, ok=True)
    by_uuid = {d.uuid: d for d in facts.domains if d.state in ("running", "paused")}
    vms = dict(VirtualMachine.objects.filter(uuid__in=list(by_uuid)).values_list("uuid", "pk"))
    known = {str(k) for k in vms}
    result.skipped = sorted(u for u in by_uuid if u not in known)  # not in the inventory yet
    vm_ids = list(vms.values())
    since = at - dt.timedelta(hours=settings.FERRY_LOAD_RETENTION_HOURS)
    latest = (
        VmLoadSample.objects.filter(host=host, vm_id__in=vm_ids, at__gte=since, at__lt=at)
        .order_by()
        .values("vm_id")
        .annotate(last=Max("id"))
        .values("last")
    )
    previous = {s.vm_id: s for s in VmLoadSample.objects.filter(id__in=Subquery(latest))}
    rows = []
    for uuid, vm_id in vms.items():
        load = by_uuid[str(uuid)]
        memory, source = load.memory_used
        if load.cpu_time_ns is None and memory is None:
            continue  # nothing measured (a driver without these statistics)
        prev = previous.get(vm_id)
        seconds = _interval(at, prev)
        row = VmLoadSample(
            vm_id=vm_id,
            host=host,
            at=at,
            vcpus=load.vcpus,
            cpu_time_ns=load.cpu_time_ns,
            block_rd_bytes=load.block_rd_bytes,
            block_wr_bytes=load.block_wr_bytes,
            net_rx_bytes=load.net_rx_bytes,
            net_tx_bytes=load.net_tx_bytes,
            memory_used_mib=memory,
            memory_source=source,
            interval_s=seconds,
        )
        if seconds is not None:
            cores = _rate(load.cpu_time_ns, prev.cpu_time_ns, seconds * 1e9)
            if cores is not None and load.vcpus:
                cores = min(cores, float(load.vcpus))  # vCPU threads cannot exceed their count
            row.cpu_cores = cores
            for counter, rate in _RATES:
                setattr(row, rate, _rate(getattr(load, counter), getattr(prev, counter), seconds))
            result.with_rates += cores is not None
        rows.append(row)
    host_prev = (
        HostLoadSample.objects.filter(host=host, at__gte=since, at__lt=at).order_by("-at").first()
    )
    host_seconds = _interval(at, host_prev)
    host_row = HostLoadSample(
        host=host,
        at=at,
        cpus=facts.cpus,
        cpu_busy_ns=facts.cpu_busy_ns,
        memory_total_mib=facts.memory_total_mib,
        memory_used_mib=facts.memory_used_mib,
        interval_s=host_seconds,
    )
    if host_seconds is not None:
        host_row.cpu_cores = _rate(facts.cpu_busy_ns, host_prev.cpu_busy_ns, host_seconds * 1e9)
    with transaction.atomic():
        VmLoadSample.objects.bulk_create(rows, batch_size=500)
        host_row.save()
    result.vms = len(rows)
    return result


def host_load_sample(*, host: Host, conn=None) -> LoadResult:
    """Read and store one host's load now (on `conn` when the caller holds one)."""
    if conn is not None:
        return load_record(host=host, facts=read_load(conn))
    timeout = settings.LIBVIRT_CONNECT_TIMEOUT
    try:
        conn = CONNECTIONS.take(host.uri, timeout)
    except HostUnreachable as exc:
        return LoadResult(host=host.name, ok=False, error=str(exc))
    try:
        facts = read_load(conn)
    except libvirt.libvirtError as exc:
        conn.close()
        return LoadResult(host=host.name, ok=False, error=exc.get_error_message() or str(exc))
    CONNECTIONS.give_back(host.uri, conn)
    return load_record(host=host, facts=facts)


def load_sample_all() -> list[dict]:
    """Sample every measurable host once (the housekeeping task and `manage.py sample_load`)."""
    results = []
    for host in Host.objects.filter(state__in=SAMPLED_STATES).exclude(
        transport=Host.Transport.TEST
    ):
        try:
            result = host_load_sample(host=host)
        except Exception as exc:  # one host's failure must not stop the others
            logger.exception("load sample of %s failed", host.name)
            result = LoadResult(host=host.name, ok=False, error=str(exc))
        if not result.ok:
            logger.warning("load sample of %s failed: %s", host.name, result.error)
        results.append(result.summary())
    return results


def load_samples_prune(*, now=None) -> int:
    """Delete load samples older than FERRY_LOAD_RETENTION_HOURS; returns how many."""
    cutoff = (now or timezone.now()) - dt.timedelta(hours=settings.FERRY_LOAD_RETENTION_HOURS)
    vms = VmLoadSample.objects.filter(at__lt=cutoff).delete()[0]
    hosts = HostLoadSample.objects.filter(at__lt=cutoff).delete()[0]
    return vms + hosts


def load_averages(*, vm_ids=None, host_ids=None, minutes=None, now=None) -> tuple[dict, dict]:
    """Average measured use over the last `minutes` (FERRY_LOAD_WINDOW_MINUTES):
    ({vm id: {"cpu_cores", "memory_used_mib", "samples"}}, {host id: {...}}); a figure
    with no sample in the window is None. Two queries, whatever the number of VMs."""
    minutes = minutes or settings.FERRY_LOAD_WINDOW_MINUTES
    since = (now or timezone.now()) - dt.timedelta(minutes=minutes)
    vm_qs = VmLoadSample.objects.filter(at__gte=since)
    if vm_ids is not None:
        vm_qs = vm_qs.filter(vm_id__in=list(vm_ids))
    host_qs = HostLoadSample.objects.filter(at__gte=since)
    if host_ids is not None:
        host_qs = host_qs.filter(host_id__in=list(host_ids))
    return _averages(vm_qs, "vm_id"), _averages(host_qs, "host_id")


def _averages(qs, key: str) -> dict:
    rows = (
        qs.order_by()
        .values(key)
        .annotate(cpu=Avg("cpu_cores"), memory=Avg("memory_used_mib"), n=Count("id"))
    )
    return {
        row[key]: {"cpu_cores": row["cpu"], "memory_used_mib": row["memory"], "samples": row["n"]}
        for row in rows
    }
