"""Inventory API: thin views that read through querysets and write through services."""

from django.db.models import Count, OuterRef, Subquery
from django.db.models.functions import Coalesce
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import PermissionDenied, ValidationError
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response

from dashboard.api.permissions import action_permission
from dashboard.permissions import can
from inventory.api import filters, serializers
from inventory.models import Host, Network, StoragePool, VirtualMachine
from inventory.services import (
    host_add,
    host_maintenance_enter,
    host_maintenance_exit,
    host_update,
)
from inventory.tasks import host_sync_enqueue

InventoryPermission = action_permission("inventory.view", "inventory.manage")


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
        # A correlated count per listed host (uses the host index on VMs) instead of a
        # GROUP BY over every VM, so the page costs the same at 100 or 100,000 VMs.
        vm_count = (
            VirtualMachine.objects.filter(host=OuterRef("pk"))
            .order_by()
            .values("host")
            .annotate(n=Count("id"))
            .values("n")
        )
        return Host.objects.annotate(vm_count=Coalesce(Subquery(vm_count), 0)).order_by("name")

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
        data = self._validated(serializers.HostCreateSerializer, request.data)
        host = host_add(name=data["name"], uri=data["uri"], group=data["group"], actor=request.user)
        task_id = host_sync_enqueue(host=host, user=request.user) if data["sync"] else ""
        host = self.get_queryset().get(pk=host.pk)
        body = serializers.HostSerializer(host, context=self.get_serializer_context()).data
        body["last_sync_task_id"] = task_id
        return Response(body, status=status.HTTP_201_CREATED)

    @extend_schema(responses={200: serializers.HostSerializer})
    def partial_update(self, request, *args, **kwargs):
        data = self._validated(serializers.HostUpdateSerializer, request.data)
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
        data = self._validated(serializers.MaintenanceSerializer, request.data)
        service = host_maintenance_enter if data["action"] == "enter" else host_maintenance_exit
        host = service(host=self.get_object(), actor=request.user, reason=data["reason"])
        row = self.get_queryset().get(pk=host.pk)
        return Response(serializers.HostSerializer(row, context=self.get_serializer_context()).data)

    @staticmethod
    def _validated(serializer_class, data):
        unknown = set(getattr(data, "keys", lambda: [])()) - set(serializer_class().fields)
        if unknown:
            raise ValidationError({"detail": f"Unknown field(s): {', '.join(sorted(unknown))}."})
        serializer = serializer_class(data=data)
        serializer.is_valid(raise_exception=True)
        return serializer.validated_data


class StoragePoolViewSet(viewsets.ReadOnlyModelViewSet):
    """Storage pools, one row per pool however many hosts reach it."""

    permission_classes = [InventoryPermission]
    serializer_class = serializers.StoragePoolSerializer
    filterset_class = filters.StoragePoolFilter
    search_fields = ["name", "source", "target_path"]
    ordering_fields = ["name", "available_bytes", "capacity_bytes"]
    queryset = StoragePool.objects.prefetch_related("hosts").order_by("name", "id")


class NetworkViewSet(viewsets.ReadOnlyModelViewSet):
    """Networks and the hosts that carry them."""

    permission_classes = [InventoryPermission]
    serializer_class = serializers.NetworkSerializer
    filterset_class = filters.NetworkFilter
    search_fields = ["name", "bridge"]
    ordering_fields = ["name"]
    queryset = Network.objects.prefetch_related("hosts").order_by("name")


class VirtualMachineViewSet(viewsets.ReadOnlyModelViewSet):
    """VMs with their disks and NICs."""

    permission_classes = [InventoryPermission]
    serializer_class = serializers.VirtualMachineSerializer
    filterset_class = filters.VirtualMachineFilter
    search_fields = ["name", "uuid", "owner"]
    ordering_fields = ["name", "memory_mib", "vcpus", "state"]
    queryset = (
        VirtualMachine.objects.select_related("host")
        .prefetch_related("disks__pool", "nics")
        .order_by("name", "id")
    )
