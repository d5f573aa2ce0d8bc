"""security.transport: can the move be encrypted (TLS), as the policy requires?

Ferry drives peer-to-peer migrations with VIR_MIGRATE_TLS when the policy requires it;
that works only when both hosts have libvirt/QEMU TLS certificates, which Ferry knows for
hosts it reaches over qemu+tls://. Plain qemu+tcp:// is unauthenticated and unencrypted.
"""

from migrations_app.checks.base import BLOCKER, INFO, WARNING, Finding, ok


def check_security_transport(ctx, item, dest) -> Finding:
    """security.transport: TLS on both ends when required; unauthenticated links flagged."""
    source = ctx.snapshot.hosts.get(item.source_id)
    ends = [h for h in (source, dest) if h is not None]
    transports = {h.name: h.transport for h in ends}
    required = item.policy.require_tls
    evidence = {"transports": transports, "require_tls": required}
    if item.storage_only:
        return ok("security.transport", "Storage-only move: data stays on one host.", **evidence)
    if all(t == "test" for t in transports.values()):
        return Finding(
            "security.transport",
            INFO,
            "Both hosts are libvirt test-driver hosts: nothing crosses a network.",
            "",
            evidence,
        )
    tcp = sorted(name for name, t in transports.items() if t == "tcp")
    not_tls = sorted(name for name, t in transports.items() if t != "tls")
    if dest is not None and dest.transport != "test" and (not required or dest.transport == "tcp"):
        return _unencrypted_destination(ctx, dest, required, evidence)
    if tcp:
        return Finding(
            "security.transport",
            BLOCKER if required else WARNING,
            f"{', '.join(tcp)} {'is' if len(tcp) == 1 else 'are'} registered over "
            "unauthenticated, unencrypted qemu+tcp://"
            + ("; the policy requires TLS." if required else "."),
            "Register the host over qemu+tls:// (certificates on both ends).",
            evidence,
        )
    unverified = sorted(h.name for h in ends if h.transport == "tls" and not h.tls_verified)
    if unverified:
        return Finding(
            "security.transport",
            BLOCKER if required else WARNING,
            f"{', '.join(unverified)} {'is' if len(unverified) == 1 else 'are'} registered with "
            "a qemu+tls:// URI whose options may turn certificate checks off: Ferry cannot "
            "call the move encrypted to the right host.",
            "Register the host again with a plain qemu+tls://HOST/system URI (certificates "
            "are the server's FERRY_LIBVIRT_PKI_DIR).",
            {**evidence, "unverified": unverified},
        )
    if required and not_tls:
        return Finding(
            "security.transport",
            WARNING,
            f"Ferry cannot confirm TLS certificates on {', '.join(not_tls)} (not registered "
            "over qemu+tls://); the move will fail at start if QEMU's TLS is not set up.",
            "Register the hosts over qemu+tls://, or check migrate_tls in qemu.conf on both.",
            evidence,
        )
    if not required:
        return Finding(
            "security.transport",
            WARNING,
            "The policy does not require TLS: guest memory crosses the network unencrypted.",
            "Set policy.require_tls to true unless the migration network is isolated.",
            evidence,
        )
    return ok(
        "security.transport", "Both hosts are reached over TLS; the move is encrypted.", **evidence
    )


def _unencrypted_destination(ctx, dest, required: bool, evidence: dict) -> Finding:
    """M1 (security review): without TLS the source libvirtd streams the guest's memory
    (and disks) over qemu+tcp:// to whatever answers at the destination's address, with
    no certificate proving it is the hypervisor it claims to be. A blocker, unless an admin
    recorded a reason for this plan (the override is part of the approved content)."""
    plan = ctx.snapshot.plan
    how = (
        f"{dest.name} is registered over unauthenticated qemu+tcp://"
        if dest.transport == "tcp"
        else "the policy does not require TLS"
    )
    evidence = {**evidence, "destination": dest.name, "override": plan.transport_override}
    if plan.transport_override:
        return Finding(
            "security.transport",
            WARNING,
            f"Unencrypted move to {dest.name} ({how}), allowed by admin "
            f"{plan.transport_override_by}: {plan.transport_override}",
            "Require TLS unless the migration network is isolated.",
            {**evidence, "override_by": plan.transport_override_by},
        )
    return Finding(
        "security.transport",
        BLOCKER,
        f"{dest.name} would be reached without TLS ({how}): guest memory and disks would "
        "cross the network unencrypted, to a host whose identity nothing checks.",
        "Require TLS (policy.require_tls) with hosts registered over qemu+tls://, or ask an "
        "admin to record a transport override with a reason for this plan.",
        evidence,
    )
