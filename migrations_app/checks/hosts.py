"""Checks on the pair of hosts: distinct, usable, same hypervisor, versions, machine type."""

from migrations_app.checks.base import BLOCKER, INFO, WARNING, Finding, ok

USABLE_SOURCE_STATES = ("active", "maintenance")


def version_text(value: int | None) -> str:
    """libvirt's packed version number (major * 1,000,000 + minor * 1,000 + micro) as text."""
    if value is None:
        return "unknown"
    return f"{value // 1_000_000}.{value // 1000 % 1000}.{value % 1000}"


def check_host_distinct(ctx, item, dest) -> Finding:
    """host.distinct: a destination is chosen and differs from the source."""
    source = ctx.snapshot.hosts.get(item.source_id)
    source_name = source.name if source else str(item.source_id)
    if item.storage_only:
        return ok(
            "host.distinct",
            f"Storage-only move: {item.vm.name} stays on {source_name}.",
            source=source_name,
        )
    if dest is None:
        return Finding(
            "host.distinct",
            BLOCKER,
            f"{item.vm.name} has no destination host yet.",
            "Choose a destination, or run placement to pick one.",
            {"source": source_name, "destination": None},
        )
    if dest.id == item.source_id:
        return Finding(
            "host.distinct",
            BLOCKER,
            f"The destination of {item.vm.name} is its own host {dest.name}.",
            "Choose another destination (or use a storage-only move to move only disks).",
            {"source": source_name, "destination": dest.name},
        )
    return ok(
        "host.distinct",
        f"Moves from {source_name} to {dest.name}.",
        source=source_name,
        destination=dest.name,
    )


def check_host_state(ctx, item, dest) -> Finding:
    """host.state: destination active; source reachable (maintenance is fine: evacuation)."""
    source = ctx.snapshot.hosts.get(item.source_id)
    evidence = {
        "source": source.name if source else None,
        "source_state": source.state if source else None,
        "destination": dest.name,
        "destination_state": dest.state,
    }
    if dest.state != "active":
        return Finding(
            "host.state",
            BLOCKER,
            f"Destination {dest.name} is {dest.state}; only active hosts receive VMs.",
            f"Bring {dest.name} back to active, or choose another destination.",
            evidence,
        )
    if source is None or source.state not in USABLE_SOURCE_STATES:
        return Finding(
            "host.state",
            BLOCKER,
            f"Source {evidence['source']} is {evidence['source_state']}; Ferry cannot drive "
            "a migration from a host it cannot reach.",
            "Fix the source's connection (then sync it) before running this plan.",
            evidence,
        )
    return ok("host.state", f"{dest.name} is active; source is {source.state}.", **evidence)


def check_hypervisor_type(ctx, item, dest) -> Finding:
    """hypervisor.type: same hypervisor on both ends, and it runs this domain type."""
    source = ctx.snapshot.hosts.get(item.source_id)
    evidence = {
        "source": source.hypervisor_type if source else None,
        "destination": dest.hypervisor_type,
        "domain_type": item.vm.domain_type,
        "destination_domain_types": sorted(dest.domain_types),
    }
    if source is None or not source.hypervisor_type or not dest.hypervisor_type:
        return Finding(
            "hypervisor.type",
            WARNING,
            "The hypervisor type of one host is unknown (never synced?).",
            "Sync both hosts.",
            evidence,
        )
    if source.hypervisor_type != dest.hypervisor_type:
        return Finding(
            "hypervisor.type",
            BLOCKER,
            f"{source.name} runs {source.hypervisor_type} but {dest.name} runs "
            f"{dest.hypervisor_type}; libvirt migrates only between like hypervisors.",
            "Choose a destination with the same hypervisor.",
            evidence,
        )
    if item.vm.domain_type and dest.domain_types and item.vm.domain_type not in dest.domain_types:
        return Finding(
            "hypervisor.type",
            BLOCKER,
            f"{dest.name} cannot run '{item.vm.domain_type}' domains "
            f"(it offers {', '.join(sorted(dest.domain_types))}).",
            "Choose a destination with that accelerator (e.g. KVM enabled).",
            evidence,
        )
    return ok("hypervisor.type", f"Both hosts run {dest.hypervisor_type}.", **evidence)


def check_hypervisor_version(ctx, item, dest) -> Finding:
    """hypervisor.version: destination QEMU and libvirt not older than the source."""
    source = ctx.snapshot.hosts.get(item.source_id)
    pairs = {
        "hypervisor": (source.hypervisor_version if source else None, dest.hypervisor_version),
        "libvirt": (source.libvirt_version if source else None, dest.libvirt_version),
    }
    evidence = {
        f"{name}_{end}": version_text(value)
        for name, (src, dst) in pairs.items()
        for end, value in (("source", src), ("destination", dst))
    }
    if any(src is None or dst is None for src, dst in pairs.values()):
        return Finding(
            "hypervisor.version",
            WARNING,
            "A hypervisor or libvirt version is unknown, so Ferry cannot compare them.",
            "Sync both hosts.",
            evidence,
        )
    older = [name for name, (src, dst) in pairs.items() if dst < src]
    if older:
        words = " and ".join(
            f"{name} {version_text(pairs[name][1])} < {version_text(pairs[name][0])}"
            for name in older
        )
        return Finding(
            "hypervisor.version",
            BLOCKER,
            f"{dest.name} is older than the source ({words}); migrating to an older "
            "QEMU/libvirt is not supported.",
            "Upgrade the destination first, or choose a destination at least as new.",
            evidence,
        )
    if any(src != dst for src, dst in pairs.values()):
        return Finding(
            "hypervisor.version",
            WARNING,
            f"{dest.name} runs newer versions than the source; fine for the move, but the "
            "VM cannot come back until the source is upgraded.",
            "Plan the way back (or upgrade the source) before you need it.",
            evidence,
        )
    return ok("hypervisor.version", "Both hosts run the same QEMU and libvirt.", **evidence)


def check_machine_type(ctx, item, dest) -> Finding:
    """machine.type: the destination's QEMU offers the guest's machine type."""
    machine = item.vm.machine_type
    evidence = {"machine_type": machine, "destination_offers": len(dest.machine_types)}
    if not machine:
        return Finding(
            "machine.type",
            INFO,
            f"{item.vm.name} names no machine type; libvirt checks it when the move starts.",
            "",
            evidence,
        )
    if not dest.machine_types:
        return Finding(
            "machine.type",
            INFO,
            f"{dest.name} did not report its machine types; libvirt checks "
            f"'{machine}' when the move starts.",
            "",
            evidence,
        )
    if machine not in dest.machine_types:
        same_family = sorted(
            m for m in dest.machine_types if m.split("-")[:2] == machine.split("-")[:2]
        )
        evidence["destination_similar"] = same_family[-5:]
        return Finding(
            "machine.type",
            BLOCKER,
            f"{dest.name} does not offer machine type '{machine}' that {item.vm.name} runs "
            "with; the guest cannot resume there.",
            "Choose a destination with a QEMU that offers this machine type (usually a newer "
            "one), or change the guest's machine type at its next reboot.",
            evidence,
        )
    return ok("machine.type", f"{dest.name} offers '{machine}'.", **evidence)
