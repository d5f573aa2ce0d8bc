"""The UI shell: home overview."""

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.db.models import Count, Sum
from django.shortcuts import render

from dashboard.audit.models import AuditEvent
from dashboard.permissions import can, scope_filter
from inventory.models import Host, Network, StoragePool, VirtualMachine


@login_required
def home(request):
    # Host names and capacity are inventory: a signed-in account without a role sees none.
    if not can(request.user, "inventory.view"):
        raise PermissionDenied("Your account has no role yet; ask an admin for one.")

    # A role scoped to host groups sees the overview of those groups only.
    def mine(queryset, field="group"):
        return scope_filter(queryset, request.user, "inventory.view", field)

    hosts = list(mine(Host.objects).order_by("name"))
    by_state = dict.fromkeys(Host.State.values, 0)
    for host in hosts:
        by_state[host.state] += 1
    vms = mine(VirtualMachine.objects, "host__group")
    vm_counts = vms.aggregate(total=Count("id"), memory=Sum("memory_mib"))
    chart = {
        "hosts": [h.name for h in hosts],
        "used": [h.memory_used_mib or 0 for h in hosts],
        "free": [h.memory_free_mib or 0 for h in hosts],
    }
    context = {
        "host_count": len(hosts),
        "hosts_by_state": by_state,
        "vm_count": vm_counts["total"] or 0,
        "vm_running": vms.filter(state="running", missing=False).count(),
        "vm_missing": vms.filter(missing=True).count(),
        "pool_count": mine(StoragePool.objects, "hosts__group").distinct().count(),
        "network_count": mine(Network.objects, "hosts__group").distinct().count(),
        "memory_chart": chart,
        "recent_events": AuditEvent.objects.order_by("-sequence")[:10]
        if can(request.user, "audit.view")
        else [],
    }
    return render(request, "dashboard/home.html", context)
