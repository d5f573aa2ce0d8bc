"""Migration benchmarks on the lab (root): M1 overhead, M1b parallel TLS connections, M2
downtime control, M3 convergence, S1 plan makespan, S2 stall to first action, P1 estimate
accuracy. Ferry is measured through real plans run by real `manage.py ferry_worker`
processes on a scratch database; virsh runs on the same hosts.

    .venv/bin/python bench/lab_migrations.py m1 [--pairs 5]
    .venv/bin/python bench/lab_migrations.py m1b [--pairs 3] [--cap 1000] [--connections 4]
    .venv/bin/python bench/lab_migrations.py m2|m3|s2|p1 [--runs 3]
    .venv/bin/python bench/lab_migrations.py s1 [--runs 1]

Every figure is printed even when runs fail (failures are counted as figures too); every
guest started here is destroyed at the end, also on failure.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import median, percentile, report  # noqa: E402
from lab_ferry import Ferry, Guests, Lab, alive_on, virsh_move  # noqa: E402

MB_TO_MIB = 1e6 / 2**20  # the guest's dirtier counts MB/s; Ferry's model MiB/s


def log(msg: str) -> None:
    print(f"  {msg}", flush=True)


def fmt(x, unit="", digits=2):
    return "—" if x is None else f"{x:.{digits}f}{unit}"


def other(host: str) -> str:
    return "lab-b" if host == "lab-a" else "lab-a"


def show(tag: str, r: dict) -> None:
    log(
        f"{tag}: ok={r['ok']} to-running {fmt(r.get('to_running_s'), ' s')}"
        f" wall {fmt(r.get('wall_s') or r.get('return_s'), ' s')}"
        f" libvirt total {r.get('total_ms')} ms downtime {r.get('downtime_ms')} ms"
        f" iterations {r.get('iterations')} {r.get('error') or ''}".rstrip()
    )


# ----------------------------------------------------------------------------- M1


def m1(args) -> None:
    cap = args.cap
    policy = {"bandwidth_mib_s": cap, "verify_seconds": args.verify}
    ferry_rows, virsh_rows, ratios, lv_ratios = [], [], [], []
    with Lab() as lab, Guests("bm1") as guests:
        ferry = Ferry(lab, workers=2)
        try:
            name = guests.start("lab-a", memory_mib=256, dirty_ws=32, dirty_rate=5)
            hb = guests.vm.wait_heartbeat(name, timeout=90, after=2)
            where = "lab-a"
            for pair in range(args.pairs):
                # Alternate who goes first, so direction and order are balanced.
                order = ("ferry", "virsh") if pair % 2 == 0 else ("virsh", "ferry")
                got = {}
                for how in order:
                    dst = other(where)
                    if how == "ferry":
                        r = ferry.move(name, dst, policy, timeout=args.timeout)
                    else:
                        r = virsh_move(lab, name, where, dst, cap, timeout=args.timeout)
                    alive, why, hb = alive_on(guests.vm, name, dst if r["ok"] else where, hb)
                    if not alive:
                        r["ok"], r["error"] = False, f"{r.get('error') or ''} guest: {why}"
                    show(f"pair {pair + 1} {how} {where}->{dst}", r)
                    (ferry_rows if how == "ferry" else virsh_rows).append(r)
                    got[how] = r
                    actual = guests.vm.where_running(name)
                    where = actual[0] if len(actual) == 1 else where
                f, v = got["ferry"], got["virsh"]
                if f["ok"] and v["ok"] and f["to_running_s"] and v["to_running_s"]:
                    ratios.append(f["to_running_s"] / v["to_running_s"])
                    if f.get("dest_total_ms") and v.get("total_ms"):
                        lv_ratios.append(f["dest_total_ms"] / v["total_ms"])
        finally:
            ferry.close()
    ok_f = [r for r in ferry_rows if r["ok"]]
    ok_v = [r for r in virsh_rows if r["ok"]]
    floor = 256 / cap
    ratio = median(ratios)
    med = {
        "ferry_to_running_s": median([r["to_running_s"] for r in ok_f if r["to_running_s"]]),
        "virsh_to_running_s": median([r["to_running_s"] for r in ok_v if r["to_running_s"]]),
        "ferry_start_to_completed_s": median([r["wall_s"] for r in ok_f]),
        "ferry_migrate_called_s": median(
            [r["attempts"][0]["migrate_called_s"] for r in ok_f if r["attempts"]]
        ),
        "ferry_libvirt_total_ms": median([r["total_ms"] for r in ok_f if r["total_ms"]]),
        "virsh_libvirt_total_ms": median([r["total_ms"] for r in ok_v if r["total_ms"]]),
        "virsh_return_s": median([r["return_s"] for r in ok_v]),
    }
    log("medians: " + json.dumps({k: round(v, 3) for k, v in med.items()}))
    report(
        "M1 Ferry/virsh time to running on destination (median ratio)",
        round(ratio, 3),
        "x",
        "<= 1.05",
        None if math.isnan(ratio) else ratio <= 1.05,
        f"{len(ratios)} pairs side by side (Ferry {len(ok_f)}/{len(ferry_rows)} ok, virsh "
        f"{len(ok_v)}/{len(virsh_rows)} ok); 256 MiB guest dirtying 5 MB/s, cap {cap} MiB/s; "
        f"'go' = plan_start / virsh exec, end = guest seen running on destination (50 ms poll); "
        f"Ferry median {med['ferry_to_running_s']:.2f} s vs virsh {med['virsh_to_running_s']:.2f}"
        f" s; Ferry reached migrateToURI3 {med['ferry_migrate_called_s']:.2f} s after start "
        f"(2 ferry_worker processes, db queue)",
    )
    report(
        "M1 libvirt total time Ferry/virsh (median ratio)",
        round(median(lv_ratios), 3),
        "x",
        "",
        None,
        f"libvirt's own time_elapsed from the destination's completed job stats; Ferry "
        f"{med['ferry_libvirt_total_ms']:.0f} ms vs virsh {med['virsh_libvirt_total_ms']:.0f} ms",
    )
    report(
        "M1 Ferry start to item completed (median)",
        round(med["ferry_start_to_completed_s"], 2),
        "s",
        "",
        None,
        f"includes preflight, the {args.verify} s post-switchover verify window and cleanup",
    )
    report(
        "M1 floor memory/bandwidth",
        round(floor, 2),
        "s",
        "",
        None,
        f"256 MiB / {cap} MiB/s; libvirt beats it when most pages are zero (sent as "
        f"'constant' pages): virsh libvirt total {med['virsh_libvirt_total_ms'] / 1000:.2f} s",
    )
    report(
        "M1 failed runs",
        len(ferry_rows) - len(ok_f) + len(virsh_rows) - len(ok_v),
        "runs",
        "0",
        len(ok_f) == len(ferry_rows) and len(ok_v) == len(virsh_rows),
        f"Ferry {len(ferry_rows) - len(ok_f)}, virsh {len(virsh_rows) - len(ok_v)}",
    )


# ----------------------------------------------------------------------------- M1b


def _cpu_ticks() -> tuple[int, int]:
    """(busy, total) jiffies of the whole machine from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    return sum(values) - idle, sum(values)


def _qemu_pids(name: str) -> list[int]:
    """PIDs of the QEMU processes running guest `name` (source and destination)."""
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes()
        except OSError:
            continue
        if b"qemu-system" in cmdline and f"guest={name},".encode() in cmdline:
            pids.append(int(proc.name))
    return pids


def _threads_cpu_s(pid: int) -> dict[tuple[int, str], float]:
    """CPU seconds (user + system) of each thread of a process: {(tid, name): seconds}."""
    import os

    out = {}
    tick = os.sysconf("SC_CLK_TCK")
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return out
    for task in tasks:
        try:
            name = (task / "comm").read_text().strip()
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        out[(int(task.name), name)] = (int(fields[11]) + int(fields[12])) / tick
    return out


def _migration_thread(name: str) -> bool:
    # QEMU 10 names them mig/src/main, mig/src/send_N (multifd), mig/dst/...; older QEMU
    # live_migration and multifdsend_N
    return name.startswith("mig/") or "multifd" in name or name == "live_migration"


class CpuWatch:
    """CPU over one move: the whole machine (/proc/stat), and QEMU's migration threads on
    both sides (sampled every 0.2 s, since the source QEMU exits at the end). The sending
    threads encrypt the TLS stream: one of them near 1.0 core = the move is CPU-bound on
    it, which parallel connections spread over several threads."""

    def __init__(self, name: str):
        self.name = name
        self.last: dict[tuple[int, int, str], float] = {}
        self.first: dict[tuple[int, int, str], float] = {}
        self.stop = threading.Event()

    def _sample(self):
        for pid in _qemu_pids(self.name):
            for (tid, name), used in _threads_cpu_s(pid).items():
                key = (pid, tid, name)
                self.first.setdefault(key, used)
                self.last[key] = used

    def _run(self):
        while not self.stop.wait(0.2):
            self._sample()

    def __enter__(self):
        self.t0 = time.monotonic()
        self.ticks0 = _cpu_ticks()
        self._sample()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()
        wall = time.monotonic() - self.t0
        busy1, total1 = _cpu_ticks()
        busy = (busy1 - self.ticks0[0]) / max(1, total1 - self.ticks0[1])
        used = {k: self.last[k] - self.first[k] for k in self.last}
        migration = {k: v for k, v in used.items() if _migration_thread(k[2])}
        self.figures = {
            "wall_s": round(wall, 2),
            "machine_busy": round(busy, 3),
            "machine_cores_busy": round(busy * _cores(), 2),
            "qemu_cpu_s": round(sum(used.values()), 2),
            "migration_threads_cpu_s": round(sum(migration.values()), 2),
            "busiest_migration_thread_cpu_s": round(max(migration.values(), default=0.0), 2),
            "busiest_migration_thread": max(migration, key=migration.get)[2] if migration else "",
        }
        return False


def m1b(args) -> None:
    """TLS migration of the same busy guest over the migration network: N parallel
    connections vs one, same bandwidth cap, alternating; libvirt's own total time."""
    cap, conns = args.cap, args.connections
    base = {"require_tls": True, "bandwidth_mib_s": cap, "verify_seconds": args.verify}
    cases = {"one": base, "parallel": {**base, "parallel_connections": conns}}
    rows: dict[str, list] = {c: [] for c in cases}
    with Lab() as lab, Guests("bm1b") as guests:
        ferry = Ferry(lab, workers=2, migration_network=True)
        try:
            name = guests.start("lab-a", memory_mib=512, dirty_ws=128, dirty_rate=40)
            hb = guests.vm.wait_heartbeat(name, timeout=90, after=2)
            where = "lab-a"
            for pair in range(args.pairs):
                order = ("one", "parallel") if pair % 2 == 0 else ("parallel", "one")
                for case in order:
                    dst = other(where)
                    with CpuWatch(name) as cpu:
                        r = ferry.move(name, dst, cases[case], timeout=args.timeout + 60)
                    r["cpu"] = cpu.figures
                    alive, why, hb = alive_on(guests.vm, name, dst if r["ok"] else where, hb)
                    if not alive:
                        r["ok"], r["error"] = False, f"{r.get('error') or ''} guest: {why}"
                    show(f"pair {pair + 1} {case} {where}->{dst} cpu {cpu.figures}", r)
                    rows[case].append(r)
                    actual = guests.vm.where_running(name)
                    where = actual[0] if len(actual) == 1 else where
        finally:
            ferry.close()
    ok = {c: [r for r in rs if r["ok"] and r["total_ms"]] for c, rs in rows.items()}
    med = {c: median([r["total_ms"] for r in ok[c]]) for c in cases}
    ratio = med["parallel"] / med["one"] if ok["one"] and ok["parallel"] else float("nan")

    def per_s(r, key):  # CPU seconds of a kind over libvirt's own time of the move
        return r["cpu"][key] / (r["total_ms"] / 1000)

    cpu = {
        c: {
            "busiest": median([per_s(r, "busiest_migration_thread_cpu_s") for r in ok[c]]),
            "threads": median([per_s(r, "migration_threads_cpu_s") for r in ok[c]]),
            "machine_busy": median([r["cpu"]["machine_busy"] for r in ok[c]]),
        }
        for c in cases
    }
    bound = cpu["one"]["busiest"] >= 0.8
    saturated = all(cpu[c]["machine_busy"] >= 0.9 for c in cases)
    failed = sum(len(rows[c]) - len(ok[c]) for c in cases)
    notes = (
        f"512 MiB guest dirtying 40 MB/s (128 MB working set), TLS, migration network, cap "
        f"{cap} MiB/s; {len(ok['one'])} + {len(ok['parallel'])} ok runs alternating, {failed} "
        f"failed; median libvirt total one {med['one']:.0f} ms, {conns} connections "
        f"{med['parallel']:.0f} ms; busiest QEMU migration thread "
        f"{cpu['one']['busiest']:.2f} vs {cpu['parallel']['busiest']:.2f} cores, all migration "
        f"threads {cpu['one']['threads']:.2f} vs {cpu['parallel']['threads']:.2f} cores (over "
        f"libvirt's time); machine {cpu['one']['machine_busy']:.0%} vs "
        f"{cpu['parallel']['machine_busy']:.0%} busy on {_cores()} cores (TCG guest vCPU and "
        "other sessions included)"
        + (
            " — one connection is CPU-bound: its single sending thread (TLS) was near a full core"
            if bound
            else ""
        )
        + (
            " — the machine was CPU-bound as a whole (saturated by TCG vCPUs and other work), "
            "not the TLS thread: the migration threads waited for CPU, so the ratio moves with "
            "the machine's load"
            if saturated and not bound
            else ""
        )
    )
    report(
        f"M1b TLS {conns} parallel connections / one (median libvirt total time)",
        round(ratio, 3),
        "x",
        "<= 1.0",
        None if math.isnan(ratio) else ratio <= 1.0,
        notes,
    )
    report("M1b failed runs", failed, "runs", "0", failed == 0, "")
    for case, rs in rows.items():
        for r in rs:
            print(
                "M1b run: "
                + json.dumps(
                    {
                        "case": case,
                        "ok": r["ok"],
                        "total_ms": r.get("total_ms"),
                        "downtime_ms": r.get("downtime_ms"),
                        "iterations": r.get("iterations"),
                        "cpu": r.get("cpu"),
                        "error": r.get("error"),
                    }
                )
            )


# ----------------------------------------------------------------------------- M2


def m2(args) -> None:
    """Busy guests under max-downtime 300 ms and 1 s: measured downtime / configured."""
    cap = args.cap
    profiles = [(128, 30), (64, 60)]  # (working set MB, dirty rate MB/s)
    rows = []  # (profile, limit, result)
    with Lab() as lab, Guests("bm2") as guests:
        ferry = Ferry(lab, workers=2)
        try:
            for ws, rate in profiles:
                name = guests.start("lab-a", memory_mib=256, dirty_ws=ws, dirty_rate=rate)
                try:
                    hb = guests.vm.wait_heartbeat(name, timeout=90, after=3)
                    where = "lab-a"
                    for run in range(args.runs):
                        limits = (300, 1000) if run % 2 == 0 else (1000, 300)
                        for limit in limits:
                            policy = {
                                "bandwidth_mib_s": cap,
                                "max_downtime_ms": limit,
                                "verify_seconds": args.verify,
                            }
                            dst = other(where)
                            r = ferry.move(name, dst, policy, timeout=args.timeout + 60)
                            alive, why, hb = alive_on(
                                guests.vm, name, dst if r["ok"] else where, hb
                            )
                            if not alive:
                                r["ok"], r["error"] = False, f"{r['error']} guest: {why}"
                            show(f"{rate} MB/s ws {ws} MB, limit {limit} ms", r)
                            rows.append(((ws, rate), limit, r))
                            actual = guests.vm.where_running(name)
                            where = actual[0] if len(actual) == 1 else where
                finally:
                    guests.destroy(name)
        finally:
            ferry.close()
    every_ok = True
    for limit in (300, 1000):
        mine = [(p, r) for p, lim, r in rows if lim == limit]
        ratios = [r["downtime_ms"] / limit for _p, r in mine if r["ok"] and r["downtime_ms"]]
        failed = sum(1 for _p, r in mine if not r["ok"])
        worst = max(ratios) if ratios else float("nan")
        met = bool(ratios) and worst <= 1.0 and failed == 0
        every_ok &= met
        runs = "; ".join(
            f"{p[1]}MB/s: "
            + (f"{r['downtime_ms']} ms ({r['iterations']} it)" if r["ok"] else "FAILED")
            for p, r in mine
        )
        report(
            f"M2 worst downtime/configured at {limit} ms",
            round(worst, 3),
            "x",
            "<= 1.0 every run",
            met,
            f"{len(mine)} runs, {failed} failed; 256 MiB guests, cap {cap} MiB/s; runs: {runs}",
        )
    for p, limit, r in rows:
        print(
            "M2 run: "
            + json.dumps(
                {
                    "dirty_mb_s": p[1],
                    "ws_mb": p[0],
                    "limit_ms": limit,
                    "ok": r["ok"],
                    "downtime_ms": r.get("downtime_ms"),
                    "total_ms": r.get("total_ms"),
                    "iterations": r.get("iterations"),
                    "error": r.get("error"),
                }
            )
        )


# ----------------------------------------------------------------------------- M3


def m3(args) -> None:
    """A guest dirtying faster than the cap: virsh defaults vs Ferry's policies, same timeout."""
    cap, ws, rate, limit_s = 40, 96, 120, args.timeout
    per_gib = int(limit_s * 1024 / 256)  # Ferry's completion timeout for 256 MiB = limit_s
    cases = ["virsh-defaults", "ferry-auto_converge", "ferry-postcopy", "ferry-force_complete"]
    rows: dict[str, list] = {c: [] for c in cases}
    with Lab() as lab, Guests("bm3") as guests:
        ferry = Ferry(lab, workers=2)
        try:
            name = guests.start("lab-a", memory_mib=256, dirty_ws=ws, dirty_rate=rate)
            hb = guests.vm.wait_heartbeat(name, timeout=90, after=3)
            where = "lab-a"
            for run in range(args.runs):
                for case in cases[run % len(cases) :] + cases[: run % len(cases)]:
                    dst = other(where)
                    if case == "virsh-defaults":
                        r = virsh_move(lab, name, where, dst, cap, timeout=limit_s)
                    elif case == "ferry-force_complete":
                        # Pause the guest at the first stall so the rest moves (the pause
                        # is downtime, counted from it).
                        policy = {
                            "bandwidth_mib_s": cap,
                            "convergence_schedule": [{"action": "force_complete"}],
                            "completion_timeout_s_per_gib": per_gib,
                            "verify_seconds": args.verify,
                        }
                        r = ferry.move(name, dst, policy, timeout=limit_s + 90)
                    else:
                        policy = {
                            "bandwidth_mib_s": cap,
                            "on_no_convergence": case.split("-", 1)[1],
                            "completion_timeout_s_per_gib": per_gib,
                            "verify_seconds": args.verify,
                        }
                        r = ferry.move(name, dst, policy, timeout=limit_s + 90)
                    alive, why, hb = alive_on(guests.vm, name, dst if r["ok"] else where, hb)
                    if not alive and r["ok"]:
                        r["ok"], r["error"] = False, f"guest: {why}"
                    elif not alive:
                        r["error"] = f"{r.get('error')} guest: {why}"
                    show(f"run {run + 1} {case} {where}->{dst}", r)
                    rows[case].append(r)
                    actual = guests.vm.where_running(name)
                    where = actual[0] if len(actual) == 1 else where
        finally:
            ferry.close()

    def summary(rs):
        ok = [r for r in rs if r["ok"]]
        return (
            len(ok),
            len(rs),
            median([r["total_ms"] / 1000 for r in ok if r.get("total_ms")]),
            median([r["downtime_ms"] for r in ok if r.get("downtime_ms") is not None]),
        )

    vok, vn, vt, vd = summary(rows["virsh-defaults"])
    default_outcome = (
        f"virsh defaults converged {vok}/{vn} (median {vt:.1f} s, downtime {vd:.0f} ms)"
        if vok
        else f"virsh defaults converged 0/{vn} within {limit_s:.0f} s (aborted)"
    )
    for case in cases[1:]:
        ok, n, t, d = summary(rows[case])
        errors = "; ".join(r["error"][:80] for r in rows[case] if not r["ok"])
        report(
            f"M3 {case} converged",
            ok,
            f"of {n} runs",
            "every run",
            n > 0 and ok == n,
            f"median total {t:.1f} s, downtime {d:.0f} ms; {default_outcome}; 256 MiB guest "
            f"dirtying {rate} MB/s over {ws} MB, cap {cap} MiB/s, timeout {limit_s:.0f} s"
            + (f"; failures: {errors}" if errors else ""),
        )
    report(
        "M3 virsh defaults converged",
        vok,
        f"of {vn} runs",
        "",
        None,
        default_outcome
        + "; errors: "
        + "; ".join((r.get("error") or "")[-80:] for r in rows["virsh-defaults"] if not r["ok"]),
    )


# ----------------------------------------------------------------------------- S2


def s2(args) -> None:
    """Stall onset to the policy's first action. The guest dirties 128 MiB at ~120 MB/s
    against a 32 MiB/s cap: pre-copy stalls as soon as its first pass over memory ends
    (the first pass always makes progress: every page is sent once, so no detector can
    call a stall inside it). Onset = the first sample of the second pass (QEMU's
    iteration counter moved past the attempt's first one); action = the time the
    schedule's first step fired (its evidence). Target: at most 10 s."""
    cap, ws, rate = 32, 128, 120
    policy = {
        "bandwidth_mib_s": cap,
        "convergence_schedule": [{"action": "abort"}],
        "progress_timeout_s": 0,
        "verify_seconds": args.verify,
    }
    delays, notes = [], []
    with Lab() as lab, Guests("bs2") as guests:
        ferry = Ferry(lab, workers=2)
        from migrations_app.models import ProgressSample  # Django is set up by Ferry()

        try:
            name = guests.start("lab-a", memory_mib=256, dirty_ws=ws, dirty_rate=rate)
            guests.vm.wait_heartbeat(name, timeout=90, after=3)
            for run in range(args.runs):
                r = ferry.move(name, "lab-b", policy, timeout=240)
                attempt = (r.get("attempts") or [{}])[0]
                steps = attempt.get("convergence") or []
                if not steps or "id" not in attempt:
                    notes.append(f"run {run + 1}: no step fired ({r.get('error')})")
                    continue
                samples = list(
                    ProgressSample.objects.filter(attempt_id=attempt["id"])
                    .order_by("elapsed_ms")
                    .values_list("elapsed_ms", "iteration")
                )
                first = next((it for _, it in samples if it is not None), None)
                onset = next(
                    (ms / 1000 for ms, it in samples if it is not None and it > first), None
                )
                if onset is None:
                    notes.append(f"run {run + 1}: no second pass seen")
                    continue
                delay = steps[0]["at_s"] - onset
                delays.append(delay)
                log(
                    f"run {run + 1}: second pass at {onset:.1f} s, first action "
                    f"({steps[0]['action']}) at {steps[0]['at_s']:.1f} s: {delay:.1f} s"
                )
        finally:
            ferry.close()
    worst = max(delays) if delays else None
    report(
        "S2 stall to first action",
        None if worst is None else round(worst, 1),
        "s (worst run)",
        "<= 10 s",
        worst is not None and worst <= 10,
        f"median {fmt(median(delays), ' s')} over {len(delays)} runs; 256 MiB guest dirtying "
        f"{rate} MB/s over {ws} MB, cap {cap} MiB/s; onset = first sample of the second pass"
        + (f"; {'; '.join(notes)}" if notes else ""),
    )


# ----------------------------------------------------------------------------- S1


def s1(args) -> None:
    """Evacuate a host with 3 guests: Ferry's policy vs serial vs all at once (makespan)."""
    cap, count = args.cap, 3
    # The planner states the migration network's speed (the lab's hosts talk over veth
    # pairs, 10 Gbit/s nominal); everything else is Ferry's default policy, whose
    # concurrency then follows the link: floor(path bandwidth / per-migration cap).
    base = {
        "bandwidth_mib_s": cap,
        "verify_seconds": args.verify,
        "assumed_bandwidth_mib_s": args.link,
    }
    variants = {
        "ferry-policy": {},  # Ferry's defaults: concurrency from the link rule
        "serial": {"max_concurrent": 1},
        "all-at-once": {
            "max_concurrent": count,
            "max_outbound_per_host": count,
            "max_inbound_per_host": count,
        },
    }
    names_v = list(variants)
    spans: dict[str, list] = {v: [] for v in variants}
    fails: dict[str, int] = dict.fromkeys(variants, 0)
    with Lab() as lab, Guests("bs1") as guests:
        ferry = Ferry(lab, workers=count + 1)
        try:
            names = [
                guests.start("lab-a", memory_mib=256, dirty_ws=32, dirty_rate=5)
                for _ in range(count)
            ]
            hbs = {n: guests.vm.wait_heartbeat(n, timeout=120, after=3) for n in names}
            where = "lab-a"
            for run in range(args.runs):
                for variant in names_v[run % 3 :] + names_v[: run % 3]:
                    ferry.sync()
                    dst = other(where)
                    try:
                        plan, est = ferry.plan(
                            [], None, {**base, **variants[variant]}, evacuate=where
                        )
                        r = ferry.run(plan, timeout=300)
                    except Exception as exc:  # a failed plan is a figure too
                        r = {"settled": False, "attempts": [], "wall_s": None, "error": str(exc)}
                        est = {}
                    done = [a for a in r["attempts"] if a["status"] == "completed"]
                    ok = r["settled"] and len(done) == count
                    for n in names:
                        alive, why, hbs[n] = alive_on(guests.vm, n, dst, hbs[n])
                        ok &= alive
                        if not alive:
                            log(f"  {n}: {why}")
                    log(
                        f"run {run + 1} {variant} {where}->{dst}: ok={ok} makespan "
                        f"{fmt(r['wall_s'], ' s')} (estimate {est.get('makespan_s')} s) "
                        + " ".join(
                            f"[{a['vm']} {a['status']} {fmt(a['migrate_called_s'])}"
                            f"-{fmt(a['done_s'])} s]"
                            for a in r["attempts"]
                        )
                        + (f" {r.get('error')}" if r.get("error") else "")
                    )
                    if ok:
                        spans[variant].append(r["wall_s"])
                    else:
                        fails[variant] += 1
                    runs_on = {tuple(guests.vm.where_running(n)) for n in names}
                    if runs_on == {(dst,)}:
                        where = dst
                    elif runs_on != {(where,)}:
                        log(f"guests are split over hosts ({runs_on}); stopping S1 here")
                        break
                else:
                    continue
                break
        finally:
            ferry.close()
    med = {v: median(spans[v]) for v in variants}
    best_other = min(med["serial"], med["all-at-once"])
    notes = (
        f"medians: Ferry policy {med['ferry-policy']:.1f} s, serial {med['serial']:.1f} s, "
        f"all at once {med['all-at-once']:.1f} s over {args.runs} run(s) each, variants "
        f"interleaved; failures {fails}; {count} guests of 256 MiB, cap {cap} MiB/s each, "
        f"{args.verify} s verify; path bandwidth stated as {args.link} MiB/s, so Ferry's "
        f"default allows {min(8, max(1, int(args.link // cap)))} out/in per host; "
        f"2-host lab on {_cores()} cores"
    )
    for other_v in ("serial", "all-at-once"):
        ratio = med["ferry-policy"] / med[other_v]
        report(
            f"S1 makespan Ferry policy / {other_v}",
            round(ratio, 3),
            "x",
            "Ferry not slower than the better of the two",
            None if math.isnan(ratio) else med["ferry-policy"] <= best_other * 1.0,
            notes,
        )


def _cores() -> int:
    import os

    return os.cpu_count() or 0


# ----------------------------------------------------------------------------- P1


def p1(args) -> None:
    """Estimate at planning time vs measured: memory × dirty rate × bandwidth cap, split
    into first moves (the VM never moved: its touched memory is a guess) and repeat moves."""
    # 2 x 2 x 2 cells: an idle guest and one dirtying faster than the low cap (QEMU's
    # auto-converge then paces the move), at a cap below and above its dirty rate. Each run
    # boots a fresh guest per (memory, dirty rate) and moves it twice, once per cap; the cap
    # order flips every run, so over two runs every cell is measured once as a VM's first
    # move and once as its repeat move. The middle dirty rate (20 MB/s) was dropped to keep
    # the lab benchmarks within their share of `make bench`'s 30 minutes.
    memories = [256, 512]
    dirties = [(0, 0), (64, 40)]  # (working set MB, MB/s)
    caps = [32, 96]
    rows = []
    deadline = time.monotonic() + args.budget
    with Lab() as lab, Guests("bp1") as guests:
        ferry = Ferry(lab, workers=2)
        from migrations_app.estimate import precopy  # Django is set up by now
        from migrations_app.policy import Policy

        try:
            for run in range(args.runs):
                for mem in memories:
                    for ws, rate in dirties:
                        if time.monotonic() > deadline:
                            log("time budget spent: skipping the rest of the grid")
                            break
                        rows += _p1_guest(
                            args, ferry, guests, run, mem, ws, rate, caps, precopy, Policy
                        )
        finally:
            ferry.close()
    _p1_report(args, rows)


def _p1_guest(args, ferry, guests, run, mem, ws, rate, caps, precopy, Policy) -> list:
    """One fresh guest moved once per cap (its first move, then a repeat move)."""
    rows = []
    name = guests.start("lab-a", memory_mib=mem, dirty_ws=ws, dirty_rate=rate)
    try:
        hb = guests.vm.wait_heartbeat(name, timeout=120, after=3)
        where = "lab-a"
        for move, cap in enumerate(caps if run % 2 == 0 else caps[::-1]):
            policy = {
                "bandwidth_mib_s": cap,
                "verify_seconds": args.verify,
                "completion_timeout_s_per_gib": 240,
            }
            dst = other(where)
            dirty = rate * MB_TO_MIB
            r = ferry.move(name, dst, policy, timeout=200, dirty=dirty)
            alive, why, hb = alive_on(guests.vm, name, dst if r["ok"] else where, hb)
            if not alive:
                r["ok"] = False
                r["error"] = f"{r['error']} guest: {why}"
            e = r["estimate"]
            assumed = precopy(mem, 20.0, cap, Policy.from_dict(policy))
            row = {
                "run": run + 1,
                "mem": mem,
                "dirty_mb_s": rate,
                "ws_mb": ws,
                "cap": cap,
                "first_move": move == 0,
                "ok": r["ok"],
                "est_s": e.get("memory_transfer_s"),
                "est_low_s": e.get("memory_transfer_low_s"),
                "est_high_s": e.get("memory_transfer_high_s"),
                "est_first_move": e.get("first_move"),
                "est_downtime_ms": e.get("downtime_ms"),
                "est_by": e.get("converges_by"),
                "est_touched_mib": e.get("touched_mib"),
                "est_touched_from": e.get("touched_source"),
                "est_setup_s": e.get("setup_s"),
                "est_setup_from": e.get("setup_source"),
                "est_rate_factor": e.get("rate_factor"),
                "est_uncertainty": e.get("uncertainty"),
                "assumed_est_s": round(assumed.transfer_s, 2),
                "meas_s": (r["total_ms"] or 0) / 1000 if r["ok"] else None,
                "meas_downtime_ms": r.get("downtime_ms"),
                "iterations": r.get("iterations"),
                "error": r.get("error"),
            }
            rows.append(row)
            log("P1 " + json.dumps(row))
            actual = guests.vm.where_running(name)
            where = actual[0] if len(actual) == 1 else where
    finally:
        guests.destroy(name)
    return rows


def _p1_errors(rows: list) -> dict:
    """Error figures of some P1 rows: |relative| errors, signed, interval coverage/width."""
    err = [abs(r["est_s"] - r["meas_s"]) / r["meas_s"] for r in rows]
    inside = [
        r["est_low_s"] <= r["meas_s"] <= r["est_high_s"]
        for r in rows
        if r.get("est_low_s") is not None and r.get("est_high_s") is not None
    ]
    widths = [
        (r["est_high_s"] - r["est_low_s"]) / r["est_s"]
        for r in rows
        if r.get("est_high_s") is not None and r["est_s"]
    ]
    return {
        "n": len(rows),
        "err": err,
        "median": median(err) * 100,
        "p90": percentile(err, 90) * 100,
        "signed": median([(r["est_s"] - r["meas_s"]) / r["meas_s"] for r in rows]) * 100,
        "coverage": (sum(inside) / len(inside) * 100) if inside else float("nan"),
        "width": median(widths) * 100,
    }


def _p1_report(args, rows: list) -> None:
    ok = [r for r in rows if r["ok"] and r["meas_s"] and r["est_s"] is not None]
    every = _p1_errors(ok)
    first = _p1_errors([r for r in ok if r["first_move"]])
    repeat = _p1_errors([r for r in ok if not r["first_move"]])
    err_assumed = [abs(r["assumed_est_s"] - r["meas_s"]) / r["meas_s"] for r in ok]
    dt_err = [
        r["est_downtime_ms"] - r["meas_downtime_ms"]
        for r in ok
        if r["meas_downtime_ms"] is not None and r["est_downtime_ms"] is not None
    ]
    learnt = sum(1 for r in ok if (r.get("est_setup_from") or "").startswith("fitted"))
    # Run 1 measures cells the fit has never seen (its history: the earlier guests of run 1,
    # other cells, and for a repeat move its own first move at the other cap); later runs
    # measure cells whose earlier runs are in the history.
    by_run = "; ".join(
        f"run {n}: median {part['median']:.1f} %, p90 {part['p90']:.1f} % over {part['n']}"
        for n in sorted({r["run"] for r in ok})
        for part in [_p1_errors([r for r in ok if r["run"] == n])]
    )
    cells = {}
    for r in ok:
        key = f"{r['mem']}MiB/{r['dirty_mb_s']}MBps/cap{r['cap']}"
        kind = "first" if r["first_move"] else "repeat"
        cells.setdefault(key, []).append(
            f"{kind} est {r['est_s']:.1f} s vs meas {r['meas_s']:.1f} s"
        )
    per_cell = "; ".join(f"{k}: {', '.join(v)}" for k, v in cells.items())
    failed = len(rows) - len(ok)
    split = (
        "fit/measure split: prequential, on a fresh scratch database. Every estimate is made "
        "at planning time from the moves completed before it (never from the move itself or "
        "a later one): the link's setup, effective-rate and throttled factors and the "
        "first-move touched-memory ratio are fitted on the earlier runs' and earlier guests' "
        "moves, a repeat move also uses its own VM's first move; the first guest of run 1 "
        f"starts with no history (priors only). Per run: {by_run} (run 1's cells were never "
        "in the history before they were measured). "
        f"{learnt} of {len(ok)} estimates used a link "
        "fit. No constant was set from these cells: the priors (±30 %, first-move touched "
        "40-100 % of rss) are stated in migrations_app/calibration.py"
    )
    common_notes = (
        f"{len(ok)} runs ok, {failed} failed, 8 cells x {args.runs} run(s), a fresh guest per "
        f"run and (memory, dirty rate), moved once per cap (cap order flips every run); "
        f"estimate = plan_validate's memory_transfer_s with the guest's dirty rate on the VM "
        f"record, measured = libvirt's total time"
    )
    report(
        "P1 median error of total time",
        round(every["median"], 1),
        "%",
        "<= 10 %",
        bool(ok) and every["median"] <= 10,
        f"{common_notes}; median signed error {every['signed']:+.0f} % "
        f"(+ = the model says slower); with the default assumed 20 MiB/s dirty rate instead: "
        f"median {median(err_assumed) * 100:.0f} %; {split}",
    )
    report(
        "P1 p90 error of total time",
        round(every["p90"], 1),
        "%",
        "<= 20 %",
        bool(ok) and every["p90"] <= 20,
        f"per cell: {per_cell}",
    )
    for label, part in (("first moves", first), ("repeat moves", repeat)):
        report(
            f"P1 {label}: median error of total time",
            round(part["median"], 1),
            "%",
            "<= 10 %",
            bool(part["n"]) and part["median"] <= 10,
            f"{part['n']} moves; p90 {part['p90']:.1f} %; median signed {part['signed']:+.0f} %; "
            f"the estimate's interval held the measured time in {part['coverage']:.0f} % of "
            f"them (the interval aims at 80 %: its spread is the 80th percentile of the link's "
            f"leave-one-out errors); median interval width {part['width']:.0f} % of the estimate",
        )
        report(
            f"P1 {label}: p90 error of total time",
            round(part["p90"], 1),
            "%",
            "<= 20 %",
            bool(part["n"]) and part["p90"] <= 20,
            f"{part['n']} moves",
        )
    report(
        "P1 median downtime error (estimate - measured)",
        round(median(dt_err), 1),
        "ms",
        "",
        None,
        f"p90 of |error| {percentile([abs(x) for x in dt_err], 90):.0f} ms over {len(dt_err)} runs",
    )


# ----------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("which", choices=["m1", "m1b", "m2", "m3", "p1", "s1", "s2"])
    parser.add_argument("--pairs", type=int, default=5, help="M1: Ferry/virsh pairs; M1b pairs")
    parser.add_argument("--connections", type=int, default=4, help="M1b: parallel connections")
    parser.add_argument("--runs", type=int, default=3, help="runs per case (M2, M3, P1, S1)")
    parser.add_argument("--cap", type=int, default=64, help="bandwidth cap, MiB/s (M1, S1)")
    parser.add_argument(
        "--link", type=float, default=1190, help="S1: path bandwidth stated, MiB/s (veth)"
    )
    parser.add_argument("--verify", type=int, default=3, help="Ferry's verify_seconds")
    parser.add_argument("--timeout", type=float, default=60, help="completion timeout, s")
    # P1 boots a fresh guest per run and (memory, dirty rate): 3 runs took 9.5 min on the lab
    parser.add_argument("--budget", type=float, default=600, help="P1: stop starting guests after")
    args = parser.parse_args()
    started = time.monotonic()
    globals()[args.which](args)
    print(f"{args.which}: {time.monotonic() - started:.0f} s", flush=True)


if __name__ == "__main__":
    main()
