"""Checks for one item right before it moves (the execution engine's preflight).

`preflight_run` runs the session's live checks (libvirt only) in a thread while the
inventory is re-read, then the plan's checks on the fresh data, the proof that storage the
VM keeps is really shared, and the lock-manager warning. `item_preflight_findings` is the
plan's checks part: the engine first re-syncs the item's source and destination (so the
snapshot holds live facts), then calls it. Unlike validation, the ledger starts empty:
items that already moved are in the freshly synced free memory, and counting them again
would double-charge the destination. The window check is left to the engine (it knows the
clock); the offline CPU comparison is replaced by libvirt's own when a connection to the
destination is given.
"""

import logging
import threading

from django.conf import settings

from inventory.models import StoragePool
from inventory.services import pool_share_proof_get, pool_share_proof_record
from inventory.storage_probe import probe_shared
from inventory.sync import host_capacity_refresh, host_sync, vm_refresh
from migrations_app.checks import CheckContext, Ledger, item_findings
from migrations_app.checks.base import Finding
from migrations_app.checks.cpu import cpu_compare_live, guest_arch_and_type, vm_cpu_xml
from migrations_app.checks.snapshot import snapshot_load
from migrations_app.estimate import item_estimate
from migrations_app.execution import errors, services
from migrations_app.models import ItemAttempt

logger = logging.getLogger("ferry.execution.preflight")

# Pools whose sharing libvirt cannot see by itself (a directory both hosts mount).
PATH_POOL_TYPES = ("dir", "fs")


def item_preflight_findings(
    *, item, dest_conn=None, cpu_xml: str = "", hosts: tuple[int, int] | None = None
) -> list[Finding]:
    """All checks for one PlanItem on current inventory data (+ live CPU comparison).

    `hosts` (source id, destination id): the attempt's own move when it is not the item's
    (a migrate-back after failed validation, a retry to another host)."""
    snapshot = snapshot_load(item.plan, item_ids=[item.pk])
    if not snapshot.items:
        return []
    info = snapshot.items[0]
    if hosts is not None:
        info.source_id, info.destination_id = hosts
    dest = snapshot.hosts.get(info.destination_id)
    estimate = item_estimate(snapshot, info)
    ctx = CheckContext(snapshot=snapshot, ledger=Ledger(), estimates={info.id: estimate})
    skip = {"window"} | ({"cpu.compat"} if dest_conn is not None else set())
    findings = item_findings(ctx, info, dest, skip=skip)
    if dest_conn is not None and not info.storage_only:
        findings.append(cpu_compare_live(dest_conn, cpu_xml))
    return findings


def _blocked(findings) -> bool:
    return any(f.get("severity") == "blocker" for f in findings)


def preflight_run(attempt, session) -> list[dict]:
    """The session's live checks, then the plan's checks on re-read inventory, the proof of
    shared storage and the lock manager.

    The live checks only talk to libvirt; they run in a thread while this thread re-reads
    the inventory the plan's checks need (libvirt calls wait on the network, not on
    Python), so a move pays for the longer of the two instead of their sum. The thread is
    waited for at most FERRY_LIBVIRT_CALL_SECONDS: a host that hangs fails the attempt.
    """
    if attempt.driver != ItemAttempt.Driver.LIBVIRT:
        return session.preflight()
    out: dict = {}

    def live() -> None:
        try:
            out["findings"] = session.preflight()
        except BaseException as exc:  # re-raised in the runner's thread below
            out["error"] = exc

    thread = threading.Thread(target=live, name=f"preflight-{attempt.pk}", daemon=True)
    thread.start()
    try:
        refreshed = _refresh_inventory(attempt, session)
    finally:
        thread.join(float(settings.FERRY_LIBVIRT_CALL_SECONDS))
    if thread.is_alive():
        raise errors.ExecutionError(
            errors.CALL_TIMEOUT,
            f"The live checks on {attempt.source_host.name} did not answer within "
            f"{settings.FERRY_LIBVIRT_CALL_SECONDS:.0f} s; nothing was moved.",
        )
    if "error" in out:
        raise out["error"]
    findings = out["findings"]
    if _blocked(findings):
        return findings
    findings = _with_plan_checks(attempt, session, findings, refreshed)
    if attempt.item.mode == "live":
        findings += shared_storage_findings(attempt, session)
    if attempt.item.mode != "storage_only":
        findings += lock_manager_findings(attempt, session)
    return findings


def shared_storage_findings(attempt, session) -> list[dict]:
    """Prove that the directory pools the VM keeps its disks on are one storage for both
    hosts (a probe, cached per pool and host pair), and say whether libvirt needs
    VIR_MIGRATE_UNSAFE for them (it does not when they are network storage or when the
    destination's qemu.conf lists them in shared_filesystems)."""
    ctx = session.ctx
    src, dst = attempt.source_host, attempt.destination_host
    max_age = float(settings.FERRY_SHARE_PROOF_MAX_AGE_HOURS) * 3600
    findings, unsafe = [], []
    seen = set()
    for disk in ctx.kept_disks:
        pool_id = disk.get("pool_id")
        if pool_id is None or pool_id in seen or disk.get("pool_type") not in PATH_POOL_TYPES:
            continue
        seen.add(pool_id)
        pool = StoragePool.objects.get(pk=pool_id)
        proof = pool_share_proof_get(pool=pool, host_a=src, host_b=dst, max_age_s=max_age)
        fresh = proof is None
        if fresh:
            shared, evidence = session.guard.call(
                f"probe pool {pool.name}", probe_shared, session.src, session.dst, pool.name
            )
            proof = pool_share_proof_record(
                pool=pool,
                host_a=src,
                host_b=dst,
                shared=shared,
                evidence=evidence,
                actor=services.worker_actor(attempt.driver),
            )
        record = {
            "pool": pool.name,
            "path": pool.target_path,
            "shared": proof.shared,
            "proven_at": proof.proven_at.isoformat(),
            "probed_now": fresh,
            "probe": proof.evidence,
        }
        if not proof.shared:
            findings.append(
                {
                    "check_id": "live.shared_storage",
                    "severity": "blocker",
                    "message": (
                        f"Pool {pool.name} ({pool.target_path}) has the same UUID and path on "
                        f"{src.name} and {dst.name}, but a file written through {src.name} is "
                        f"not seen through {dst.name}: it is not shared storage."
                    ),
                    "remedy": (
                        "Move the VM with its disks (mode live_copy), or put the disks on "
                        "storage both hosts really share."
                    ),
                    "evidence": record,
                    "error_class": errors.SHARED_STORAGE_UNPROVEN,
                }
            )
            continue
        declared = any(
            pool.target_path == path or pool.target_path.startswith(path.rstrip("/") + "/")
            for path in (dst.shared_paths or [])
        )
        record["libvirt_knows"] = declared
        if not declared:
            unsafe.append(record)
        findings.append(
            {
                "check_id": "live.shared_storage",
                "severity": "ok",
                "message": (
                    f"Pool {pool.name} is one storage for both hosts (probe of "
                    f"{proof.proven_at:%Y-%m-%d %H:%M} UTC)"
                    + (
                        "; the destination's shared_filesystems tells libvirt so."
                        if declared
                        else "; libvirt is told with VIR_MIGRATE_UNSAFE."
                    )
                ),
                "evidence": record,
            }
        )
    ctx.unsafe_proof = {"pools": unsafe} if unsafe else None
    return findings


def lock_manager_findings(attempt, session) -> list[dict]:
    """Warn when no lock manager keeps a second QEMU off the disks the hosts share: libvirt's
    own migration code counts on one for the rare case it cannot tell where the guest runs."""
    if not session.ctx.kept_disks:
        return []
    hosts = [attempt.source_host, attempt.destination_host]
    missing = [h.name for h in hosts if h.lock_manager not in ("lockd", "sanlock")]
    if not missing:
        return [
            {
                "check_id": "live.lock_manager",
                "severity": "ok",
                "message": "Both hosts declare a lock manager for shared disks.",
                "evidence": {h.name: h.lock_manager for h in hosts},
            }
        ]
    return [
        {
            "check_id": "live.lock_manager",
            "severity": "warning",
            "message": (
                f"No lock manager is declared on {', '.join(missing)}: nothing outside Ferry "
                "stops a second QEMU from writing the VM's shared disks."
            ),
            "remedy": (
                "Configure virtlockd or sanlock (qemu.conf lock_manager) and declare it on "
                "the host in Ferry."
            ),
            "evidence": {h.name: h.lock_manager or "not declared" for h in hosts},
        }
    ]


def _refresh_inventory(attempt, session) -> dict:
    """Re-read what the plan's checks read, on the session's open connections.

    The VM's own domain and the destination's capacity (a whole sync of both hosts, every
    domain and volume, costs more than the checks); each refresh falls back to a whole
    sync where a partial read could be wrong.
    """
    actor = services.worker_actor(attempt.driver)
    refreshed = {}
    try:
        refreshed["vm"] = vm_refresh(vm=attempt.item.vm, conn=session.src, actor=actor)
        refreshed["destination"] = host_capacity_refresh(
            host=attempt.destination_host, conn=session.dst or session.src, actor=actor
        )
    except Exception as exc:  # libvirt hiccup mid-read: the whole syncs are the safe answer
        logger.info("attempt %s: targeted refresh failed (%s); syncing hosts", attempt.pk, exc)
        for host in {attempt.source_host, attempt.destination_host}:
            host_sync(host=host, actor=actor)
        refreshed = {"hosts": "synced"}
    attempt.item.vm.refresh_from_db()
    return refreshed


def _with_plan_checks(attempt, session, findings: list[dict], refreshed: dict) -> list[dict]:
    """Re-run the plan's checks on live data (checks.preflight).

    The inventory was re-read just before (`_refresh_inventory`); the CPU check is
    libvirt's own comparison on the destination.
    """
    # Without a connection the plans code runs its offline CPU check; it is replaced below
    # by libvirt's comparison for the guest's own virt type and arch (a TCG guest compared
    # as if it were KVM would be refused for host features it never uses).
    plan_findings = [
        f.as_dict()
        for f in item_preflight_findings(
            item=attempt.item,
            dest_conn=None,
            hosts=(attempt.source_host_id, attempt.destination_host_id),
        )
        if f.check_id != "cpu.compat"
    ]
    own = [f for f in findings if f["check_id"] != "live.cpu_compatible"]
    dest_conn = getattr(session, "dst", None)
    if dest_conn is not None and attempt.item.mode != "storage_only":
        xml = session.domain_xml()
        arch, virttype = guest_arch_and_type(xml)
        cpu = cpu_compare_live(dest_conn, vm_cpu_xml(xml), arch=arch, virttype=virttype).as_dict()
        if cpu["severity"] == "blocker":
            cpu["error_class"] = errors.CPU_INCOMPATIBLE
        plan_findings.append(cpu)
    refresh = {
        "check_id": "live.refreshed",
        "severity": "info",
        "message": "Inventory re-read before the checks: "
        + ", ".join(f"{k} {v}" for k, v in refreshed.items()),
        "evidence": refreshed,
    }
    return own + [refresh] + plan_findings
