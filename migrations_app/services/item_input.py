"""Turning what a person sent (ids, names, maps, overrides) into checked values, with
messages that say exactly what was wrong."""

from dashboard.permissions import scope_filter
from inventory.models import Host, Network, StoragePool, VirtualMachine
from migrations_app.errors import PlanError
from migrations_app.models import MigrationPlan, PlanItem
from migrations_app.policy import PolicyError


def clean_mode(mode) -> str:
    if mode not in PlanItem.Mode.values:
        raise PlanError(
            f"'{mode}' is not a migration mode; use one of {', '.join(PlanItem.Mode.values)}."
        )
    return mode


def _as_id(value, what: str) -> int:
    if isinstance(value, bool):
        raise PlanError(f"{what} id must be a number, not {value!r}.")
    try:
        return int(value)
    except (TypeError, ValueError):
        raise PlanError(f"{what} id must be a number, not {value!r}.") from None


def resolve_vms(vms, *, lock: bool = False, scope=None) -> list[VirtualMachine]:
    """VM objects for a list of VMs or ids, in the order given (duplicates dropped); with a
    role `scope` (host group names), a VM on a host outside it is as unknown as a missing one."""
    vms = list(vms or [])
    if not vms:
        raise PlanError("No VMs given.")
    ids = []
    for vm in vms:
        pk = vm.pk if isinstance(vm, VirtualMachine) else _as_id(vm, "VM")
        if pk not in ids:
            ids.append(pk)
    qs = VirtualMachine.objects.select_related("host").filter(pk__in=ids)
    if scope is not None:
        qs = qs.filter(host__group__in=sorted(scope))
    if lock:
        # Adding the same VM to two plans at once: the row lock makes the second wait
        # and then see the first plan's item.
        qs = qs.select_for_update(of=("self",), no_key=True)
    found = {vm.pk: vm for vm in qs}
    unknown = [str(pk) for pk in ids if pk not in found]
    if unknown:
        raise PlanError(f"Unknown VM id(s): {', '.join(unknown)}.")
    return [found[pk] for pk in ids]


def resolve_group(group, actor) -> str:
    """A host group name that has hosts the actor's role reaches (a role scoped to host
    groups finds the others as unknown as a group without hosts)."""
    group = (group or "").strip() if isinstance(group, str) else ""
    reachable = scope_filter(Host.objects.all(), actor, "plan.edit")
    if not group or not reachable.filter(group=group).exists():
        known = sorted(set(reachable.exclude(group="").values_list("group", flat=True)))
        raise PlanError(
            f"No host is in group '{group}'. Known groups: {', '.join(known) or 'none'}."
        )
    return group


def resolve_host(host, *, scope=None) -> Host:
    """A Host from a Host, an id or a name; with a role `scope` (host group names), a host
    outside it is as unknown as a missing one."""
    if isinstance(host, Host):
        if scope is not None and host.group not in scope:
            raise PlanError(f"Unknown host id {host.pk}.")
        return host
    hosts = Host.objects.filter(group__in=sorted(scope)) if scope is not None else Host.objects
    if isinstance(host, str) and not host.strip().isdigit():
        # No stored name holds a NUL, and PostgreSQL refuses one even in a lookup (a 500).
        found = None if "\x00" in host else hosts.filter(name=host.strip()).first()
        if found is None:
            raise PlanError(f"Unknown host '{host}'.")
        return found
    pk = _as_id(host, "Host")
    found = hosts.filter(pk=pk).first()
    if found is None:
        raise PlanError(f"Unknown host id {pk}.")
    return found


def clean_storage_map(mapping, vm: VirtualMachine) -> dict:
    """{source pool id: destination pool id} for pools this VM's disks are on."""
    if mapping in (None, ""):
        return {}
    if not isinstance(mapping, dict):
        raise PlanError("storage_map must be an object: {source pool id: destination pool id}.")
    out = {}
    vm_pools = set(vm.disks.exclude(pool=None).values_list("pool_id", flat=True))
    pool_ids = {_as_id(k, "Pool") for k in mapping} | {_as_id(v, "Pool") for v in mapping.values()}
    known = set(StoragePool.objects.filter(pk__in=pool_ids).values_list("pk", flat=True))
    for key, value in mapping.items():
        src, dst = _as_id(key, "Pool"), _as_id(value, "Pool")
        for pk in (src, dst):
            if pk not in known:
                raise PlanError(f"Unknown storage pool id {pk}.")
        if src not in vm_pools:
            raise PlanError(f"{vm.name} has no disk on pool {src}; storage_map cannot map it.")
        if src == dst:
            raise PlanError(f"storage_map maps pool {src} to itself.")
        out[str(src)] = dst
    return out


def clean_network_map(mapping, vm: VirtualMachine) -> dict:
    """{source network name: destination network name} for networks this VM's NICs use."""
    if mapping in (None, ""):
        return {}
    if not isinstance(mapping, dict):
        raise PlanError("network_map must be an object: {source network: destination network}.")
    used = set(vm.nics.exclude(network_name="").values_list("network_name", flat=True))
    known = set(
        Network.objects.filter(name__in=list(mapping.values())).values_list("name", flat=True)
    )
    out = {}
    for key, value in mapping.items():
        if not isinstance(value, str) or not value:
            raise PlanError(f"network_map['{key}'] must name a network.")
        if key not in used:
            raise PlanError(f"{vm.name} has no NIC on network '{key}'.")
        if value not in known:
            raise PlanError(f"Unknown network '{value}'.")
        out[key] = value
    return out


def clean_overrides(overrides, plan: MigrationPlan) -> dict:
    """Per-item policy overrides, validated on top of the plan's policy."""
    if overrides in (None, ""):
        return {}
    if not isinstance(overrides, dict):
        raise PlanError("policy_overrides must be an object of policy fields.")
    try:
        plan.get_policy().with_overrides(overrides)
    except PolicyError as exc:
        raise PlanError(str(exc)) from None
    except TypeError as exc:
        raise PlanError(f"Policy value of the wrong type: {exc}") from None
    return dict(overrides)
