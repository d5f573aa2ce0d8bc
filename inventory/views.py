"""Inventory pages: hosts list, host detail with a Sync button, VM detail."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db.models import Count, Q
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from dashboard.accounts.decorators import role_required
from dashboard.accounts.permissions import can
from inventory.models import Host, VirtualMachine
from inventory.tasks import host_sync_enqueue


@login_required
@role_required("inventory.view")
def host_list(request):
    hosts = Host.objects.annotate(vm_count=Count("vms")).order_by("name")
    return render(request, "inventory/host_list.html", {"hosts": hosts})


@login_required
@role_required("inventory.view")
def host_detail(request, pk):
    host = get_object_or_404(Host, pk=pk)
    context = {
        "capacity_chart": _capacity_chart(host),
        "host": host,
        "vms": host.vms.order_by("name"),
        "pools": host.storage_pools.prefetch_related("hosts").order_by("name"),
        "networks": host.networks.order_by("name"),
        "can_manage": can(request.user, "inventory.manage"),
    }
    return render(request, "inventory/host_detail.html", context)


def _capacity_chart(host) -> dict:
    """Memory of this host now and after each open plan that moves VMs in or out of it."""
    from migrations_app.models import MigrationPlan, PlanItem

    used = host.memory_used_mib or 0
    total = host.memory_total_mib or 0
    bars = [{"label": "now", "used": used}]
    touching = (
        PlanItem.objects.filter(plan__status__in=MigrationPlan.EDITABLE | {"running", "paused"})
        .exclude(mode=PlanItem.Mode.STORAGE_ONLY)
        .filter(Q(source_host=host) | Q(destination_host=host))
        .select_related("vm", "plan")
    )
    delta: dict[int, tuple[str, int]] = {}
    for item in touching:
        if item.status == "completed":
            continue  # already reflected in the host's current memory
        name, change = delta.get(item.plan_id, (item.plan.name, 0))
        if item.destination_host_id == host.pk:
            change += item.vm.memory_mib
        if item.source_host_id == host.pk:
            change -= item.vm.memory_mib
        delta[item.plan_id] = (name, change)
    for name, change in delta.values():
        bars.append({"label": f"after {name}", "used": max(used + change, 0)})
    return {"total": total, "bars": bars}


@login_required
@require_POST
@role_required("inventory.manage")
def host_sync_view(request, pk):
    host = get_object_or_404(Host, pk=pk)
    task_id = host_sync_enqueue(host=host, user=request.user)
    messages.info(request, f"Sync of {host.name} queued (task {task_id}).")
    return redirect("inventory:host-detail", pk=host.pk)


@login_required
@role_required("inventory.view")
def vm_detail(request, pk):
    vm = get_object_or_404(
        VirtualMachine.objects.select_related("host").prefetch_related("disks__pool", "nics"), pk=pk
    )
    return render(request, "inventory/vm_detail.html", {"vm": vm})
