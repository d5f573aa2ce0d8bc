"""Per-host aggregates kept on the host row (issue 19, W2): list pages read a column instead
of counting every host's VMs on each request."""

from django.db.models import Count, OuterRef, Subquery
from django.db.models.functions import Coalesce

from inventory.models import Host, VirtualMachine


def hosts_vm_count_refresh(host_ids=None) -> int:
    """Recount the VMs of the given hosts (all hosts when None) in one UPDATE; returns the
    number of hosts updated. Call it in the transaction that changed VM placement."""
    counted = (
        VirtualMachine.objects.filter(host=OuterRef("pk"))
        .order_by()
        .values("host")
        .annotate(n=Count("id"))
        .values("n")
    )
    hosts = Host.objects.all()
    if host_ids is not None:
        ids = [pk for pk in set(host_ids) if pk is not None]
        if not ids:
            return 0
        hosts = hosts.filter(pk__in=ids)
    return hosts.update(vm_count=Coalesce(Subquery(counted), 0))
