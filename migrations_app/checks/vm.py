"""Checks on the VM itself: its state and its passthrough devices."""

from migrations_app.checks.base import BLOCKER, Finding, ok

LIVE_STATES = ("running", "paused")
OPEN_STATUS_LABEL = "open"


def check_vm_state(ctx, item, dest) -> Finding:
    """vm.state: running or paused, where the plan thinks it is, and in no other open plan."""
    vm = item.vm
    evidence = {"state": vm.state, "missing": vm.missing, "host_id": vm.host_id}
    if vm.missing:
        return Finding(
            "vm.state",
            BLOCKER,
            f"{vm.name} was not seen on its host at the last sync.",
            "Sync the host; if the VM is gone, remove it from the plan.",
            evidence,
        )
    if vm.host_id != item.source_id:
        now_on = ctx.snapshot.hosts.get(vm.host_id)
        source = ctx.snapshot.hosts.get(item.source_id)
        evidence.update(
            item_source=source.name if source else None, now_on=now_on.name if now_on else None
        )
        return Finding(
            "vm.state",
            BLOCKER,
            f"{vm.name} is now on {evidence['now_on'] or 'no host'}, not on "
            f"{evidence['item_source']} where the plan expects it.",
            "Remove the VM from the plan and add it again.",
            evidence,
        )
    if vm.state not in LIVE_STATES:
        return Finding(
            "vm.state",
            BLOCKER,
            f"{vm.name} is {vm.state}; only running or paused VMs can be live-migrated.",
            "Start the VM, or remove it from the plan (moving stopped VMs is not live migration).",
            evidence,
        )
    other = ctx.snapshot.other_plans.get(vm.id)
    if other is not None:
        plan_id, name, status = other
        evidence.update(other_plan_id=plan_id, other_plan=name, other_plan_status=status)
        return Finding(
            "vm.state",
            BLOCKER,
            f"{vm.name} is already in plan '{name}' ({status}).",
            "Remove it from that plan (or cancel that plan) first.",
            evidence,
        )
    return ok("vm.state", f"{vm.name} is {vm.state} and in no other open plan.", **evidence)


def check_devices_passthrough(ctx, item, dest) -> Finding:
    """devices.passthrough: PCI/USB/mdev host devices pin a VM to its host."""
    devices = item.vm.hostdevs
    if devices:
        listed = ", ".join(f"{d.get('type', '?')} {d.get('id', '')}".strip() for d in devices)
        return Finding(
            "devices.passthrough",
            BLOCKER,
            f"{item.vm.name} uses host devices ({listed}); QEMU cannot live-migrate them.",
            "Detach the devices before the move (and attach the destination's own "
            "afterwards), or leave this VM out of the plan.",
            {"hostdevs": devices},
        )
    return ok("devices.passthrough", "No passthrough host devices.", hostdevs=[])
