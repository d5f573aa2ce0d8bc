"""The gate and the health check of a campaign step, asked of libvirt (not the inventory).

A rehearsal (a host on libvirt's test driver) moves nothing for real: its gate counts the
VMs libvirt lists as running on the host, less those whose move in this campaign the
rehearsal driver completed, and says so in the evidence.
"""

from dataclasses import dataclass, field

from django.conf import settings

from inventory.libvirt_client import HostUnreachable, open_connection
from inventory.libvirt_read import read_domain_states
from inventory.models import Host
from inventory.sync import host_sync
from migrations_app.models import MigrationPlan, PlanItem

RUNNING = ("running", "paused")


@dataclass
class GateResult:
    """Whether the host may get its action, and the evidence."""

    ok: bool
    reason: str = ""
    evidence: dict = field(default_factory=dict)


def _libvirt_running(host: Host) -> set[str]:
    conn = open_connection(host.uri, settings.LIBVIRT_CONNECT_TIMEOUT)
    try:
        return {uuid for uuid, state in read_domain_states(conn).items() if state in RUNNING}
    finally:
        conn.close()


def host_gate(host: Host, plan: MigrationPlan | None) -> GateResult:
    """Open only when every item of the evacuation plan succeeded and libvirt shows no VM
    running or paused on the host."""
    items = list(plan.items.select_related("vm")) if plan is not None else []
    unfinished = [i for i in items if i.status != PlanItem.Status.COMPLETED]
    evidence: dict = {"items": len(items), "not_completed": [i.vm.name for i in unfinished]}
    if unfinished:
        names = ", ".join(sorted(i.vm.name for i in unfinished)[:10])
        return GateResult(
            False, f"{len(unfinished)} VM(s) of the evacuation did not move: {names}.", evidence
        )
    try:
        running = _libvirt_running(host)
    except HostUnreachable as exc:
        return GateResult(False, f"{host.name} did not answer libvirt: {exc.reason}.", evidence)
    if host.transport == Host.Transport.TEST:
        moved = {str(i.vm.uuid) for i in items}
        evidence["rehearsal"] = "moves are simulated: VMs this campaign moved are not counted"
        running -= moved
    names = dict(host.vms.filter(uuid__in=list(running)).values_list("uuid", "name"))
    evidence["running_on_host"] = sorted(names.get(u, u) for u in map(str, running))[:50]
    if running:
        listed = ", ".join(evidence["running_on_host"][:10])
        return GateResult(
            False,
            f"libvirt still shows {len(running)} running VM(s) on {host.name}: {listed}.",
            evidence,
        )
    return GateResult(True, "", evidence)


def host_facts(host: Host) -> dict:
    """What must not go backwards across a host action."""
    return {
        "libvirt_version": host.libvirt_version,
        "hypervisor_version": host.hypervisor_version,
        "hypervisor_type": host.hypervisor_type,
        "arch": host.arch,
        "cpu_vendor": host.cpu_vendor,
    }


def host_healthy(host: Host, before: dict, *, actor) -> GateResult:
    """The host answers libvirt, syncs, and its checks pass: same arch, CPU vendor and
    hypervisor, versions not older than before the action."""
    result = host_sync(host=host, actor=actor)
    if not result.ok:
        return GateResult(False, f"sync of {host.name} failed: {result.error}")
    host.refresh_from_db()
    now = host_facts(host)
    problems = []
    for key in ("arch", "cpu_vendor", "hypervisor_type"):
        if before.get(key) and now.get(key) != before.get(key):
            problems.append(f"{key} changed from {before[key]} to {now.get(key)}")
    for key in ("libvirt_version", "hypervisor_version"):
        if before.get(key) and (now.get(key) or 0) < before[key]:
            problems.append(f"{key} went back from {before[key]} to {now.get(key)}")
    if problems:
        return GateResult(False, "; ".join(problems), {"before": before, "after": now})
    return GateResult(True, "", {"before": before, "after": now})
