"""How the data travels: the migration network (network.migration) and the parallel
connections and compression the policy asks for (transfer.features).

Versions are libvirt's packed numbers (major * 1,000,000 + minor * 1,000 + micro), as the
inventory stores them for both libvirt and QEMU. Why these minimums:
- parallel migration (VIR_MIGRATE_PARALLEL, QEMU multifd): libvirt 5.2, QEMU 4.0;
- over TLS: QEMU 6.0 (multifd channels learnt TLS then);
- zstd on the parallel channels (VIR_MIGRATE_PARAM_COMPRESSION="zstd"): libvirt 9.4 (the
  first to pass multifd compression methods), QEMU 5.0;
- multifd with post-copy: QEMU refuses the pair when libvirt sets the capabilities
  ("Postcopy is not yet compatible with multifd"), seen in the lab on QEMU 10.0.2 with
  libvirt 11.3 (the move fails at its start, the guest stays on its source); QEMU's series
  that allows it landed after 10.0, so from 10.1 Ferry warns (not proven in its lab)
  instead of blocking. Ferry sets VIR_MIGRATE_POSTCOPY whenever the policy may switch to
  post-copy, so such a policy cannot run at all on older QEMU. Compressed channels with
  post-copy are refused on every version (never proven; post-copy pages travel
  uncompressed anyway).
"""

from migrations_app.checks.base import BLOCKER, INFO, WARNING, Finding, ok
from migrations_app.checks.hosts import version_text
from migrations_app.migration_network import data_uri, peer_address, tls_name

PARALLEL_LIBVIRT = 5_002_000
PARALLEL_QEMU = 4_000_000
PARALLEL_TLS_QEMU = 6_000_000
ZSTD_LIBVIRT = 9_004_000
ZSTD_QEMU = 5_000_000
PARALLEL_POSTCOPY_QEMU = 10_001_000


def check_migration_network(ctx, item, dest) -> Finding:
    """network.migration: the source's libvirtd can be told where the destination is, and
    where QEMU's data stream goes (the destination's migration network, if it has one)."""
    cid = "network.migration"
    if item.storage_only:
        return ok(cid, "Storage-only move: no data crosses between hosts.")
    if dest.transport == "test":
        return ok(cid, "Rehearsal host (libvirt's test driver): nothing travels.")
    source = ctx.snapshot.hosts.get(item.source_id)
    peer = peer_address(dest.uri, dest.migration_address)
    evidence = {
        "destination": dest.name,
        "peer_address": peer,
        "migration_network_address": dest.migration_network_address,
        "data_uri": data_uri(dest.migration_network_address),
        "tls_destination": (
            tls_name(dest.uri, dest.hostname, dest.migration_address)
            if dest.migration_network_address and item.policy.require_tls
            else ""
        ),
    }
    if not peer:
        return Finding(
            cid,
            BLOCKER,
            f"{dest.name} is registered through a local socket and has no peer address: "
            "the source's libvirtd cannot reach it.",
            f"An admin sets {dest.name}'s migration (peer) address: the IP or name its "
            "libvirtd listens on for other hosts.",
            evidence,
        )
    address = dest.migration_network_address
    if address:
        twins = sorted(
            h.name
            for h in ctx.snapshot.hosts.values()
            if h.id != dest.id
            and address in (h.migration_network_address, peer_address(h.uri, h.migration_address))
        )
        if twins:
            return Finding(
                cid,
                BLOCKER,
                f"{dest.name}'s migration network address {address} is also the address of "
                f"{', '.join(twins)}: the data stream could reach the wrong host.",
                "Correct the migration network address of one of these hosts.",
                {**evidence, "same_address_as": twins},
            )
        return ok(
            cid,
            f"Data goes to {dest.name} over its migration network ({evidence['data_uri']})"
            + (
                f"; TLS checks the certificate for '{evidence['tls_destination']}'."
                if evidence["tls_destination"]
                else "."
            ),
            **evidence,
        )
    if source is not None and source.migration_network_address:
        return Finding(
            cid,
            WARNING,
            f"{source.name} has a migration network address but {dest.name} has none: the "
            f"data stream goes over {dest.name}'s management network ({peer}).",
            f"Set {dest.name}'s migration network address (admins), or accept the "
            "management network for this move.",
            evidence,
        )
    return Finding(
        cid,
        INFO,
        f"{dest.name} has no migration network address: the data stream follows the "
        f"control connection ({peer}).",
        "Set a migration network address on the hosts to keep migration traffic off the "
        "management network.",
        evidence,
    )


def check_transfer_features(ctx, item, dest) -> Finding:
    """transfer.features: both hosts can do the parallel connections and compression the
    policy asks for, and not in a combination their QEMU refuses."""
    cid = "transfer.features"
    policy = item.policy
    if not policy.parallel_connections and policy.compression == "none":
        return ok(cid, "One connection, no compression.")
    if item.storage_only or dest.transport == "test":
        return ok(cid, "No memory migration here: parallel connections do not apply.")
    source = ctx.snapshot.hosts.get(item.source_id)
    hosts = [h for h in (source, dest) if h is not None]
    evidence = {
        "parallel_connections": policy.parallel_connections,
        "compression": policy.compression,
        "may_postcopy": policy.may_postcopy,
        "tls": policy.require_tls,
        **{
            f"{h.name}": {
                "libvirt": version_text(h.libvirt_version),
                "qemu": version_text(h.hypervisor_version),
            }
            for h in hosts
        },
    }
    if any(h.libvirt_version is None or h.hypervisor_version is None for h in hosts):
        return Finding(
            cid,
            WARNING,
            "A host's libvirt or QEMU version is unknown: Ferry cannot tell whether it "
            "supports parallel connections or compression.",
            "Sync both hosts.",
            evidence,
        )
    needs = [("parallel connections", PARALLEL_LIBVIRT, PARALLEL_QEMU)]
    if policy.require_tls:
        needs.append(("parallel connections over TLS", 0, PARALLEL_TLS_QEMU))
    if policy.compression == "zstd":
        needs.append(("zstd compression of parallel connections", ZSTD_LIBVIRT, ZSTD_QEMU))
    short = []
    for what, libvirt_min, qemu_min in needs:
        for h in hosts:
            if h.libvirt_version < libvirt_min:
                short.append(
                    f"{what} needs libvirt {version_text(libvirt_min)}; {h.name} has "
                    f"{version_text(h.libvirt_version)}"
                )
            if h.hypervisor_version < qemu_min:
                short.append(
                    f"{what} needs QEMU {version_text(qemu_min)}; {h.name} has "
                    f"{version_text(h.hypervisor_version)}"
                )
    if short:
        return Finding(
            cid,
            BLOCKER,
            "The hosts cannot do what the policy asks: " + "; ".join(short) + ".",
            "Upgrade the hosts, or clear policy.parallel_connections / policy.compression.",
            evidence,
        )
    if policy.may_postcopy and policy.compression != "none":
        return Finding(
            cid,
            BLOCKER,
            "The policy may switch to post-copy and compresses the parallel connections: "
            "Ferry does not combine the two (post-copy pages travel uncompressed, and the "
            "pair is not proven on any QEMU Ferry was tested with).",
            "Use compression without a post-copy step (schedule, timeouts, on_no_convergence), "
            "or post-copy without compression.",
            evidence,
        )
    old = [h for h in hosts if h.hypervisor_version < PARALLEL_POSTCOPY_QEMU]
    if policy.may_postcopy and old:
        return Finding(
            cid,
            BLOCKER,
            "The policy may switch to post-copy and uses parallel connections, which QEMU "
            f"refuses together before {version_text(PARALLEL_POSTCOPY_QEMU)} ("
            + ", ".join(f"{h.name} has {version_text(h.hypervisor_version)}" for h in old)
            + ").",
            "Drop the post-copy step (schedule, timeouts, on_no_convergence) or the parallel "
            "connections, or upgrade QEMU.",
            evidence,
        )
    if policy.may_postcopy:
        return Finding(
            cid,
            WARNING,
            "The policy may switch to post-copy with parallel connections: QEMU allows the "
            "pair from 10.1, but Ferry's lab has not proven it.",
            "Try it on a test guest first, or drop the post-copy step or the parallel connections.",
            evidence,
        )
    what = f"{policy.parallel_connections} parallel connections"
    if policy.compression != "none":
        what += f" with {policy.compression} compression"
    return ok(cid, f"Both hosts can move the data over {what}.", **evidence)
