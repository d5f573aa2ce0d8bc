"""Serializers of the inventory API (read models; writes go through services)."""

from rest_framework import serializers

from dashboard.permissions import can
from inventory.models import Host, Network, StoragePool, VirtualDisk, VirtualMachine, VirtualNIC


class HostSerializer(serializers.ModelSerializer):
    memory_used_mib = serializers.IntegerField(read_only=True, allow_null=True)
    vm_count = serializers.IntegerField(read_only=True)
    last_sync_error_detail = serializers.SerializerMethodField(
        help_text="libvirt's own message of the last failed sync: admins only (empty otherwise)"
    )

    def get_last_sync_error_detail(self, host) -> str:
        request = self.context.get("request")
        user = getattr(request, "user", None)
        return host.last_sync_error_detail if can(user, "host.error_detail") else ""

    class Meta:
        model = Host
        fields = [
            "id",
            "name",
            "uri",
            "transport",
            "state",
            "maintenance_reason",
            "maintenance_since",
            "group",
            "hostname",
            "host_uuid",
            "hypervisor_type",
            "hypervisor_version",
            "libvirt_version",
            "arch",
            "cpu_vendor",
            "cpu_model",
            "cpu_features",
            "cpu_sockets",
            "cpu_cores",
            "cpu_threads",
            "cpus",
            "memory_total_mib",
            "memory_free_mib",
            "memory_used_mib",
            "machine_types",
            "domain_types",
            "lock_manager",
            "shared_paths",
            "migration_address",
            "migration_network_address",
            "max_outbound",
            "max_inbound",
            "link_bandwidth_mib_s",
            "last_sync_at",
            "last_sync_error",
            "last_sync_error_detail",
            "last_sync_task_id",
            "vm_count",
            "registered_by_name",
            "created_at",
        ]
        read_only_fields = fields


class HostDetailSerializer(HostSerializer):
    class Meta(HostSerializer.Meta):
        fields = [*HostSerializer.Meta.fields, "cpu_xml"]
        read_only_fields = fields


class HostCreateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=100)
    uri = serializers.CharField(max_length=500)
    group = serializers.CharField(max_length=100, required=False, allow_blank=True, default="")
    sync = serializers.BooleanField(required=False, default=True)


def budget_field(help_text: str) -> serializers.IntegerField:
    """A budget: a whole number, 0 clearing it (the service checks the upper bound)."""
    return serializers.IntegerField(required=False, min_value=0, help_text=help_text)


class HostUpdateSerializer(serializers.Serializer):
    state = serializers.ChoiceField(choices=Host.State.choices, required=False)
    group = serializers.CharField(max_length=100, required=False, allow_blank=True)
    lock_manager = serializers.ChoiceField(
        choices=Host.LockManager.choices,
        required=False,
        allow_blank=True,
        help_text="the lock manager the host's qemu.conf configures (libvirt does not say)",
    )
    shared_paths = serializers.ListField(
        child=serializers.CharField(max_length=500),
        required=False,
        max_length=20,
        help_text="directories the host's qemu.conf lists in shared_filesystems",
    )
    migration_address = serializers.CharField(
        max_length=255,
        required=False,
        allow_blank=True,
        help_text="admins: IP or host name the source's libvirtd connects to for a "
        "peer-to-peer migration (empty: the URI's host)",
    )
    migration_network_address = serializers.CharField(
        max_length=255,
        required=False,
        allow_blank=True,
        help_text="admins: IP or host name on the migration network that QEMU's data stream "
        "goes to (VIR_MIGRATE_PARAM_URI; empty: the management address)",
    )
    max_outbound = budget_field(
        "moves out of this host at once, all plans (0: FERRY_HOST_MAX_OUTBOUND)"
    )
    max_inbound = budget_field(
        "moves into this host at once, all plans (0: FERRY_HOST_MAX_INBOUND)"
    )
    link_bandwidth_mib_s = budget_field(
        "bandwidth of its migration link in MiB/s (0: the policy's assumption)"
    )


class PoolUpdateSerializer(serializers.Serializer):
    max_copies = budget_field(
        "moves copying a disk out of or into this pool at once, all plans "
        "(0: FERRY_POOL_MAX_COPIES)"
    )


class MaintenanceSerializer(serializers.Serializer):
    action = serializers.ChoiceField(choices=[("enter", "enter"), ("exit", "exit")])
    reason = serializers.CharField(max_length=300, required=False, allow_blank=True, default="")


class SyncQueuedSerializer(serializers.Serializer):
    task_id = serializers.CharField()
    host = serializers.IntegerField()
    detail = serializers.CharField()


class StoragePoolSerializer(serializers.ModelSerializer):
    hosts = serializers.SlugRelatedField(many=True, read_only=True, slug_field="name")

    class Meta:
        model = StoragePool
        fields = [
            "id",
            "name",
            "pool_type",
            "shared",
            "uuid",
            "target_path",
            "source",
            "capacity_bytes",
            "allocation_bytes",
            "available_bytes",
            "active",
            "max_copies",
            "hosts",
        ]
        read_only_fields = fields


class NetworkSerializer(serializers.ModelSerializer):
    hosts = serializers.SlugRelatedField(many=True, read_only=True, slug_field="name")

    class Meta:
        model = Network
        fields = ["id", "name", "bridge", "vlan", "forward_mode", "hosts"]
        read_only_fields = fields


class VirtualDiskSerializer(serializers.ModelSerializer):
    pool_name = serializers.CharField(source="pool.name", read_only=True, default=None)

    class Meta:
        model = VirtualDisk
        fields = [
            "id",
            "target",
            "bus",
            "device",
            "source_type",
            "source",
            "pool",
            "pool_name",
            "volume",
            "format",
            "capacity_bytes",
            "allocation_bytes",
            "shareable",
            "readonly",
        ]
        read_only_fields = fields


class VirtualNICSerializer(serializers.ModelSerializer):
    class Meta:
        model = VirtualNIC
        fields = ["id", "mac", "model", "source_type", "network", "network_name", "bridge", "vlan"]
        read_only_fields = fields


class VirtualMachineSerializer(serializers.ModelSerializer):
    host_name = serializers.CharField(source="host.name", read_only=True, default=None)
    disks = VirtualDiskSerializer(many=True, read_only=True)
    nics = VirtualNICSerializer(many=True, read_only=True)

    class Meta:
        model = VirtualMachine
        fields = [
            "id",
            "uuid",
            "name",
            "host",
            "host_name",
            "state",
            "missing",
            "missing_since",
            "vcpus",
            "memory_mib",
            "max_memory_mib",
            "cpu_mode",
            "cpu_model",
            "cpu_features",
            "machine_type",
            "arch",
            "domain_type",
            "persistent",
            "autostart",
            "hostdevs",
            "tags",
            "owner",
            "criticality",
            "dirty_rate_mib_s",
            "last_seen_at",
            "disks",
            "nics",
        ]
        read_only_fields = fields
