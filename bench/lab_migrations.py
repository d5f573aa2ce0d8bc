"""Migration benchmarks on the lab (root): M1 overhead, M2 downtime control, M3 convergence,
S1 plan makespan, P1 estimate accuracy. Ferry is measured through real plans run by real
`manage.py ferry_worker` processes on a scratch database; virsh runs on the same hosts.

    .venv/bin/python bench/lab_migrations.py m1 [--pairs 5]
    .venv/bin/python bench/lab_migrations.py m2|m3|p1 [--runs 3]
    .venv/bin/python bench/lab_migrations.py s1 [--runs 1]

Every figure is printed even when runs fail (failures are counted as figures too); every
guest started here is destroyed at the end, also on failure.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
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


# ----------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("which", choices=["m1", "m2", "m3", "p1", "s1"])
    parser.add_argument("--pairs", type=int, default=5, help="M1: Ferry/virsh pairs")
    parser.add_argument("--runs", type=int, default=3, help="runs per case (M2, M3, P1, S1)")
    parser.add_argument("--cap", type=int, default=64, help="bandwidth cap, MiB/s (M1, S1)")
    parser.add_argument("--verify", type=int, default=3, help="Ferry's verify_seconds")
    parser.add_argument("--timeout", type=float, default=60, help="completion timeout, s")
    args = parser.parse_args()
    started = time.monotonic()
    globals()[args.which](args)
    print(f"{args.which}: {time.monotonic() - started:.0f} s", flush=True)


if __name__ == "__main__":
    main()
