"""Reading one libvirt host into plain snapshots (no database here), so a sync can gather
everything first and then write it in one short transaction; and reading its measured
load (bulk domain statistics and node counters, `read_load`)."""

import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit
from xml.etree.ElementTree import tostring  # noqa: S405 - serialises XML parsed safely

import libvirt

from inventory.xmlparse import attr_of, parse_xml, size_in_bytes, text_of

FERRY_XMLNS = "http://ferry.local/xmlns/vm/1.0"
MIB = 1024 * 1024

_DOMAIN_STATES = {
    libvirt.VIR_DOMAIN_NOSTATE: "other",
    libvirt.VIR_DOMAIN_RUNNING: "running",
    libvirt.VIR_DOMAIN_BLOCKED: "running",
    libvirt.VIR_DOMAIN_PAUSED: "paused",
    libvirt.VIR_DOMAIN_SHUTDOWN: "running",
    libvirt.VIR_DOMAIN_SHUTOFF: "shutoff",
    libvirt.VIR_DOMAIN_CRASHED: "crashed",
    libvirt.VIR_DOMAIN_PMSUSPENDED: "pmsuspended",
}
# Pool types whose storage lives outside any one host, so several hosts see the same data.
NETWORK_POOL_TYPES = {"netfs", "rbd", "iscsi", "iscsi-direct", "gluster", "sheepdog", "vstorage"}


@dataclass
class PoolFacts:
    name: str
    pool_type: str
    uuid: str
    target_path: str
    source: str
    identity_source: str  # host-independent part of the identity for network pools
    capacity_bytes: int | None
    allocation_bytes: int | None
    available_bytes: int | None
    active: bool
    volumes: dict[str, dict] = field(default_factory=dict)  # path -> {name, capacity, ...}


@dataclass
class NetworkFacts:
    name: str
    bridge: str
    vlan: int | None
    forward_mode: str


@dataclass
class DiskFacts:
    target: str
    bus: str
    device: str
    source_type: str
    source: str
    pool_name: str
    volume: str
    format: str
    shareable: bool
    readonly: bool


@dataclass
class NicFacts:
    mac: str
    model: str
    source_type: str
    network_name: str
    bridge: str
    vlan: int | None


@dataclass
class DomainFacts:
    uuid: str
    name: str
    state: str
    vcpus: int
    memory_mib: int
    max_memory_mib: int
    cpu_mode: str
    cpu_model: str
    cpu_features: list
    machine_type: str
    arch: str
    domain_type: str
    persistent: bool
    autostart: bool
    hostdevs: list
    tags: list
    owner: str
    criticality: str
    xml: str
    disks: list[DiskFacts]
    nics: list[NicFacts]
    # Resident memory of the guest's QEMU process (virDomainMemoryStats "rss"): an upper
    # bound of the guest memory that pre-copy must really send (untouched pages are zero
    # pages, sent as headers); None when the domain is not running.
    rss_mib: int | None = None


@dataclass
class HostFacts:
    hostname: str
    host_uuid: str
    hypervisor_type: str
    hypervisor_version: int | None
    libvirt_version: int | None
    arch: str
    cpu_vendor: str
    cpu_model: str
    cpu_features: list
    cpu_xml: str
    cpu_sockets: int | None
    cpu_cores: int | None
    cpu_threads: int | None
    cpus: int | None
    memory_total_mib: int | None
    memory_free_mib: int | None
    machine_types: list
    domain_types: list
    migration_address: str
    pools: list[PoolFacts]
    networks: list[NetworkFacts]
    domains: list[DomainFacts]


def _int_or_none(value) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def read_capabilities(xml: str) -> dict:
    """Host CPU, topology, machine types and domain types from capabilities XML."""
    root = parse_xml(xml)
    cpu = root.find("host/cpu")
    topology = cpu.find("topology") if cpu is not None else None
    machines: set[str] = set()
    domain_types: set[str] = set()
    for guest in root.findall("guest"):
        arch = guest.find("arch")
        if arch is None:
            continue
        for machine in arch.findall("machine"):
            if machine.text:
                machines.add(machine.text.strip())
            if machine.get("canonical"):
                machines.add(machine.get("canonical"))
        for domain in arch.findall("domain"):
            domain_types.add(domain.get("type", ""))
            for machine in domain.findall("machine"):
                if machine.text:
                    machines.add(machine.text.strip())
    cpu_xml = ""
    if cpu is not None:
        cpu_xml = tostring(cpu, encoding="unicode")
    return {
        "host_uuid": text_of(root, "host/uuid"),
        "arch": text_of(cpu, "arch"),
        "cpu_vendor": text_of(cpu, "vendor"),
        "cpu_model": text_of(cpu, "model"),
        "cpu_features": sorted({f.get("name", "") for f in cpu.findall("feature")} - {""})
        if cpu is not None
        else [],
        "cpu_xml": cpu_xml,
        "cpu_sockets": _int_or_none(attr_of(topology, "", "sockets", "")),
        "cpu_cores": _int_or_none(attr_of(topology, "", "cores", "")),
        "cpu_threads": _int_or_none(attr_of(topology, "", "threads", "")),
        "machine_types": sorted(machines),
        "domain_types": sorted(domain_types - {""}),
    }


def read_pool(pool: libvirt.virStoragePool) -> PoolFacts:
    """A storage pool with its volumes (volumes only when the pool is active)."""
    root = parse_xml(pool.XMLDesc(0))
    pool_type = root.get("type", "")
    source = root.find("source")
    hosts = sorted(h.get("name", "") for h in source.findall("host")) if source is not None else []
    src_dir = attr_of(source, "dir", "path")
    src_name = text_of(source, "name")
    devices = [d.get("path", "") for d in source.findall("device")] if source is not None else []
    parts = [p for p in (",".join(hosts), src_dir, src_name, ",".join(devices)) if p]
    description = " ".join(parts)
    active = bool(pool.isActive())
    volumes: dict[str, dict] = {}
    if active:
        for volume in pool.listAllVolumes(0):
            try:
                vol_root = parse_xml(volume.XMLDesc(0))
            except libvirt.libvirtError:
                continue  # deleted between the list and the read
            volumes[volume.path()] = {
                "name": volume.name(),
                "capacity": size_in_bytes(vol_root.find("capacity")),
                "allocation": size_in_bytes(vol_root.find("allocation")),
                "format": attr_of(vol_root, "target/format", "type"),
            }
    return PoolFacts(
        name=text_of(root, "name"),
        pool_type=pool_type,
        uuid=text_of(root, "uuid"),
        target_path=text_of(root, "target/path"),
        source=description,
        identity_source=f"{pool_type}:{description}" if pool_type in NETWORK_POOL_TYPES else "",
        capacity_bytes=size_in_bytes(root.find("capacity")),
        allocation_bytes=size_in_bytes(root.find("allocation")),
        available_bytes=size_in_bytes(root.find("available")),
        active=active,
        volumes=volumes,
    )


def read_network(network: libvirt.virNetwork) -> NetworkFacts:
    """A libvirt network: its bridge, VLAN tag and forward mode."""
    root = parse_xml(network.XMLDesc(0))
    return NetworkFacts(
        name=text_of(root, "name"),
        bridge=attr_of(root, "bridge", "name"),
        vlan=_int_or_none(attr_of(root, "vlan/tag", "id", "")),
        forward_mode=attr_of(root, "forward", "mode")
        or ("isolated" if root.find("forward") is None else ""),
    )


def _hostdev(element) -> dict:
    kind = element.get("type", "")
    source = element.find("source")
    if kind == "pci":
        address = source.find("address") if source is not None else None
        ident = (
            ":".join(
                attr_of(address, "", key, "?").replace("0x", "")
                for key in ("domain", "bus", "slot")
            )
            + "."
            + attr_of(address, "", "function", "?").replace("0x", "")
        )
    elif kind == "usb":
        ident = f"{attr_of(source, 'vendor', 'id')}:{attr_of(source, 'product', 'id')}"
    elif kind == "mdev":
        ident = attr_of(source, "address", "uuid")
    else:
        ident = ""
    return {"type": kind, "id": ident, "mode": element.get("mode", "")}


def read_domain_xml(xml: str) -> dict:
    """Everything Ferry keeps from a domain's XML (without runtime state)."""
    root = parse_xml(xml)
    os_type = root.find("os/type")
    cpu = root.find("cpu")
    features = []
    if cpu is not None:
        for feature in cpu.findall("feature"):
            features.append(
                {"name": feature.get("name", ""), "policy": feature.get("policy", "require")}
            )
    devices = root.find("devices")
    disks, nics, hostdevs = [], [], []
    if devices is not None:
        for disk in devices.findall("disk"):
            source = disk.find("source")
            source_type = disk.get("type", "")
            if source_type == "file":
                location = attr_of(source, "", "file")
            elif source_type == "block":
                location = attr_of(source, "", "dev")
            elif source_type == "network":
                location = f"{attr_of(source, '', 'protocol')}:{attr_of(source, '', 'name')}"
            elif source_type == "volume":
                location = f"{attr_of(source, '', 'pool')}/{attr_of(source, '', 'volume')}"
            else:
                location = ""
            disks.append(
                DiskFacts(
                    target=attr_of(disk, "target", "dev"),
                    bus=attr_of(disk, "target", "bus"),
                    device=disk.get("device", "disk"),
                    source_type=source_type,
                    source=location,
                    pool_name=attr_of(source, "", "pool") if source_type == "volume" else "",
                    volume=attr_of(source, "", "volume") if source_type == "volume" else "",
                    format=attr_of(disk, "driver", "type"),
                    shareable=disk.find("shareable") is not None,
                    readonly=disk.find("readonly") is not None,
                )
            )
        for nic in devices.findall("interface"):
            kind = nic.get("type", "")
            nics.append(
                NicFacts(
                    mac=attr_of(nic, "mac", "address").lower(),
                    model=attr_of(nic, "model", "type"),
                    source_type=kind,
                    network_name=attr_of(nic, "source", "network"),
                    bridge=attr_of(nic, "source", "bridge") or attr_of(nic, "source", "dev"),
                    vlan=_int_or_none(attr_of(nic, "vlan/tag", "id", "")),
                )
            )
        for hostdev in devices.findall("hostdev"):
            hostdevs.append(_hostdev(hostdev))
    meta = root.find(f"metadata/{{{FERRY_XMLNS}}}vm")
    tags_text = text_of(meta, f"{{{FERRY_XMLNS}}}tags")
    memory = size_in_bytes(root.find("memory"), "KiB") or 0
    current = size_in_bytes(root.find("currentMemory"), "KiB") or memory
    return {
        "uuid": text_of(root, "uuid"),
        "name": text_of(root, "name"),
        "vcpus": _int_or_none(text_of(root, "vcpu")) or 1,
        "memory_mib": current // MIB,
        "max_memory_mib": memory // MIB,
        "cpu_mode": (cpu.get("mode", "custom") if cpu is not None else ""),
        "cpu_model": text_of(cpu, "model"),
        "cpu_features": features,
        "machine_type": os_type.get("machine", "") if os_type is not None else "",
        "arch": os_type.get("arch", "") if os_type is not None else "",
        "domain_type": root.get("type", ""),
        "hostdevs": hostdevs,
        "tags": sorted({t.strip() for t in tags_text.split(",") if t.strip()}),
        "owner": text_of(meta, f"{{{FERRY_XMLNS}}}owner"),
        "criticality": text_of(meta, f"{{{FERRY_XMLNS}}}criticality"),
        "disks": disks,
        "nics": nics,
    }


def domain_state(domain: libvirt.virDomain) -> str:
    """Ferry's name of a domain's state."""
    return _DOMAIN_STATES.get(domain.state()[0], "other")


def read_domain_states(conn: libvirt.virConnect) -> dict[str, str]:
    """{domain UUID: state name} of every domain on a host (one call)."""
    return {d.UUIDString(): domain_state(d) for d in conn.listAllDomains(0)}


def read_capacity(conn: libvirt.virConnect, pools: dict) -> tuple[dict, dict]:
    """A host's memory and the space of its pools {name: key}, without a whole read.

    Returns ({"memory_total_mib", "memory_free_mib" (when known)}, {key: (capacity,
    allocation, available)}); a pool libvirt cannot read is left out (the caller keeps its
    last synced value; a session checks space live before a move).
    """
    info = conn.getInfo()
    try:
        free = int(conn.getFreeMemory()) // MIB
    except libvirt.libvirtError:
        free = 0
    memory = {"memory_total_mib": int(info[1])}
    if free > 0:
        memory["memory_free_mib"] = free
    space = {}
    for name, key in pools.items():
        try:
            _state, capacity, allocation, available = conn.storagePoolLookupByName(name).info()
        except libvirt.libvirtError:
            continue
        space[key] = (capacity, allocation, available)
    return memory, space


def read_rss_mib(domain: libvirt.virDomain) -> int | None:
    """The QEMU process's resident memory in MiB (running domains only), if libvirt says."""
    try:
        rss = domain.memoryStats().get("rss") if domain.isActive() else None
    except libvirt.libvirtError:
        return None
    return int(rss) // 1024 if rss else None


def read_domain(domain: libvirt.virDomain) -> DomainFacts:
    """A domain with its state, persistence, devices and resident memory."""
    xml = domain.XMLDesc(0)
    data = read_domain_xml(xml)
    state, _reason = domain.state()
    persistent = bool(domain.isPersistent())
    try:
        autostart = bool(domain.autostart()) if persistent else False
    except libvirt.libvirtError:
        autostart = False
    return DomainFacts(
        state=_DOMAIN_STATES.get(state, "other"),
        persistent=persistent,
        autostart=autostart,
        xml=xml,
        rss_mib=read_rss_mib(domain),
        **data,
    )


def read_host(conn: libvirt.virConnect) -> HostFacts:
    """Read node info, capabilities, versions, pools, networks and all domains."""
    caps = read_capabilities(conn.getCapabilities())
    info = conn.getInfo()  # [model, memory MiB, cpus, mhz, nodes, sockets, cores, threads]
    hypervisor_type = conn.getType()
    domains = [read_domain(d) for d in conn.listAllDomains(0)]
    memory_total = int(info[1])
    try:
        free_bytes = int(conn.getFreeMemory())
    except libvirt.libvirtError:
        free_bytes = 0
    if free_bytes > 0:
        memory_free = free_bytes // MIB
    else:
        # The test driver reports no free memory; derive it from what running guests hold.
        used = sum(d.memory_mib for d in domains if d.state in ("running", "paused"))
        memory_free = max(memory_total - used, 0)
    pools = []
    for pool in conn.listAllStoragePools(0):
        pools.append(read_pool(pool))
    networks = [read_network(n) for n in conn.listAllNetworks(0)]
    try:
        hostname = conn.getHostname()
    except libvirt.libvirtError:
        hostname = ""
    migration_address = ""
    uri = conn.getURI()
    if "://" in uri:
        migration_address = urlsplit(uri).hostname or ""
    return HostFacts(
        hostname=hostname,
        host_uuid=caps["host_uuid"],
        hypervisor_type=hypervisor_type,
        hypervisor_version=_int_or_none(conn.getVersion()),
        libvirt_version=_int_or_none(conn.getLibVersion()),
        arch=caps["arch"] or str(info[0]),
        cpu_vendor=caps["cpu_vendor"],
        # Capabilities name the host CPU model on real hosts; the test driver only has
        # node info, whose model field its node files use for the CPU model.
        cpu_model=caps["cpu_model"] or str(info[0]),
        cpu_features=caps["cpu_features"],
        cpu_xml=caps["cpu_xml"],
        cpu_sockets=caps["cpu_sockets"] or _int_or_none(info[5]),
        cpu_cores=caps["cpu_cores"] or _int_or_none(info[6]),
        cpu_threads=caps["cpu_threads"] or _int_or_none(info[7]),
        cpus=_int_or_none(info[2]),
        memory_total_mib=memory_total,
        memory_free_mib=memory_free,
        machine_types=caps["machine_types"],
        domain_types=caps["domain_types"],
        migration_address=migration_address,
        pools=pools,
        networks=networks,
        domains=domains,
    )


# -- measured load (libvirt bulk statistics) ------------------------------------------------

LOAD_STATS = (
    libvirt.VIR_DOMAIN_STATS_STATE
    | libvirt.VIR_DOMAIN_STATS_VCPU
    | libvirt.VIR_DOMAIN_STATS_BALLOON
    | libvirt.VIR_DOMAIN_STATS_BLOCK
    | libvirt.VIR_DOMAIN_STATS_INTERFACE
)
# Running and paused domains only; NOWAIT: a domain busy in a job (a migration) answers
# with what it has at once instead of making the whole call wait for the job.
LOAD_FLAGS = (
    libvirt.VIR_CONNECT_GET_ALL_DOMAINS_STATS_ACTIVE
    | libvirt.VIR_CONNECT_GET_ALL_DOMAINS_STATS_NOWAIT
)


@dataclass
class DomainLoad:
    """One domain's counters and gauges at one moment (cumulative counters: rates need two)."""

    uuid: str
    state: str
    vcpus: int | None
    cpu_time_ns: int | None  # sum of vcpu.N.time: CPU time the guest's vCPUs ran
    balloon_current_mib: int | None
    balloon_unused_mib: int | None
    rss_mib: int | None
    block_rd_bytes: int | None
    block_wr_bytes: int | None
    net_rx_bytes: int | None
    net_tx_bytes: int | None

    @property
    def memory_used(self) -> tuple[int | None, str]:
        """(MiB in use, where from): balloon current − unused when the guest's balloon
        driver reports it, else the QEMU process's rss (an upper bound), else unknown."""
        if self.balloon_current_mib is not None and self.balloon_unused_mib is not None:
            return max(0, self.balloon_current_mib - self.balloon_unused_mib), "balloon"
        if self.rss_mib is not None:
            return self.rss_mib, "rss"
        return None, ""


@dataclass
class HostLoadFacts:
    """A host's CPU counters and memory gauges at one moment, and its domains'."""

    at: float  # epoch seconds when libvirt answered
    cpus: int | None
    cpu_busy_ns: int | None  # kernel + user time over all CPUs since boot
    memory_total_mib: int | None
    memory_used_mib: int | None  # total − free − buffers − cached
    domains: list[DomainLoad] = field(default_factory=list)


def _sum_of(stats: dict, prefix: str, count_key: str, suffix: str) -> int | None:
    """The sum of `prefix.N.suffix` over N < stats[count_key] (None when none is there)."""
    count = stats.get(count_key)
    if not isinstance(count, int):
        return None
    values = [stats.get(f"{prefix}.{i}.{suffix}") for i in range(count)]
    values = [v for v in values if isinstance(v, int)]
    return sum(values) if values else None


def _kib_to_mib(value) -> int | None:
    return int(value) // 1024 if isinstance(value, int) else None


def domain_load(uuid: str, stats: dict) -> DomainLoad:
    """One record of getAllDomainStats as a DomainLoad (keys libvirt did not send: None)."""
    vcpus = stats.get("vcpu.current")
    cpu_time = None
    if isinstance(vcpus, int):
        # vcpu.N.time exists per online vCPU; the maximum bounds the numbering.
        top = stats.get("vcpu.maximum", vcpus)
        times = [stats.get(f"vcpu.{i}.time") for i in range(top if isinstance(top, int) else 0)]
        times = [t for t in times if isinstance(t, int)]
        cpu_time = sum(times) if times else None
    return DomainLoad(
        uuid=uuid,
        state=_DOMAIN_STATES.get(stats.get("state.state"), "other"),
        vcpus=vcpus if isinstance(vcpus, int) else None,
        cpu_time_ns=cpu_time,
        balloon_current_mib=_kib_to_mib(stats.get("balloon.current")),
        balloon_unused_mib=_kib_to_mib(stats.get("balloon.unused")),
        rss_mib=_kib_to_mib(stats.get("balloon.rss")),
        block_rd_bytes=_sum_of(stats, "block", "block.count", "rd.bytes"),
        block_wr_bytes=_sum_of(stats, "block", "block.count", "wr.bytes"),
        net_rx_bytes=_sum_of(stats, "net", "net.count", "rx.bytes"),
        net_tx_bytes=_sum_of(stats, "net", "net.count", "tx.bytes"),
    )


def read_load(conn: libvirt.virConnect) -> HostLoadFacts:
    """The host's CPU and memory counters and every running domain's bulk statistics,
    read in three calls (one for all domains, whatever their number)."""
    records = conn.getAllDomainStats(LOAD_STATS, LOAD_FLAGS)
    at = time.time()
    info = conn.getInfo()
    try:
        cpu = conn.getCPUStats(libvirt.VIR_NODE_CPU_STATS_ALL_CPUS)
        busy = int(cpu.get("kernel", 0)) + int(cpu.get("user", 0))
    except libvirt.libvirtError:
        busy = None
    try:
        memory = conn.getMemoryStats(libvirt.VIR_NODE_MEMORY_STATS_ALL_CELLS)
        total = int(memory["total"]) // 1024
        spare = sum(int(memory.get(k, 0)) for k in ("free", "buffers", "cached")) // 1024
        used = max(0, total - spare)
    except (libvirt.libvirtError, KeyError, TypeError, ValueError):
        total, used = _int_or_none(info[1]), None
    return HostLoadFacts(
        at=at,
        cpus=_int_or_none(info[2]),
        cpu_busy_ns=busy,
        memory_total_mib=total,
        memory_used_mib=used,
        domains=[domain_load(dom.UUIDString(), stats) for dom, stats in records],
    )
