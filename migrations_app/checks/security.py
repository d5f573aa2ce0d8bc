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
