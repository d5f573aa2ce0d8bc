"""In-memory snapshots for check tests: checks are pure, so most tests need no database."""

from pathlib import Path

from migrations_app.checks.context import CheckContext, Ledger
from migrations_app.checks.cpu_models import guest_cpu, host_cpu
from migrations_app.checks.snapshot import (
    DiskInfo,
    HostInfo,
    ItemInfo,
    NetworkInfo,
    NicInfo,
    PlanInfo,
    PoolInfo,
    Snapshot,
    VMInfo,
)
from migrations_app.policy import Policy

FIXTURES = Path(__file__).resolve().parent / "fixtures"
GIB = 1024**3


def fixture(name: str) -> str:
    return (FIXTURES / name).read_text()


def cpu_of_capabilities(name: str) -> str:
    """The host <cpu> element of a captured capabilities file, as text."""
    text = fixture(name)
    start = text.index("<cpu>", text.index("<host>"))
    return text[start : text.index("</cpu>", start) + len("</cpu>")]


def make_host(hid, name=None, *, cpu_xml="", cpu_model="Skylake-Server", **kw) -> HostInfo:
    values = {
        "id": hid,
        "name": name or f"h{hid}",
        "state": "active",
        "group": "site-a",
        "transport": "tls",
        "hypervisor_type": "QEMU",
        "hypervisor_version": 8_002_000,
        "libvirt_version": 10_000_000,
        "arch": "x86_64",
        "cpu": host_cpu(cpu_xml, cpu_model, kw.pop("cpu_vendor", "Intel"), ()),
        "cpus": 32,
        "memory_total_mib": 131072,
        "memory_free_mib": 65536,
        "machine_types": frozenset({"pc-q35-8.2", "pc-i440fx-8.2"}),
        "domain_types": frozenset({"kvm", "qemu"}),
        "migration_address": "",
        "tls_verified": True,
        "uri": f"qemu+tls://{name or f'h{hid}'}/system",
    }
    pool_ids = kw.pop("pool_ids", {1})
    network_names = kw.pop("network_names", {"prod"})
    values.update(kw)
    host = HostInfo(**values)
    host.pool_ids = set(pool_ids)
    host.network_names = set(network_names)
    return host


def make_vm(vid=1, name="vm1", host_id=1, *, mode="host-model", model="", features=(), **kw):
    disks = kw.pop("disks", None)
    nics = kw.pop("nics", None)
    values = {
        "id": vid,
        "uuid": f"00000000-0000-0000-0000-{vid:012d}",
        "name": name,
        "host_id": host_id,
        "state": "running",
        "missing": False,
        "vcpus": 2,
        "memory_mib": 4096,
        "cpu": guest_cpu(mode, model, tuple(features)),
        "cpu_features": tuple(features),
        "machine_type": "pc-q35-8.2",
        "arch": "x86_64",
        "domain_type": "kvm",
        "hostdevs": [],
        "tags": (),
        "dirty_rate_mib_s": None,
    }
    values.update(kw)
    vm = VMInfo(**values)
    vm.disks = (
        disks
        if disks is not None
        else [
            DiskInfo("vda", "disk", "file", "/srv/nfs/x.qcow2", 1, 20 * GIB, 2 * GIB, False, False)
        ]
    )
    vm.nics = (
        nics
        if nics is not None
        else [NicInfo("52:54:00:00:00:01", "network", "prod", "br-prod", None)]
    )
    return vm


def make_item(vm, *, iid=1, source_id=1, dest_id=2, mode="live", policy=None, **kw) -> ItemInfo:
    return ItemInfo(
        id=iid,
        position=kw.pop("position", iid),
        vm=vm,
        source_id=source_id,
        destination_id=dest_id,
        mode=mode,
        storage_map=kw.pop("storage_map", {}),
        network_map=kw.pop("network_map", {}),
        policy=policy or Policy(),
        status="pending",
    )


def make_snapshot(hosts, items, *, pools=None, networks=None, policy=None, **plan) -> Snapshot:
    hosts = {h.id: h for h in hosts}
    if pools is None:
        pools = [PoolInfo(1, "nfs-vms", "netfs", True, True, 4000 * GIB)]
    pools = {p.id: p for p in pools}
    for pool in pools.values():
        if not pool.host_ids:
            pool.host_ids = {h.id for h in hosts.values() if pool.id in h.pool_ids}
    if networks is None:
        networks = [NetworkInfo(1, "prod", "br-prod", None)]
    networks = {n.name: n for n in networks}
    for net in networks.values():
        net.host_ids = {h.id for h in hosts.values() if net.name in h.network_names}
    return Snapshot(
        plan=PlanInfo(
            id=1,
            name="t",
            status="draft",
            window_start=plan.get("window_start"),
            window_end=plan.get("window_end"),
            policy=policy or Policy(),
        ),
        hosts=hosts,
        pools=pools,
        networks=networks,
        items=list(items),
        other_plans=plan.get("other_plans", {}),
    )


def ctx_of(snapshot, estimates=None) -> CheckContext:
    return CheckContext(snapshot=snapshot, ledger=Ledger(), estimates=estimates or {})


def two_hosts(**dest_kw):
    """A source h1 and destination h2 (dest changed by keyword), one VM on h1, its item."""
    source = make_host(1, "src")
    dest = make_host(2, "dst", **dest_kw)
    vm = make_vm()
    item = make_item(vm)
    snap = make_snapshot([source, dest], [item])
    return snap, item, dest
