"""An in-memory snapshot of everything the checks, placement and estimate read.

It is loaded in a constant number of queries (whatever the plan's size), so checks are
pure functions over plain objects and never touch the database: validating 10,000 items
against 1,000 hosts costs the same ten queries as validating one.
"""

from dataclasses import dataclass, field

from inventory.libvirt_uri import tls_uri_verified
from inventory.models import (
    Host,
    Network,
    PoolShareProof,
    StoragePool,
    VirtualDisk,
    VirtualMachine,
    VirtualNIC,
)
from migrations_app.checks.cpu_models import GuestCpu, HostCpu, guest_cpu, host_cpu
from migrations_app.checks.rules import Rule
from migrations_app.models import MigrationPlan, PlacementRule, PlanItem
from migrations_app.policy import Policy

ANTI_PREFIX = "anti:"
LIVE_STATES = ("running", "paused")


@dataclass(slots=True, eq=False)
class HostInfo:
    id: int
    name: str
    state: str
    group: str
    transport: str
    hypervisor_type: str
    hypervisor_version: int | None
    libvirt_version: int | None
    arch: str
    cpu: HostCpu
    cpus: int | None
    memory_total_mib: int | None
    memory_free_mib: int | None
    machine_types: frozenset
    domain_types: frozenset
    migration_address: str
    # qemu+tls:// with a URI the allowlist accepts (no query: no no_verify=, no pkipath=);
    # a row from before the allowlist may carry options that turn certificate checks off.
    tls_verified: bool = False
    pool_ids: set = field(default_factory=set)
    network_names: set = field(default_factory=set)
    vcpus_allocated: int = 0
    # anti-affinity group -> {vm id: name} of the VMs of that group living here now
    anti_members: dict = field(default_factory=dict)
    # QEMU's own resident memory per guest, learnt from the migrations this host sent.
    qemu_rss_overhead_mib: int | None = None
    qemu_rss_overhead_samples: int = 0
    # The estimate's inputs fitted on moves to and from each peer (peer id as text -> fit),
    # loaded for the peers the plan's items move to from here (load_link_fits).
    link_fits: dict = field(default_factory=dict)
    # Budgets across plans (migrations_app.budgets).
    max_outbound: int | None = None
    max_inbound: int | None = None
    link_bandwidth_mib_s: int | None = None
    # Where moves reach it (migrations_app.migration_network).
    uri: str = ""
    hostname: str = ""
    migration_network_address: str = ""


@dataclass(slots=True, eq=False)
class PoolInfo:
    id: int
    name: str
    pool_type: str
    shared: bool
    active: bool
    available_bytes: int | None
    host_ids: set = field(default_factory=set)
    max_copies: int | None = None


@dataclass(slots=True, eq=False)
class NetworkInfo:
    id: int
    name: str
    bridge: str
    vlan: int | None
    host_ids: set = field(default_factory=set)


@dataclass(slots=True, eq=False)
class DiskInfo:
    target: str
    device: str
    source_type: str
    source: str
    pool_id: int | None
    capacity_bytes: int | None
    allocation_bytes: int | None
    shareable: bool
    readonly: bool

    @property
    def copy_bytes(self) -> int:
        """What a storage copy moves: the allocation, or the capacity when unknown."""
        return self.allocation_bytes or self.capacity_bytes or 0


@dataclass(slots=True, eq=False)
class NicInfo:
    mac: str
    source_type: str
    network_name: str
    bridge: str
    vlan: int | None


@dataclass(slots=True, eq=False)
class VMInfo:
    id: int
    uuid: str
    name: str
    host_id: int | None
    state: str
    missing: bool
    vcpus: int
    memory_mib: int
    cpu: GuestCpu
    cpu_features: tuple
    machine_type: str
    arch: str
    domain_type: str
    hostdevs: list
    tags: tuple
    dirty_rate_mib_s: float | None
    disks: list = field(default_factory=list)
    # Measured inputs of the estimate (inventory.VirtualMachine help texts say where from).
    memory_rss_mib: int | None = None
    memory_footprint_mib: int | None = None
    memory_rss_overhead_mib: int | None = None
    migration_setup_s: float | None = None
    migration_measured_at: object = None
    nics: list = field(default_factory=list)

    @property
    def anti_groups(self) -> tuple:
        return tuple(t[len(ANTI_PREFIX) :] for t in self.tags if t.startswith(ANTI_PREFIX))


@dataclass(slots=True, eq=False)
class ItemInfo:
    id: int
    position: int
    vm: VMInfo
    source_id: int
    destination_id: int | None
    mode: str
    storage_map: dict  # source pool id -> destination pool id
    network_map: dict  # source network name -> destination network name
    policy: Policy
    status: str
    wave: int = 0  # waves with dependencies (PlanItem.wave): the timeline honours them

    @property
    def storage_only(self) -> bool:
        return self.mode == PlanItem.Mode.STORAGE_ONLY


@dataclass(slots=True, eq=False)
class PlanInfo:
    id: int | None
    name: str
    status: str
    window_start: object
    window_end: object
    policy: Policy
    # An admin's recorded reason to allow moves without TLS ("" when there is none).
    transport_override: str = ""
    transport_override_by: str = ""


@dataclass(slots=True, eq=False)
class Snapshot:
    """Hosts, pools, networks, the plan's items with their VMs, and what other plans hold."""

    plan: PlanInfo
    hosts: dict  # id -> HostInfo
    pools: dict  # id -> PoolInfo
    networks: dict  # name -> NetworkInfo
    items: list  # ItemInfo, in plan order
    other_plans: dict  # vm id -> (plan id, plan name, plan status)
    pool_index: dict = field(default_factory=dict)  # (host id, pool name) -> pool id
    # (pool id, host id, host id) of pools a probe found NOT shared between those hosts,
    # though both show them with the same UUID and path (hosts in ascending id order)
    share_disproven: set = field(default_factory=set)
    # Enabled placement rules (checks.rules), the tags they name, and where the running VMs
    # carrying those tags live now: tag -> {vm id: (host id, name)}.
    rules: tuple = ()
    rule_tags: frozenset = frozenset()
    rule_members: dict = field(default_factory=dict)

    def host(self, host_id):
        return self.hosts.get(host_id)

    def reaches(self, pool_id, source_id, dest_id) -> bool:
        """Whether the destination reaches the very storage this pool is on the source:
        it shows the pool, and no probe found the two hosts' pools to be different disks."""
        pool = self.pools.get(pool_id)
        if pool is None or dest_id not in pool.host_ids:
            return False
        pair = tuple(sorted((source_id, dest_id)))
        return (pool_id, *pair) not in self.share_disproven

    def pool_named(self, host_id: int, name: str) -> int | None:
        """The active pool of that name the host reaches (lowest id), if any."""
        if not self.pool_index:
            for pool in sorted(self.pools.values(), key=lambda p: p.id, reverse=True):
                if pool.active:
                    for hid in pool.host_ids:
                        self.pool_index[(hid, pool.name)] = pool.id
        return self.pool_index.get((host_id, name))


def _int_keys(mapping) -> dict:
    out = {}
    for key, value in (mapping or {}).items():
        try:
            out[int(key)] = int(value)
        except (TypeError, ValueError):
            continue  # plan services validate maps; a stray key cannot match any pool
    return out


def load_rules() -> tuple[Rule, ...]:
    """The enabled placement rules, in name order."""
    rows = PlacementRule.objects.filter(enabled=True).order_by("name", "id")
    return tuple(Rule(kind=k, tag=t, name=n) for k, t, n in rows.values_list("kind", "tag", "name"))


def load_hosts(rule_tags: frozenset = frozenset(), rule_members: dict | None = None) -> dict:
    """Every host with its pools, networks, vCPU allocation and anti-affinity residents;
    with `rule_tags`, `rule_members` is filled with where the running VMs carrying them
    live (tag -> {vm id: (host id, name)})."""
    hosts = {}
    # link_fits is read apart (load_link_fits), for the plan's sources only: on a fleet with
    # a long history it holds an entry per peer, and most hosts are no item's source.
    for h in Host.objects.defer("link_fits"):
        hosts[h.pk] = HostInfo(
            id=h.pk,
            name=h.name,
            state=h.state,
            group=h.group,
            transport=h.transport,
            hypervisor_type=h.hypervisor_type,
            hypervisor_version=h.hypervisor_version,
            libvirt_version=h.libvirt_version,
            arch=h.arch,
            cpu=host_cpu(h.cpu_xml, h.cpu_model, h.cpu_vendor, tuple(h.cpu_features or ())),
            cpus=h.cpus,
            memory_total_mib=h.memory_total_mib,
            memory_free_mib=h.memory_free_mib,
            machine_types=frozenset(h.machine_types or ()),
            domain_types=frozenset(h.domain_types or ()),
            migration_address=h.migration_address,
            tls_verified=h.transport == "tls" and tls_uri_verified(h.uri),
            qemu_rss_overhead_mib=h.qemu_rss_overhead_mib,
            qemu_rss_overhead_samples=h.qemu_rss_overhead_samples,
            max_outbound=h.max_outbound,
            max_inbound=h.max_inbound,
            link_bandwidth_mib_s=h.link_bandwidth_mib_s,
            uri=h.uri,
            hostname=h.hostname,
            migration_network_address=h.migration_network_address,
        )
    for pool_id, host_id in StoragePool.hosts.through.objects.values_list(
        "storagepool_id", "host_id"
    ):
        if host_id in hosts:
            hosts[host_id].pool_ids.add(pool_id)
    resident = VirtualMachine.objects.filter(
        missing=False, host__isnull=False, state__in=LIVE_STATES
    ).values_list("pk", "name", "host_id", "vcpus", "tags")
    for vm_id, name, host_id, vcpus, tags in resident:
        host = hosts.get(host_id)
        if host is None:
            continue
        host.vcpus_allocated += vcpus or 0
        for tag in tags or ():
            if isinstance(tag, str) and tag.startswith(ANTI_PREFIX):
                host.anti_members.setdefault(tag[len(ANTI_PREFIX) :], {})[vm_id] = name
            if rule_members is not None and isinstance(tag, str) and tag in rule_tags:
                rule_members.setdefault(tag, {})[vm_id] = (host_id, name)
    return hosts


def load_link_fits(hosts: dict, items: list) -> None:
    """Give the items' source hosts the fits of the links to the items' destinations."""
    peers: dict = {}
    for item in items:
        if not item.storage_only and item.destination_id is not None:
            peers.setdefault(item.source_id, set()).add(str(item.destination_id))
    if not peers:
        return
    for host_id, fits in Host.objects.filter(pk__in=list(peers)).values_list("pk", "link_fits"):
        host = hosts.get(host_id)
        if host is not None and fits:
            host.link_fits = {peer: fits[peer] for peer in peers[host_id] if peer in fits}


def load_pools() -> dict:
    pools = {
        p["id"]: PoolInfo(
            id=p["id"],
            name=p["name"],
            pool_type=p["pool_type"],
            shared=p["shared"],
            active=p["active"],
            available_bytes=p["available_bytes"],
            max_copies=p["max_copies"],
        )
        for p in StoragePool.objects.values(
            "id", "name", "pool_type", "shared", "active", "available_bytes", "max_copies"
        )
    }
    for pool_id, host_id in StoragePool.hosts.through.objects.values_list(
        "storagepool_id", "host_id"
    ):
        if pool_id in pools:
            pools[pool_id].host_ids.add(host_id)
    return pools


def load_share_disproven() -> set:
    """Pools a probe found not shared between two hosts that both show them."""
    return set(
        PoolShareProof.objects.filter(shared=False).values_list("pool_id", "host_a_id", "host_b_id")
    )


def load_networks(hosts: dict) -> dict:
    networks = {
        n["name"]: NetworkInfo(id=n["id"], name=n["name"], bridge=n["bridge"], vlan=n["vlan"])
        for n in Network.objects.values("id", "name", "bridge", "vlan")
    }
    by_id = {n.id: n for n in networks.values()}
    for network_id, host_id in Network.hosts.through.objects.values_list("network_id", "host_id"):
        network = by_id.get(network_id)
        if network is not None:
            network.host_ids.add(host_id)
            if host_id in hosts:
                hosts[host_id].network_names.add(network.name)
    return networks


VM_FIELDS = (
    "id",
    "uuid",
    "name",
    "host_id",
    "state",
    "missing",
    "vcpus",
    "memory_mib",
    "cpu_mode",
    "cpu_model",
    "cpu_features",
    "machine_type",
    "arch",
    "domain_type",
    "hostdevs",
    "tags",
    "dirty_rate_mib_s",
    "memory_rss_mib",
    "memory_footprint_mib",
    "memory_rss_overhead_mib",
    "migration_setup_s",
    "migration_measured_at",
)


def vm_info(row: dict) -> VMInfo:
    """The snapshot form of one VM from a dict of VM_FIELDS (disks and NICs come later)."""
    features = tuple(
        (f.get("name", ""), f.get("policy", "require"))
        for f in (row["cpu_features"] or ())
        if isinstance(f, dict)
    )
    return VMInfo(
        id=row["id"],
        uuid=str(row["uuid"]),
        name=row["name"],
        host_id=row["host_id"],
        state=row["state"],
        missing=row["missing"],
        vcpus=row["vcpus"],
        memory_mib=row["memory_mib"],
        cpu=guest_cpu(row["cpu_mode"], row["cpu_model"], features),
        cpu_features=features,
        machine_type=row["machine_type"],
        arch=row["arch"],
        domain_type=row["domain_type"],
        hostdevs=list(row["hostdevs"] or ()),
        tags=tuple(t for t in (row["tags"] or ()) if isinstance(t, str)),
        dirty_rate_mib_s=row["dirty_rate_mib_s"],
        memory_rss_mib=row.get("memory_rss_mib"),
        memory_footprint_mib=row.get("memory_footprint_mib"),
        memory_rss_overhead_mib=row.get("memory_rss_overhead_mib"),
        migration_setup_s=row.get("migration_setup_s"),
        migration_measured_at=row.get("migration_measured_at"),
    )


def attach_devices(vms: dict, disks_qs, nics_qs) -> None:
    """Attach disks and NICs (from two querysets) to the VMInfo objects in `vms`."""
    for d in disks_qs.values_list(
        "vm_id",
        "target",
        "device",
        "source_type",
        "source",
        "pool_id",
        "capacity_bytes",
        "allocation_bytes",
        "shareable",
        "readonly",
    ).order_by("vm_id", "target"):
        vm = vms.get(d[0])
        if vm is not None:
            vm.disks.append(DiskInfo(*d[1:]))
    for n in nics_qs.values_list(
        "vm_id", "mac", "source_type", "network_name", "bridge", "vlan"
    ).order_by("vm_id", "mac"):
        vm = vms.get(n[0])
        if vm is not None:
            vm.nics.append(NicInfo(*n[1:]))


def snapshot_around(plan: MigrationPlan, policy: Policy, items: list, vm_ids=None) -> Snapshot:
    """A snapshot of `items` (already built) in today's inventory: every host, pool and
    network, the enabled placement rules with their members, and the VMs (of `vm_ids`, or
    all) that other open plans hold. The plan's own loader and the balance service
    (whose items are not stored yet) share it."""
    rules = load_rules()
    rule_tags = frozenset(r.tag for r in rules)
    rule_members: dict = {tag: {} for tag in rule_tags}
    hosts = load_hosts(rule_tags, rule_members)
    load_link_fits(hosts, items)
    others = PlanItem.objects.exclude(plan=plan).exclude(plan__status__in=MigrationPlan.TERMINAL)
    if vm_ids is not None:
        others = others.filter(vm_id__in=list(vm_ids))
    return Snapshot(
        plan=PlanInfo(
            id=plan.pk,
            name=plan.name,
            status=plan.status,
            window_start=plan.window_start,
            window_end=plan.window_end,
            policy=policy,
            transport_override=getattr(plan, "transport_override_reason", ""),
            transport_override_by=getattr(plan, "transport_override_by", ""),
        ),
        hosts=hosts,
        pools=load_pools(),
        networks=load_networks(hosts),
        items=items,
        other_plans={
            vm_id: (plan_id, name, status)
            for vm_id, plan_id, name, status in others.values_list(
                "vm_id", "plan_id", "plan__name", "plan__status"
            )
        },
        rules=rules,
        rule_tags=rule_tags,
        rule_members=rule_members,
        share_disproven=load_share_disproven(),
    )


def snapshot_load(plan: MigrationPlan, *, item_ids=None) -> Snapshot:
    """Load the snapshot for a plan (or for some of its items, e.g. one at preflight)."""
    plan_policy = plan.get_policy()
    item_fields = (
        "id",
        "position",
        "vm_id",
        "source_host_id",
        "destination_host_id",
        "mode",
        "storage_map",
        "network_map",
        "policy_overrides",
        "status",
        "wave",
    )
    # Plain values, not model instances: at 10,000 items building models costs more than
    # every check together.
    items_qs = (
        PlanItem.objects.filter(plan=plan)
        .order_by("position", "id")
        .values(*item_fields, *(f"vm__{f}" for f in VM_FIELDS))
    )
    disks_qs = VirtualDisk.objects.filter(vm__plan_items__plan=plan)
    nics_qs = VirtualNIC.objects.filter(vm__plan_items__plan=plan)
    if item_ids is not None:
        items_qs = items_qs.filter(pk__in=list(item_ids))
        disks_qs = disks_qs.filter(vm__plan_items__pk__in=list(item_ids))
        nics_qs = nics_qs.filter(vm__plan_items__pk__in=list(item_ids))
    policies: dict[str, Policy] = {}
    items, vms = [], {}
    for row in items_qs:
        vm = vms.get(row["vm_id"])
        if vm is None:
            vm = vms[row["vm_id"]] = vm_info({f: row[f"vm__{f}"] for f in VM_FIELDS})
        policy = plan_policy
        overrides = row["policy_overrides"]
        if overrides:
            key = repr(sorted(overrides.items()))
            if key not in policies:
                policies[key] = plan_policy.with_overrides(overrides)
            policy = policies[key]
        items.append(
            ItemInfo(
                id=row["id"],
                position=row["position"],
                vm=vm,
                source_id=row["source_host_id"],
                destination_id=row["destination_host_id"],
                mode=row["mode"],
                storage_map=_int_keys(row["storage_map"]),
                network_map=dict(row["network_map"] or {}),
                policy=policy,
                status=row["status"],
                wave=row["wave"],
            )
        )
    attach_devices(vms, disks_qs, nics_qs)
    return snapshot_around(plan, plan_policy, items)
