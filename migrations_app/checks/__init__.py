"""The checks, one module per family, and the runner that applies them to a plan.

Three kinds, by what they read:
- ITEM_CHECKS look only at the item (its VM, the estimate, the window);
- HOST_CHECKS compare the item with one destination host and nothing else, so placement
  may evaluate them once per kind of VM and source (see placement.py);
- LOAD_CHECKS also read the ledger of what the plan already sends to each host.
Every check is `fn(ctx, item, dest) -> Finding`, pure: it reads the snapshot in `ctx` and
never the database.
"""

from migrations_app.checks.base import BLOCKER, INFO, OK, WARNING, Finding  # noqa: F401
from migrations_app.checks.capacity import check_capacity_cpu, check_capacity_memory
from migrations_app.checks.context import CheckContext, Ledger
from migrations_app.checks.cpu import check_cpu_compat
from migrations_app.checks.hosts import (
    check_host_distinct,
    check_host_state,
    check_hypervisor_type,
    check_hypervisor_version,
    check_machine_type,
)
from migrations_app.checks.network import check_network_attached
from migrations_app.checks.plan import check_affinity, check_convergence, check_window
from migrations_app.checks.rules import check_rule_anti, check_rule_together
from migrations_app.checks.security import check_security_transport
from migrations_app.checks.snapshot import Snapshot
from migrations_app.checks.storage import (
    check_storage_capacity,
    check_storage_devices,
    check_storage_shared,
)
from migrations_app.checks.transfer import check_migration_network, check_transfer_features
from migrations_app.checks.vm import check_devices_passthrough, check_vm_state

ITEM_CHECKS = (
    ("vm.state", check_vm_state),
    ("devices.passthrough", check_devices_passthrough),
    ("storage.devices", check_storage_devices),
    ("convergence", check_convergence),
    ("window", check_window),
)
HOST_CHECKS = (
    ("host.state", check_host_state),
    ("hypervisor.type", check_hypervisor_type),
    ("hypervisor.version", check_hypervisor_version),
    ("machine.type", check_machine_type),
    ("cpu.compat", check_cpu_compat),
    ("storage.shared", check_storage_shared),
    ("network.attached", check_network_attached),
    ("security.transport", check_security_transport),
    ("network.migration", check_migration_network),
    ("transfer.features", check_transfer_features),
)
LOAD_CHECKS = (
    ("capacity.memory", check_capacity_memory),
    ("capacity.cpu", check_capacity_cpu),
    ("storage.capacity", check_storage_capacity),
    ("affinity", check_affinity),
    ("rule.anti-affinity", check_rule_anti),
    ("rule.affinity", check_rule_together),
)
CHECK_IDS = tuple(
    [cid for cid, _ in ITEM_CHECKS]
    + ["host.distinct"]
    + [cid for cid, _ in HOST_CHECKS]
    + [cid for cid, _ in LOAD_CHECKS]
)


def item_findings(ctx: CheckContext, item, dest, *, skip=()) -> list[Finding]:
    """Every check on one item with one destination (dest None: destination checks skipped,
    host.distinct says a destination is missing)."""
    findings = [fn(ctx, item, dest) for cid, fn in ITEM_CHECKS if cid not in skip]
    findings.append(check_host_distinct(ctx, item, dest))
    if dest is None:
        return findings
    findings.extend(fn(ctx, item, dest) for cid, fn in HOST_CHECKS if cid not in skip)
    findings.extend(fn(ctx, item, dest) for cid, fn in LOAD_CHECKS if cid not in skip)
    return findings


def checks_run(snapshot: Snapshot, estimates: dict | None = None) -> list[tuple]:
    """Run every check on every item of the snapshot, in plan order.

    Returns [(ItemInfo, [Finding, ...]), ...]. VMs the plan moves away credit their host
    up front; what the plan sends to a host is charged item by item, so when two items do
    not both fit the later one (in plan order) gets the blocker.
    """
    ctx = CheckContext(snapshot=snapshot, ledger=Ledger(), estimates=estimates or {})
    hosts = snapshot.hosts
    for item in snapshot.items:
        ctx.ledger.add_outbound(item, hosts.get(item.destination_id))
    results = []
    for item in snapshot.items:
        dest = hosts.get(item.destination_id)
        results.append((item, item_findings(ctx, item, dest)))
        ctx.ledger.add_inbound(snapshot, item, dest)
    return results
