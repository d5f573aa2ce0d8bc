"""Lab harness of the migration benchmarks: Ferry (scratch DB, lab hosts, real workers) and
plain virsh on the same lab hosts, with one observer that times both the same way.

The compared quantity for Ferry and virsh is the wall time from "go" (just before
plan_start, or just before virsh is exec'd) to the moment the guest is seen *running on
the destination* by a watcher polling the destination's libvirtd every 50 ms. The same
watcher runs for both, so its resolution and its load cancel out in a ratio.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import libvirt
from common import REPO

sys.path.insert(0, str(REPO))

POLL_S = 0.05


def _quiet(*_args):  # libvirt prints every error to stderr otherwise
    return None


libvirt.registerErrorHandler(_quiet, None)


class Lab:
    """The lab, brought up when it is down (and taken down at the end only then)."""

    def __init__(self):
        from lab import labctl

        self.labctl = labctl
        self.started = False

    def __enter__(self) -> Lab:
        why = self.labctl.preflight()
        if why:
            raise SystemExit(f"lab cannot run here: {why}")
        if not self.labctl.is_up():
            self.labctl.up(register=False, owner="bench")
            self.started = True
        self.env = self.labctl.env()
        return self

    def __exit__(self, *exc):
        if self.started:
            with contextlib.suppress(Exception):
                self.labctl.down()

    def uri(self, host: str) -> str:
        return self.env["hosts"][host]["uri"]

    def tcp_uri(self, host: str) -> str:
        return self.env["hosts"][host]["tcp_uri"]


class Guests:
    """Guests started by a benchmark; every one is destroyed on exit, also on failure."""

    def __init__(self, prefix: str):
        from lab.guest import vm

        self.vm = vm
        self.prefix = f"{prefix}{os.getpid() % 10000}"
        self.names: list[str] = []
        self.count = 0

    def start(self, host="lab-a", memory_mib=256, dirty_ws=0, dirty_rate=0) -> str:
        self.count += 1
        name = f"{self.prefix}-{self.count}"
        self.names.append(name)
        self.vm.guest_start(
            name, host=host, memory_mib=memory_mib, dirty_ws=dirty_ws, dirty_rate=dirty_rate
        )
        return name

    def destroy(self, name: str) -> None:
        with contextlib.suppress(Exception):
            self.vm.guest_destroy(name)
        if name in self.names:
            self.names.remove(name)

    def __enter__(self) -> Guests:
        return self

    def __exit__(self, *exc):
        for name in list(self.names):
            self.destroy(name)


def alive_on(vm, name: str, host: str, after: int, timeout: float = 30) -> tuple[bool, str, int]:
    """The guest counts past `after` on `host` only, with no panic: (ok, why, counter)."""
    try:
        hb = vm.wait_heartbeat(name, timeout=timeout, after=after + 1)
    except Exception as exc:  # timeout or panic
        return False, f"heartbeat: {exc}"[:200], after
    where = vm.where_running(name)
    problems = vm.console_problems(name)
    if where != [host]:
        return False, f"runs on {where}, expected {host}", hb
    if problems:
        return False, f"console: {problems[:2]}", hb
    return True, "", hb


class DestWatcher:
    """Times when `name` first runs on the destination (polling that host's libvirtd)."""

    def __init__(self, uri: str, name: str):
        self.uri, self.name = uri, name
        self.running_at: float | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        conn = libvirt.open(self.uri)
        try:
            while not self._stop.is_set():
                try:
                    state = conn.lookupByName(self.name).state()[0]
                except libvirt.libvirtError:
                    state = None
                if state == libvirt.VIR_DOMAIN_RUNNING:
                    self.running_at = time.monotonic()
                    return
                time.sleep(POLL_S)
        finally:
            with contextlib.suppress(libvirt.libvirtError):
                conn.close()

    def __enter__(self) -> DestWatcher:
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(timeout=5)


def completed_stats(uri: str, name: str) -> dict:
    """libvirt's completed-job stats of `name` as the destination holds them."""
    conn = libvirt.open(uri)
    try:
        stats = conn.lookupByName(name).jobStats(libvirt.VIR_DOMAIN_JOB_STATS_COMPLETED)
        return dict(stats) if stats and len(stats) > 1 else {}
    except libvirt.libvirtError:
        return {}
    finally:
        conn.close()


def virsh_move(
    lab: Lab,
    name: str,
    src: str,
    dst: str,
    bandwidth: int | None,
    timeout: float,
    extra: tuple[str, ...] = (),
) -> dict:
    """`virsh migrate --live --p2p --persistent --undefinesource [--unsafe]` timed like Ferry."""
    cmd = ["virsh", "-c", lab.uri(src), "migrate", "--live", "--p2p", "--persistent"]
    cmd += ["--undefinesource"]
    if lab.env.get("shared_pool_needs_unsafe"):
        cmd.append("--unsafe")
    if bandwidth:
        cmd += ["--bandwidth", str(bandwidth)]
    cmd += [*extra, name, lab.tcp_uri(dst)]
    out: dict = {"how": "virsh", "cmd": " ".join(cmd[3:])}
    with DestWatcher(lab.uri(dst), name) as watch:
        t0 = time.monotonic()
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            output, _ = proc.communicate(timeout=timeout)
            out["timed_out"] = False
        except subprocess.TimeoutExpired:
            # The same completion timeout Ferry has: abort the job, the guest stays put.
            out["timed_out"] = True
            subprocess.run(
                ["virsh", "-c", lab.uri(src), "domjobabort", name],
                capture_output=True,
                timeout=30,
                check=False,
            )
            try:
                output, _ = proc.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                output, _ = proc.communicate()
        t_end = time.monotonic()
        time.sleep(2 * POLL_S)
    out["ok"] = proc.returncode == 0
    out["error"] = "" if out["ok"] else (output or "").strip()[-300:]
    out["return_s"] = t_end - t0
    out["to_running_s"] = (watch.running_at - t0) if (out["ok"] and watch.running_at) else None
    if out["ok"]:
        stats = completed_stats(lab.uri(dst), name)
        out["total_ms"] = stats.get("time_elapsed")
        out["downtime_ms"] = stats.get("downtime")
        out["iterations"] = stats.get("memory_iteration")
    return out


class Ferry:
    """Ferry on a scratch database: lab hosts registered, people, real worker processes."""

    def __init__(self, lab: Lab, workers: int = 2, migration_network: bool = False):
        from common import setup_django

        # The lab's unix sockets, named in the server settings (a host's URI never carries
        # `socket=`); the workers below inherit the environment.
        os.environ["FERRY_LIBVIRT_SOCKETS"] = ",".join(
            f"{name}={h['socket']}" for name, h in lab.env["hosts"].items()
        )
        setup_django()
        from django.contrib.auth import get_user_model
        from django.contrib.auth.models import Group

        from dashboard.audit.record import Actor
        from inventory.models import Host
        from inventory.services import host_add

        self.lab = lab
        self.Actor = Actor
        User = get_user_model()
        self.people = {}
        people = (("pat", "planner"), ("ann", "approver"), ("oli", "operator"), ("ada", "admin"))
        for username, role in people:
            user = User.objects.create_user(username, "", f"pw-{uuid.uuid4().hex}")
            user.groups.add(Group.objects.get_or_create(name=role)[0])
            self.people[role] = user
        for name, h in lab.env["hosts"].items():
            uri = f"qemu+unix://{name}/system"
            host = host_add(name=name, uri=uri, actor=Actor.system("bench"))
            # Clients use the unix socket; peers reach the host on its lab address.
            Host.objects.filter(pk=host.pk).update(migration_address=h["ip"])
            if migration_network:  # QEMU's data stream over the lab's second bridge
                Host.objects.filter(pk=host.pk).update(migration_network_address=h["migration_ip"])
        self.sync()
        self.data_dir = Path(os.environ["FERRY_DATA_DIR"])
        self.procs: list[subprocess.Popen] = []
        self.log = open(self.data_dir / "workers.log", "ab")  # noqa: SIM115 - closed in close()
        for _ in range(workers):
            self.procs.append(
                subprocess.Popen(
                    [sys.executable, "manage.py", "ferry_worker"],
                    cwd=REPO,
                    env=dict(os.environ),
                    stdout=self.log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )
        time.sleep(3)  # let the workers import Django and start polling the queue

    def close(self) -> None:
        for proc in self.procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        self.log.close()

    def sync(self) -> None:
        from inventory.models import Host
        from inventory.sync import host_sync

        for host in Host.objects.all():
            for _ in range(3):
                if host_sync(host=host, actor=self.Actor.system("bench")).ok:
                    break
                time.sleep(1)

    def plan(self, names: list[str], dst: str | None, policy: dict, dirty=None, evacuate=None):
        """A validated, submitted and approved plan (planner drafts, approver approves)."""
        from inventory.models import Host, VirtualMachine
        from migrations_app.models import ValidationRun
        from migrations_app.services.plans import plan_add_vms, plan_create, plan_evacuate_host
        from migrations_app.services.transport_override import plan_transport_override_set
        from migrations_app.services.validation import plan_validate
        from migrations_app.workflow.services import plan_approve, plan_submit

        planner = self.people["planner"]
        if dirty is not None:  # the guest's dirty rate as a planner would know it (MiB/s)
            VirtualMachine.objects.filter(name__in=names).update(dirty_rate_mib_s=dirty)
        plan = plan_create(
            actor=planner,
            name=f"bench-{uuid.uuid4().hex[:6]}",
            change_ticket="CHG-BENCH",
            policy={"require_tls": False, **policy},
        )
        # The lab migrates over qemu+tcp:// inside its namespaces: an admin allows it,
        # before anything is placed (placement runs the transport check too, so an
        # evacuation placed first would find no destination).
        plan_transport_override_set(
            plan=plan, actor=self.people["admin"], reason="lab: isolated migration network"
        )
        plan.refresh_from_db()
        if evacuate:
            plan_evacuate_host(plan=plan, host=Host.objects.get(name=evacuate), actor=planner)
        else:
            vms = list(VirtualMachine.objects.filter(name__in=names))
            plan_add_vms(plan=plan, vms=vms, destination=Host.objects.get(name=dst), actor=planner)
        plan.refresh_from_db()
        validation = plan_validate(plan=plan, actor=planner)
        plan.refresh_from_db()
        if validation.blockers:
            blockers = list(
                validation.results.filter(severity="blocker").values_list("check_id", "message")
            )
            raise RuntimeError(f"plan has blockers: {blockers[:3]}")
        plan_submit(plan=plan, actor=planner)
        plan.refresh_from_db()
        plan_approve(plan=plan, actor=self.people["approver"], comment="bench")
        plan.refresh_from_db()
        estimate = ValidationRun.objects.filter(pk=validation.pk).values_list("estimate", flat=True)
        return plan, estimate[0]

    def run(self, plan, timeout: float, watch: tuple[str, str] | None = None) -> dict:
        """Start the plan (operator) and wait until every attempt has ended."""
        from migrations_app.models import ItemAttempt, PlanRun
        from migrations_app.workflow.services import plan_cancel, plan_start

        watcher = DestWatcher(self.lab.uri(watch[1]), watch[0]) if watch else None
        if watcher:
            watcher.__enter__()
        try:
            t0 = time.monotonic()
            t0_wall = time.time()
            plan_start(plan=plan, actor=self.people["operator"])
            run = PlanRun.objects.get(plan=plan)
            deadline = t0 + timeout
            settled = False
            while time.monotonic() < deadline:
                status = PlanRun.objects.filter(pk=run.pk).values_list("status", flat=True)[0]
                busy = ItemAttempt.objects.filter(
                    run=run, status__in=["queued", "running"]
                ).exists()
                if status in ("completed", "paused", "cancelled", "failed") and not busy:
                    settled = True
                    break
                time.sleep(0.1)
            t_end = time.monotonic()
            if not settled:
                with contextlib.suppress(Exception):
                    plan_cancel(plan=plan, actor=self.people["operator"], reason="bench timeout")
        finally:
            if watcher:
                watcher.__exit__()
        run.refresh_from_db()
        plan.refresh_from_db()
        if plan.status in ("running", "paused"):
            # A failed item leaves the plan open for an operator; close it so its VMs may
            # join the next plan.
            with contextlib.suppress(Exception):
                plan_cancel(plan=plan, actor=self.people["operator"], reason="bench: run ended")
        attempts = []
        for a in ItemAttempt.objects.filter(run=run).select_related("item__vm").order_by("pk"):
            finished = a.finished_at.timestamp() - t0_wall if a.finished_at else None
            called = a.migrate_called_at.timestamp() - t0_wall if a.migrate_called_at else None
            attempts.append(
                {
                    "vm": a.item.vm.name,
                    "status": a.status,
                    "error": f"{a.error_class}: {a.error_message}"[:300] if a.error_class else "",
                    "total_ms": a.total_time_ms,
                    "downtime_ms": a.downtime_ms,
                    "iterations": a.iterations,
                    "bytes": a.bytes_transferred,
                    "flags": (a.evidence or {}).get("prepare", {}).get("flags"),
                    "converge": (a.evidence or {}).get("converge"),
                    "convergence": (a.evidence or {}).get("convergence") or [],
                    "id": a.pk,
                    "migrate_called_s": called,
                    "done_s": finished,
                }
            )
        return {
            "how": "ferry",
            "settled": settled,
            "status": run.status,
            "wall_s": t_end - t0,
            "to_running_s": (watcher.running_at - t0) if watcher and watcher.running_at else None,
            "attempts": attempts,
        }

    def move(self, name: str, dst: str, policy: dict, timeout: float = 240, dirty=None) -> dict:
        """One VM through a whole plan: create, validate, submit, approve, start, wait."""
        self.sync()
        try:
            plan, estimate = self.plan([name], dst, policy, dirty=dirty)
            out = self.run(plan, timeout, watch=(name, dst))
        except Exception as exc:  # a run that cannot even start is a failed run
            return {
                "how": "ferry",
                "ok": False,
                "error": f"{type(exc).__name__}: {exc}"[:300],
                "settled": False,
                "attempts": [],
                "wall_s": None,
                "to_running_s": None,
                "estimate": {},
                "total_ms": None,
                "downtime_ms": None,
                "iterations": None,
            }
        attempt = out["attempts"][0] if out["attempts"] else {}
        out.update({k: attempt.get(k) for k in ("total_ms", "downtime_ms", "iterations")})
        out["ok"] = attempt.get("status") == "completed"
        out["error"] = attempt.get("error") or ("" if out["settled"] else "did not settle")
        out["estimate"] = (estimate.get("items") or [{}])[0]
        if out["ok"]:
            # Read libvirt's completed stats the same way as for virsh, for a like-for-like
            # comparison of libvirt's own total time.
            stats = completed_stats(self.lab.uri(dst), name)
            out["dest_total_ms"] = stats.get("time_elapsed")
        return out
