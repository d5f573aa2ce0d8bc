"""network.attached: the destination carries every network, bridge and VLAN the VM's NICs
use (or the item maps the network to one it does carry)."""

from migrations_app.checks.base import BLOCKER, WARNING, Finding, ok


def check_network_attached(ctx, item, dest) -> Finding:
    """network.attached: every NIC finds its network (and VLAN) on the destination."""
    if item.storage_only:
        return ok("network.attached", "Storage-only move: NICs stay where they are.")
    networks = ctx.snapshot.networks
    rows, missing, unknown = [], [], []
    for nic in item.vm.nics:
        row = {"mac": nic.mac, "type": nic.source_type, "vlan": nic.vlan}
        if nic.network_name:
            wanted = item.network_map.get(nic.network_name, nic.network_name)
            row.update(network=nic.network_name, destination_network=wanted)
            net = networks.get(wanted)
            if wanted not in dest.network_names or net is None:
                missing.append(f"{nic.mac} needs network '{wanted}'")
            elif nic.vlan is not None and net.vlan is not None and nic.vlan != net.vlan:
                missing.append(
                    f"{nic.mac} is on VLAN {nic.vlan} but '{wanted}' on {dest.name} is "
                    f"VLAN {net.vlan}"
                )
        elif nic.bridge:
            row["bridge"] = nic.bridge
            carried = any(
                n.bridge == nic.bridge and n.name in dest.network_names for n in networks.values()
            )
            if not carried:
                unknown.append(f"{nic.mac} uses host bridge '{nic.bridge}'")
        rows.append(row)
    evidence = {"nics": rows, "destination_networks": sorted(dest.network_names)}
    if missing:
        return Finding(
            "network.attached",
            BLOCKER,
            f"{dest.name} cannot connect {item.vm.name}: {'; '.join(missing)}.",
            "Choose a destination that carries the network, or map it to an equivalent one "
            "(item network map).",
            evidence,
        )
    if unknown:
        return Finding(
            "network.attached",
            WARNING,
            f"Ferry cannot see host bridges outside libvirt networks: {'; '.join(unknown)}.",
            "Make sure the bridge exists on the destination (or define a libvirt network "
            "for it so Ferry can check).",
            evidence,
        )
    return ok(
        "network.attached",
        f"{dest.name} carries every network of {item.vm.name}.",
        **evidence,
    )
