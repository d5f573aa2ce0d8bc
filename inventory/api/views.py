"""Inventory API: thin views that read through querysets and write through services."""

from drf_spectacular.utils import extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import PermissionDenied, ValidationError
from rest_framework.permissions import SAFE_METHODS, IsAuthenticated
from rest_framework.response import Response

from dashboard.api.permissions import action_permission
from dashboard.permissions import can, in_scope, scope_filter, scope_of
from inventory.api import filters, serializers
from inventory.models import Host, Network, StoragePool, VirtualMachine, deferred_host_fields
from inventory.services import (
    host_add,
    host_maintenance_enter,
    host_maintenance_exit,
    host_update,
    pool_update,
)
from inventory.tasks import host_sync_enqueue

InventoryPermission = action_permission("inventory.view", "inventory.manage")


def _scope_action(request, view=None) -> str:
    """Reads show what the user may view; writes reach only what they may manage (a role
    scoped to host groups sees the rest as absent: 404); maintenance, what the role may put
    into maintenance."""
    if request.method in SAFE_METHODS:
        return "inventory.view"
    if getattr(view, "action", None) == "maintenance":
        return "host.maintenance"
    return "inventory.manage"


class HostViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    mixins.UpdateModelMixin,
    viewsets.GenericViewSet,
):
    """Hosts: list, register (POST name + uri), change state/group, queue a sync."""

    permission_classes = [InventoryPermission]
    filterset_class = filters.HostFilter
    search_fields = ["name", "hostname", "uri", "cpu_model"]
    ordering_fields = ["name", "state", "memory_free_mib", "last_sync_at"]
    http_method_names = ["get", "post", "patch", "head", "options"]

    def get_queryset(self):
        # vm_count is a column the sync keeps (inventory.counts): a count per listed host
        # grew with the VMs per host (1.58x at 100,000 VMs, issue 19).
        hosts = Host.objects.order_by("name")
        return scope_filter(hosts, self.request.user, _scope_action(self.request, self))

    def get_serializer_class(self):
        if self.action == "create":
            return serializers.HostCreateSerializer
        if self.action == "partial_update":
            return serializers.HostUpdateSerializer
        if self.action == "retrieve":
            return serializers.HostDetailSerializer
        return serializers.HostSerializer

    @extend_schema(responses={201: serializers.HostSerializer})
    def create(self, request, *args, **kwargs):
        """Register a host (admins only: its URI is allowlisted and run as code)."""
        if not can(request.user, "host.register"):
            raise PermissionDenied("Only an admin may register a host (its URI is run as code).")
        data = validated(serializers.HostCreateSerializer, request.data)
        host = host_add(name=data["name"], uri=data["uri"], group=data["group"], actor=request.user)
        task_id = host_sync_enqueue(host=host, user=request.user) if data["sync"] else ""
        host = self.get_queryset().get(pk=host.pk)
        body = serializers.HostSerializer(host, context=self.get_serializer_context()).data
        body["last_sync_task_id"] = task_id
        return Response(body, status=status.HTTP_201_CREATED)

    @extend_schema(responses={200: serializers.HostSerializer})
    def partial_update(self, request, *args, **kwargs):
        data = validated(serializers.HostUpdateSerializer, request.data)
        if "group" in data and not in_scope(
            scope_of(request.user, "inventory.manage"), [data["group"]]
        ):
            raise PermissionDenied(
                f"Your role does not reach host group '{data['group']}': you may move hosts "
                "only between the groups you manage."
            )
        host = host_update(host=self.get_object(), actor=request.user, **data)
        row = self.get_queryset().get(pk=host.pk)
        return Response(serializers.HostSerializer(row, context=self.get_serializer_context()).data)

    def update(self, request, *args, **kwargs):
        return self.partial_update(request, *args, **kwargs)

    @extend_schema(request=None, responses={202: serializers.SyncQueuedSerializer})
    @action(detail=True, methods=["post"])
    def sync(self, request, pk=None):
        """Queue a sync of this host; the answer carries the task id."""
        host = self.get_object()
        task_id = host_sync_enqueue(host=host, user=request.user)
        return Response(
            {"task_id": task_id, "host": host.pk, "detail": f"Sync of {host.name} queued."},
            status=status.HTTP_202_ACCEPTED,
        )

    @extend_schema(
        request=serializers.MaintenanceSerializer, responses={200: serializers.HostSerializer}
    )
    @action(
        detail=True, methods=["post"], url_path="maintenance", permission_classes=[IsAuthenticated]
    )
    def maintenance(self, request, pk=None):
        """Enter or exit maintenance (operators, admins): a host in maintenance receives no
        new VMs from placement, balance plans or checks."""
        if not can(request.user, "host.maintenance"):
            raise PermissionDenied("Your role does not allow you to change host maintenance.")
        target = self.get_object()  # a host outside the role's scope is absent (404)
        data = validated(serializers.MaintenanceSerializer, request.data)
        service = host_maintenance_enter if data["action"] == "enter" else host_maintenance_exit
        host = service(host=target, actor=request.user, reason=data["reason"])
        row = self.get_queryset().get(pk=host.pk)
        return Response(serializers.HostSerializer(row, context=self.get_serializer_context()).data)


def validated(serializer_class, data):
    """The serializer's validated data; unknown fields are refused, not ignored."""
    unknown = set(getattr(data, "keys", lambda: [])()) - set(serializer_class().fields)
    if unknown:
        raise ValidationError({"detail": f"Unknown field(s): {', '.join(sorted(unknown))}."})
    serializer = serializer_class(data=data)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


class StoragePoolViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.UpdateModelMixin,
    viewsets.GenericViewSet,
):
    """Storage pools, one row per pool however many hosts reach it; PATCH sets its copy
    budget."""

    permission_classes = [InventoryPermission]
    serializer_class = serializers.StoragePoolSerializer
    filterset_class = filters.StoragePoolFilter
    search_fields = ["name", "source", "target_path"]
    ordering_fields = ["name", "available_bytes", "capacity_bytes"]
    queryset = StoragePool.objects.prefetch_related("hosts").order_by("name", "id")
    http_method_names = ["get", "patch", "head", "options"]

    def get_serializer_class(self):
        if self.action == "partial_update":
            return serializers.PoolUpdateSerializer
        return serializers.StoragePoolSerializer

    @extend_schema(responses={200: serializers.StoragePoolSerializer})
    def partial_update(self, request, *args, **kwargs):
        data = validated(serializers.PoolUpdateSerializer, request.data)
        pool = pool_update(pool=self.get_object(), actor=request.user, **data)
        row = self.get_queryset().get(pk=pool.pk)
        context = self.get_serializer_context()
        return Response(serializers.StoragePoolSerializer(row, context=context).data)

    def get_queryset(self):
        return _reachable(self.queryset, self.request)


class NetworkViewSet(viewsets.ReadOnlyModelViewSet):
    """Networks and the hosts that carry them."""

    permission_classes = [InventoryPermission]
    serializer_class = serializers.NetworkSerializer
    filterset_class = filters.NetworkFilter
    search_fields = ["name", "bridge"]
    ordering_fields = ["name"]
    queryset = Network.objects.prefetch_related("hosts").order_by("name")

    def get_queryset(self):
        return _reachable(self.queryset, self.request)


class VirtualMachineViewSet(viewsets.ReadOnlyModelViewSet):
    """VMs with their disks and NICs."""

    permission_classes = [InventoryPermission]
    serializer_class = serializers.VirtualMachineSerializer
    filterset_class = filters.VirtualMachineFilter
    search_fields = ["name", "uuid", "owner"]
    ordering_fields = ["name", "memory_mib", "vcpus", "state"]
    queryset = (
        VirtualMachine.objects.select_related("host")
        .defer("xml", *deferred_host_fields("host"))  # the list shows the host's name only
        .prefetch_related("disks__pool", "nics")
        .order_by("name", "id")
    )

    def get_queryset(self):
        return scope_filter(self.queryset, self.request.user, "inventory.view", "host__group")


def _reachable(queryset, request):
    """Pools and networks reached by at least one host the user may see."""
    narrowed = scope_filter(queryset, request.user, "inventory.view", "hosts__group")
    return queryset if narrowed is queryset else narrowed.distinct()
