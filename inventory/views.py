"""Inventory pages: hosts list, host detail with a Sync button, VM detail."""

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from dashboard.errors import FerryError
from dashboard.permissions import can, role_required, scope_filter
from inventory.capacity import planned_memory_changes
from inventory.load import load_averages
from inventory.models import Host, VirtualMachine
from inventory.services import host_add
from inventory.tasks import host_sync_enqueue


@login_required
@role_required("inventory.view")
def host_list(request):
    # vm_count is kept on the row (inventory.counts)
    hosts = _visible_hosts(request.user).order_by("name")
    context = {"hosts": hosts, "can_register": can(request.user, "host.register")}
    return render(request, "inventory/host_list.html", context)


@login_required
@require_POST
@role_required("host.register", message="Only an admin may register a host.")
def host_add_view(request):
    """The admins' registration form on the hosts page (the same service as the API)."""
    try:
        host = host_add(
            name=request.POST.get("name", ""),
            uri=request.POST.get("uri", ""),
            group=request.POST.get("group", ""),
            actor=request.user,
        )
    except FerryError as exc:
        messages.error(request, str(exc))
        return render(
            request,
            "inventory/host_list.html",
            {
                "hosts": _visible_hosts(request.user).order_by("name"),
                "can_register": True,
                "form": request.POST,
            },
            status=400,
        )
    task_id = host_sync_enqueue(host=host, user=request.user)
    messages.success(request, f"Host {host.name} registered; sync queued (task {task_id}).")
    return redirect("inventory:host-detail", pk=host.pk)


@login_required
@role_required("inventory.view")
def host_detail(request, pk):
    host = get_object_or_404(_visible_hosts(request.user), pk=pk)
    context = {
        "capacity_chart": _capacity_chart(host),
        "host": host,
        "vms": host.vms.order_by("name"),
        "pools": host.storage_pools.prefetch_related("hosts").order_by("name"),
        "networks": host.networks.order_by("name"),
        "can_manage": can(request.user, "inventory.manage"),
        "show_error_detail": can(request.user, "host.error_detail"),
        "measured": load_averages(vm_ids=[], host_ids=[host.pk])[1].get(host.pk),
        "window_minutes": settings.FERRY_LOAD_WINDOW_MINUTES,
    }
    return render(request, "inventory/host_detail.html", context)


def _visible_hosts(user, action: str = "inventory.view"):
    """The hosts a user's roles reach (a role scoped to host groups sees only those)."""
    return scope_filter(Host.objects.all(), user, action)


def _capacity_chart(host) -> dict:
    """Memory of this host now and after each open change that moves VMs in or out of it
    (the changes come from the apps registered in inventory.capacity: open plans)."""
    used = host.memory_used_mib or 0
    bars = [{"label": "now", "used": used}]
    for label, change in planned_memory_changes(host):
        bars.append({"label": f"after {label}", "used": max(used + change, 0)})
    return {"total": host.memory_total_mib or 0, "bars": bars}


@login_required
@require_POST
@role_required("inventory.manage")
def host_sync_view(request, pk):
    host = get_object_or_404(_visible_hosts(request.user, "inventory.manage"), pk=pk)
    task_id = host_sync_enqueue(host=host, user=request.user)
    messages.info(request, f"Sync of {host.name} queued (task {task_id}).")
    return redirect("inventory:host-detail", pk=host.pk)


@login_required
@role_required("inventory.view")
def vm_detail(request, pk):
    vms = scope_filter(VirtualMachine.objects, request.user, "inventory.view", "host__group")
    vm = get_object_or_404(
        vms.select_related("host").prefetch_related("disks__pool", "nics"), pk=pk
    )
    context = {
        "vm": vm,
        "measured": load_averages(vm_ids=[vm.pk], host_ids=[])[0].get(vm.pk),
        "window_minutes": settings.FERRY_LOAD_WINDOW_MINUTES,
    }
    return render(request, "inventory/vm_detail.html", context)
