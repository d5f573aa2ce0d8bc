"""Checks for one item right before it moves (the execution engine's preflight).

The engine first re-syncs the item's source and destination (so the snapshot holds live
facts), then calls `item_preflight_findings`. Unlike validation, the ledger starts empty:
items that already moved are in the freshly synced free memory, and counting them again
would double-charge the destination. The window check is left to the engine (it knows the
clock); the offline CPU comparison is replaced by libvirt's own when a connection to the
destination is given.
"""

from migrations_app.checks import CheckContext, Ledger, item_findings
from migrations_app.checks.base import Finding
from migrations_app.checks.cpu import cpu_compare_live
from migrations_app.checks.snapshot import snapshot_load
from migrations_app.estimate import item_estimate


def item_preflight_findings(*, item, dest_conn=None, cpu_xml: str = "") -> list[Finding]:
    """All checks for one PlanItem on current inventory data (+ live CPU comparison)."""
    snapshot = snapshot_load(item.plan, item_ids=[item.pk])
    if not snapshot.items:
        return []
    info = snapshot.items[0]
    dest = snapshot.hosts.get(info.destination_id)
    estimate = item_estimate(snapshot, info)
    ctx = CheckContext(snapshot=snapshot, ledger=Ledger(), estimates={info.id: estimate})
    skip = {"window"} | ({"cpu.compat"} if dest_conn is not None else set())
    findings = item_findings(ctx, info, dest, skip=skip)
    if dest_conn is not None and not info.storage_only:
        findings.append(cpu_compare_live(dest_conn, cpu_xml))
    return findings
