"""Inventory models: what Ferry knows about hosts, storage, networks and VMs."""

from django.db import models

# Columns of a host that lists and pages never show, and that cost the most to read (a
# page listing VMs or items with their hosts defers them: see deferred_host_fields).
HOST_BIG_FIELDS = (
    "cpu_features",
    "cpu_xml",
    "machine_types",
    "domain_types",
    "link_fits",
    "shared_paths",
)
# The same for a VM: its whole domain XML (kept for the checks) and its CPU feature list.
VM_BIG_FIELDS = ("xml", "cpu_features", "hostdevs")


def deferred_host_fields(*relations: str) -> list[str]:
    """defer() arguments leaving HOST_BIG_FIELDS of the hosts at `relations` unread."""
    return [f"{relation}__{field}" for relation in relations for field in HOST_BIG_FIELDS]


class Host(models.Model):
    """A libvirt host registered by its connection URI."""

    class Transport(models.TextChoices):
        TLS = "tls", "TLS"
        SSH = "ssh", "SSH"
        TCP = "tcp", "TCP (unencrypted)"
        UNIX = "unix", "local unix socket"
        TEST = "test", "libvirt test driver"

    class LockManager(models.TextChoices):
        UNDECLARED = "", "not declared"
        LOCKD = "lockd", "virtlockd"
        SANLOCK = "sanlock", "sanlock"
        NONE = "none", "none"

    class State(models.TextChoices):
        ACTIVE = "active", "active"
        MAINTENANCE = "maintenance", "maintenance"
        UNREACHABLE = "unreachable", "unreachable"
        DISABLED = "disabled", "disabled"

    name = models.CharField(max_length=100, unique=True)
    uri = models.CharField(max_length=500, unique=True)
    transport = models.CharField(max_length=8, choices=Transport.choices)
    state = models.CharField(max_length=16, choices=State.choices, default=State.ACTIVE)
    group = models.CharField(max_length=100, blank=True, help_text="cluster or site")
    hostname = models.CharField(max_length=255, blank=True)
    host_uuid = models.CharField(max_length=64, blank=True)
    hypervisor_type = models.CharField(max_length=32, blank=True)
    hypervisor_version = models.BigIntegerField(null=True, blank=True)
    libvirt_version = models.BigIntegerField(null=True, blank=True)
    arch = models.CharField(max_length=32, blank=True)
    cpu_vendor = models.CharField(max_length=64, blank=True)
    cpu_model = models.CharField(max_length=128, blank=True)
    cpu_features = models.JSONField(default=list, blank=True)
    cpu_xml = models.TextField(blank=True)
    cpu_sockets = models.PositiveIntegerField(null=True, blank=True)
    cpu_cores = models.PositiveIntegerField(null=True, blank=True)
    cpu_threads = models.PositiveIntegerField(null=True, blank=True)
    cpus = models.PositiveIntegerField(null=True, blank=True, help_text="logical CPUs")
    memory_total_mib = models.BigIntegerField(null=True, blank=True)
    memory_free_mib = models.BigIntegerField(null=True, blank=True)
    machine_types = models.JSONField(default=list, blank=True)
    domain_types = models.JSONField(default=list, blank=True)
    # Where the source's libvirtd reaches this host's libvirtd for a peer-to-peer migration
    # (the control connection): the management name. Sync fills it from the URI's host; an
    # admin sets it when the URI is a local socket.
    migration_address = models.CharField(max_length=255, blank=True)
    # Where QEMU's data stream (guest memory, copied disks) comes in: an address on a
    # dedicated migration network, set by an admin (sync never touches it). Ferry passes it
    # as VIR_MIGRATE_PARAM_URI (tcp://ADDR) and, with TLS, names the host for the
    # certificate check with VIR_MIGRATE_PARAM_TLS_DESTINATION. Empty: the data follows the
    # control connection (libvirt's migration_host).
    migration_network_address = models.CharField(
        max_length=255,
        blank=True,
        help_text="IP address or host name on the migration network for QEMU's data stream "
        "(empty: the management address)",
    )
    # Budgets across all plans (migrations_app.budgets): moves out of and into
    # this host at once (empty: FERRY_HOST_MAX_OUTBOUND / _INBOUND), and the speed of its
    # migration link, which divided by a move's bandwidth cap bounds moves per link.
    max_outbound = models.PositiveSmallIntegerField(null=True, blank=True)
    max_inbound = models.PositiveSmallIntegerField(null=True, blank=True)
    link_bandwidth_mib_s = models.PositiveIntegerField(null=True, blank=True)
    # What the host's qemu.conf says, declared by an admin (libvirt does not report it):
    # the lock manager that keeps two QEMUs off one disk, and the directories libvirt is told
    # are shared (shared_filesystems), so it migrates their disks without VIR_MIGRATE_UNSAFE.
    lock_manager = models.CharField(
        max_length=8, choices=LockManager.choices, blank=True, default=LockManager.UNDECLARED
    )
    shared_paths = models.JSONField(
        default=list,
        blank=True,
        help_text="directories this host's qemu.conf lists in shared_filesystems",
    )
    # Learnt from the migrations this host has sent (see migrations_app estimate): what a
    # guest's QEMU process holds beyond the guest memory a migration really sends.
    qemu_rss_overhead_mib = models.BigIntegerField(
        null=True,
        blank=True,
        help_text="median over this host's recent first moves (VMs not measured before) of "
        "the QEMU rss before the move less its footprint (non-zero pages sent): QEMU's own memory "
        "per guest here, taken off a guest's rss to estimate its first move",
    )
    qemu_rss_overhead_samples = models.PositiveIntegerField(
        default=0, help_text="how many first moves the QEMU overhead median was taken over"
    )
    # The estimate's inputs fitted on the moves between this host and each peer (both
    # directions; kept on both hosts so a snapshot reads them with the hosts, no query more).
    link_fits = models.JSONField(
        default=dict,
        blank=True,
        help_text="peer host id -> the pre-copy model's inputs fitted on completed moves "
        "between the two hosts (setup, effective-rate factor, spread; see migrations_app "
        "calibration), by transport (tls / tcp)",
    )
    # Kept by whatever changes a VM's host (the sync, vm_record_move) through
    # hosts_vm_count_refresh, so a host list costs the same at 10 or 1,000 VMs per host.
    vm_count = models.PositiveIntegerField(
        default=0, editable=False, help_text="VMs recorded on this host (missing ones included)"
    )
    # Maintenance (inventory.services.host_maintenance_enter/exit): a host in maintenance is
    # closed to new placements (placement, balance and the host.state check refuse it as a
    # destination) while it may still be drained as a source.
    maintenance_reason = models.CharField(max_length=300, blank=True)
    maintenance_since = models.DateTimeField(null=True, blank=True)
    maintenance_by = models.CharField(max_length=150, blank=True)
    last_sync_at = models.DateTimeField(null=True, blank=True)
    # The classified reason a sync failed ("host unreachable", "certificate refused", ...),
    # shown to everyone; libvirt's own message is in the detail, for admins only (it may
    # quote files, addresses and certificate names).
    last_sync_error = models.TextField(blank=True)
    last_sync_error_detail = models.TextField(blank=True)
    last_sync_task_id = models.CharField(max_length=64, blank=True)
    registered_by_name = models.CharField(max_length=150, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self):
        return self.name

    @property
    def memory_used_mib(self) -> int | None:  # a difference of two columns: no query
        if self.memory_total_mib is None or self.memory_free_mib is None:
            return None
        return self.memory_total_mib - self.memory_free_mib


class StoragePool(models.Model):
    """A storage pool; a shared pool seen from several hosts is one row (matched on source)."""

    name = models.CharField(max_length=200)
    pool_type = models.CharField(max_length=32)
    identity = models.CharField(
        max_length=600, unique=True, help_text="what makes two hosts' pools the same pool"
    )
    shared = models.BooleanField(default=False)
    # Moves copying a disk out of or into this pool at once, all plans (empty:
    # FERRY_POOL_MAX_COPIES).
    max_copies = models.PositiveSmallIntegerField(null=True, blank=True)
    uuid = models.CharField(max_length=64, blank=True)
    target_path = models.CharField(max_length=500, blank=True)
    source = models.CharField(max_length=500, blank=True, help_text="source description")
    capacity_bytes = models.BigIntegerField(null=True, blank=True)
    allocation_bytes = models.BigIntegerField(null=True, blank=True)
    available_bytes = models.BigIntegerField(null=True, blank=True)
    active = models.BooleanField(default=True)
    hosts = models.ManyToManyField(Host, related_name="storage_pools", blank=True)

    class Meta:
        ordering = ["name", "id"]

    def __str__(self):
        return self.name


class Network(models.Model):
    """A virtual network (or host bridge/VLAN) that guests attach to, by name."""

    name = models.CharField(max_length=200, unique=True)
    bridge = models.CharField(max_length=64, blank=True)
    vlan = models.PositiveIntegerField(null=True, blank=True)
    forward_mode = models.CharField(max_length=32, blank=True)
    hosts = models.ManyToManyField(Host, related_name="networks", blank=True)

    class Meta:
        ordering = ["name"]

    def __str__(self):
        return self.name


class VirtualMachine(models.Model):
    """A libvirt domain, identified by its UUID wherever it runs."""

    class State(models.TextChoices):
        RUNNING = "running", "running"
        PAUSED = "paused", "paused"
        SHUTOFF = "shutoff", "shut off"
        CRASHED = "crashed", "crashed"
        PMSUSPENDED = "pmsuspended", "suspended"
        OTHER = "other", "other"

    class Criticality(models.TextChoices):
        LOW = "low", "low"
        NORMAL = "normal", "normal"
        HIGH = "high", "high"
        CRITICAL = "critical", "critical"

    uuid = models.UUIDField(unique=True)
    name = models.CharField(max_length=200, db_index=True)
    host = models.ForeignKey(
        Host, related_name="vms", on_delete=models.SET_NULL, null=True, blank=True
    )
    state = models.CharField(max_length=16, choices=State.choices, default=State.OTHER)
    missing = models.BooleanField(default=False, help_text="not seen on its host at last sync")
    missing_since = models.DateTimeField(null=True, blank=True)
    vcpus = models.PositiveIntegerField(default=1)
    memory_mib = models.BigIntegerField(default=0)
    max_memory_mib = models.BigIntegerField(default=0)
    cpu_mode = models.CharField(max_length=32, blank=True)
    cpu_model = models.CharField(max_length=128, blank=True)
    cpu_features = models.JSONField(default=list, blank=True)
    machine_type = models.CharField(max_length=64, blank=True)
    arch = models.CharField(max_length=32, blank=True)
    domain_type = models.CharField(max_length=16, blank=True)
    persistent = models.BooleanField(default=True)
    autostart = models.BooleanField(default=False)
    hostdevs = models.JSONField(default=list, blank=True, help_text="passthrough devices")
    tags = models.JSONField(default=list, blank=True)
    owner = models.CharField(max_length=150, blank=True)
    criticality = models.CharField(
        max_length=16, choices=Criticality.choices, default=Criticality.NORMAL
    )
    dirty_rate_mib_s = models.FloatField(
        null=True, blank=True, help_text="measured memory dirty rate, when known"
    )
    # Inputs of the pre-copy estimate that a real host can measure (see migrations_app
    # estimate): what the guest really has to send, and the fixed cost of starting a move.
    memory_rss_mib = models.BigIntegerField(
        null=True,
        blank=True,
        help_text="resident memory of the guest's QEMU process at the last sync (libvirt "
        "memoryStats rss): an upper bound of the memory a migration really sends",
    )
    memory_footprint_mib = models.BigIntegerField(
        null=True,
        blank=True,
        help_text="guest memory that was not zero pages in its last completed migration "
        "(libvirt job stats: memory_total minus constant pages)",
    )
    memory_rss_overhead_mib = models.BigIntegerField(
        null=True,
        blank=True,
        help_text="resident memory beyond the guest's footprint at its last migration "
        "(QEMU's own memory), subtracted from rss for the next estimate",
    )
    migration_setup_s = models.FloatField(
        null=True,
        blank=True,
        help_text="fixed cost of its last completed migration: total time minus the time "
        "QEMU's sent bytes take at the bandwidth (destination start, TLS handshake)",
    )
    migration_measured_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text="when its last completed migration measured the footprint and setup above",
    )
    xml = models.TextField(blank=True)
    last_seen_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["name", "id"]

    def __str__(self):
        return self.name


class VirtualDisk(models.Model):
    """One disk (or CD-ROM) of a VM."""

    vm = models.ForeignKey(VirtualMachine, related_name="disks", on_delete=models.CASCADE)
    target = models.CharField(max_length=32)
    bus = models.CharField(max_length=16, blank=True)
    device = models.CharField(max_length=16, default="disk")
    source_type = models.CharField(max_length=16, blank=True)
    source = models.CharField(max_length=500, blank=True, help_text="path, device or volume")
    pool = models.ForeignKey(
        StoragePool, related_name="disks", on_delete=models.SET_NULL, null=True, blank=True
    )
    volume = models.CharField(max_length=255, blank=True)
    format = models.CharField(max_length=16, blank=True)
    capacity_bytes = models.BigIntegerField(null=True, blank=True)
    allocation_bytes = models.BigIntegerField(null=True, blank=True)
    shareable = models.BooleanField(default=False)
    readonly = models.BooleanField(default=False)

    class Meta:
        ordering = ["target"]
        constraints = [models.UniqueConstraint(fields=["vm", "target"], name="disk_target_per_vm")]

    def __str__(self):
        return f"{self.vm.name}:{self.target}"


class VirtualNIC(models.Model):
    """One network interface of a VM."""

    vm = models.ForeignKey(VirtualMachine, related_name="nics", on_delete=models.CASCADE)
    mac = models.CharField(max_length=17)
    model = models.CharField(max_length=32, blank=True)
    source_type = models.CharField(max_length=16, blank=True)
    network = models.ForeignKey(
        Network, related_name="nics", on_delete=models.SET_NULL, null=True, blank=True
    )
    network_name = models.CharField(max_length=200, blank=True)
    bridge = models.CharField(max_length=64, blank=True)
    vlan = models.PositiveIntegerField(null=True, blank=True)

    class Meta:
        ordering = ["mac"]
        constraints = [models.UniqueConstraint(fields=["vm", "mac"], name="nic_mac_per_vm")]

    def __str__(self):
        return f"{self.vm.name}:{self.mac}"


class PoolShareProof(models.Model):
    """Whether a pool that looks shared by two hosts (same pool UUID and path) really is one
    storage: a probe volume written through one host, looked for through the other."""

    pool = models.ForeignKey(StoragePool, related_name="share_proofs", on_delete=models.CASCADE)
    # host_a has the smaller id: one row per unordered pair of hosts.
    host_a = models.ForeignKey(Host, related_name="+", on_delete=models.CASCADE)
    host_b = models.ForeignKey(Host, related_name="+", on_delete=models.CASCADE)
    shared = models.BooleanField()
    proven_at = models.DateTimeField()
    evidence = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-proven_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["pool", "host_a", "host_b"], name="one_share_proof_per_pool_pair"
            )
        ]

    def __str__(self):
        verdict = "shared" if self.shared else "not shared"
        return f"{self.pool} between hosts {self.host_a_id} and {self.host_b_id}: {verdict}"


class VmLoadSample(models.Model):
    """Measured use of one running VM at one moment (libvirt bulk statistics), kept for
    FERRY_LOAD_RETENTION_HOURS so placement and balance can read recent averages.

    Counters are stored as libvirt reported them; the rates (CPU cores, bytes per second)
    come from this sample and the previous one of the same VM on the same host.
    """

    vm = models.ForeignKey(VirtualMachine, related_name="load_samples", on_delete=models.CASCADE)
    host = models.ForeignKey(Host, related_name="vm_load_samples", on_delete=models.CASCADE)
    at = models.DateTimeField()
    vcpus = models.PositiveIntegerField(null=True, blank=True)
    cpu_time_ns = models.BigIntegerField(
        null=True, blank=True, help_text="sum of vcpu.N.time (cumulative)"
    )
    block_rd_bytes = models.BigIntegerField(null=True, blank=True)
    block_wr_bytes = models.BigIntegerField(null=True, blank=True)
    net_rx_bytes = models.BigIntegerField(null=True, blank=True)
    net_tx_bytes = models.BigIntegerField(null=True, blank=True)
    interval_s = models.FloatField(
        null=True, blank=True, help_text="seconds since the previous sample the rates use"
    )
    cpu_cores = models.FloatField(
        null=True, blank=True, help_text="busy physical cores over the interval (1.0 = one)"
    )
    disk_read_bps = models.FloatField(null=True, blank=True)
    disk_write_bps = models.FloatField(null=True, blank=True)
    net_rx_bps = models.FloatField(null=True, blank=True)
    net_tx_bps = models.FloatField(null=True, blank=True)
    memory_used_mib = models.BigIntegerField(
        null=True, blank=True, help_text="balloon current − unused, else QEMU rss"
    )
    memory_source = models.CharField(max_length=8, blank=True, help_text="balloon or rss")

    class Meta:
        ordering = ["vm_id", "at", "id"]
        indexes = [
            models.Index(fields=["vm", "at"], name="vmload_vm_at"),
            models.Index(fields=["at"], name="vmload_at"),
        ]

    def __str__(self):
        return f"load of {self.vm_id} at {self.at:%H:%M:%S}"


class HostLoadSample(models.Model):
    """Measured use of one host at one moment (node CPU counters and memory), kept like
    VmLoadSample."""

    host = models.ForeignKey(Host, related_name="load_samples", on_delete=models.CASCADE)
    at = models.DateTimeField()
    cpus = models.PositiveIntegerField(null=True, blank=True)
    cpu_busy_ns = models.BigIntegerField(
        null=True, blank=True, help_text="kernel + user time of all CPUs (cumulative)"
    )
    interval_s = models.FloatField(null=True, blank=True)
    cpu_cores = models.FloatField(null=True, blank=True, help_text="busy cores over the interval")
    memory_total_mib = models.BigIntegerField(null=True, blank=True)
    memory_used_mib = models.BigIntegerField(
        null=True, blank=True, help_text="total − free − buffers − cached"
    )

    class Meta:
        ordering = ["host_id", "at", "id"]
        indexes = [
            models.Index(fields=["host", "at"], name="hostload_host_at"),
            models.Index(fields=["at"], name="hostload_at"),
        ]

    def __str__(self):
        return f"load of host {self.host_id} at {self.at:%H:%M:%S}"
