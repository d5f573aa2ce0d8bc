"""`make bench`: run every benchmark, print one table, write bench/results/latest.json.

Benchmarks are not tests: they never gate CI, and each prints what it measured even when
it misses its target. Lab benchmarks bring the lab up themselves (root only).

    .venv/bin/python bench/run.py [--only W1,W2] [--quick] [--merge]

Without --only: every benchmark but the L1 load test (`make bench-load`). Each figure is
compared with the same figure in the previous latest.json: one more than 20 % worse (by its
target's direction) prints a "WARNING regression" line; the file keeps the last 10 runs
(date, commit, machine, figures) under "history".
"""

import argparse
import datetime as dt
import json
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from common import machine  # noqa: E402

# id -> (script and arguments, quick arguments, timeout seconds)
BENCHMARKS = {
    "PL1": (["pl1_planning.py"], [], 600),
    # PL1 again on PostgreSQL (what production runs), in a scratch database run.py creates
    # and drops on the server of L1_STACK; no figure when that server is not reachable.
    "PL1pg": (["pl1_planning.py"], [], 600),
    "B1": (["b1_balance.py"], [], 300),
    "A1": (["audit_verify.py", "1000000"], ["audit_verify.py", "100000"], 900),
    "F1": (["audit_forward.py"], ["audit_forward.py", "--events", "100", "--backlog", "2000"], 300),
    "W2": (["w2_api_scale.py"], ["w2_api_scale.py", "--large", "20000"], 900),
    "W1": (["w1_live_stream.py"], ["w1_live_stream.py", "--seconds", "8"], 600),
    # The lab benchmarks share ~16 of `make bench`'s 30 minutes (measured full mode on a
    # busy 2-core machine: M1 1.5, M2 ~1.2 with one run, M3 2.4, P1 9.5 (a fresh guest per
    # run, for first and repeat moves), S1 1.8 min); the
    # issue's minimums are kept: 5 M1 pairs, 3 P1 runs per cell, 3 S1 guests. Timeouts
    # are far above those times: a timeout kills the benchmark without its cleanup.
    "M1": (["lab_migrations.py", "m1"], ["lab_migrations.py", "m1", "--pairs", "2"], 900),
    # M1b: 3 pairs of TLS moves of a 512 MiB busy guest (~1.5 min measured); quick: 1 pair.
    "M1b": (
        ["lab_migrations.py", "m1b", "--pairs", "3", "--cap", "1000", "--verify", "1"],
        ["lab_migrations.py", "m1b", "--pairs", "1", "--cap", "1000", "--verify", "1"],
        900,
    ),
    "M2": (
        ["lab_migrations.py", "m2", "--runs", "1", "--verify", "1"],
        ["lab_migrations.py", "m2", "--runs", "1", "--verify", "1"],
        900,
    ),
    "M3": (
        ["lab_migrations.py", "m3", "--runs", "1", "--verify", "1"],
        ["lab_migrations.py", "m3", "--runs", "1", "--verify", "1"],
        900,
    ),
    "P1": (
        ["lab_migrations.py", "p1", "--runs", "3", "--verify", "1"],
        ["lab_migrations.py", "p1", "--runs", "1", "--verify", "1"],
        1200,
    ),
    "S2": (
        ["lab_migrations.py", "s2", "--runs", "3", "--verify", "1"],
        ["lab_migrations.py", "s2", "--runs", "1", "--verify", "1"],
        600,
    ),
    "S1": (
        ["lab_migrations.py", "s1", "--runs", "2"],
        ["lab_migrations.py", "s1", "--runs", "1"],
        900,
    ),
    "L1": (["load_test.py"], ["load_test.py", "--seconds", "60"], 900),
    # CPU per request of the load test's endpoints, in-process, with a committed profile.
    "L1P": (["l1_profile.py"], ["l1_profile.py", "--requests", "15"], 600),
}
# `make bench` (issue 8's table) stays within 30 minutes; the 5-minute L1 load test (issue 9)
# runs on its own: `make bench-load`, or `--only L1`.
DEFAULT = [b for b in BENCHMARKS if b not in ("L1", "L1P")]

HISTORY_RUNS = 10  # runs kept in latest.json's "history", newest first
REGRESSION = 0.20  # a figure this much worse than in the previous file prints a warning


# L1 measures Ferry as production runs it: on PostgreSQL and Redis when this machine has
# them on loopback (FERRY_BENCH_DATABASE_URL / FERRY_BENCH_REDIS_URL pick others, "none"
# keeps the embedded default). L1 creates and drops a scratch database of its own.
L1_STACK = (
    ("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres"),
    ("REDIS_URL", "redis://127.0.0.1:6379/9"),
)


def _reachable(url: str) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port), timeout=1):
            return True
    except (OSError, ValueError):
        return False


def bench_env(bench_id: str) -> dict:
    env = dict(os.environ)
    if bench_id == "L1":
        for var, default in L1_STACK:
            chosen = os.environ.get(f"FERRY_BENCH_{var}", default)
            if chosen != "none" and _reachable(chosen):
                env[var] = chosen
    if bench_id == "PL1":  # the embedded SQLite, in a throwaway directory
        env.pop("DATABASE_URL", None)
        env.pop("FERRY_DATA_DIR", None)
    if bench_id == "PL1pg":  # never the database the shell points at: a scratch one
        env.pop("FERRY_DATA_DIR", None)
        env["DATABASE_URL"] = _scratch_postgres()
    return env


def _postgres_server() -> str | None:
    url = os.environ.get("FERRY_BENCH_DATABASE_URL", dict(L1_STACK)["DATABASE_URL"])
    return url if url != "none" and _reachable(url) else None


def _scratch_postgres() -> str:
    """A new database on the benchmarks' PostgreSQL server (dropped by _drop_scratch)."""
    server = _postgres_server()
    if server is None:
        raise RuntimeError("PostgreSQL is not reachable (FERRY_BENCH_DATABASE_URL)")
    import psycopg

    name = f"ferry_bench_{os.getpid()}_{int(time.time())}"
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    parts = urlsplit(server)
    return parts._replace(path=f"/{name}").geturl()


def _drop_scratch(url: str) -> None:
    import psycopg

    name = urlsplit(url).path.lstrip("/")
    with psycopg.connect(_postgres_server(), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def run_one(bench_id: str, quick: bool) -> list[dict]:
    full, short, timeout = BENCHMARKS[bench_id]
    args = short if quick and short else full
    script = HERE / args[0]
    if not script.exists():
        return [
            {
                "name": bench_id,
                "value": None,
                "unit": "",
                "target": "",
                "met": None,
                "notes": f"{args[0]} is missing",
            }
        ]
    started = time.monotonic()
    print(f"== {bench_id}: {' '.join(args)}", flush=True)
    env = None
    try:
        env = bench_env(bench_id)
        proc = subprocess.run(
            [sys.executable, str(script), *args[1:]],
            cwd=HERE,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
        )
        output, code = proc.stdout + proc.stderr, proc.returncode
    except subprocess.TimeoutExpired as exc:
        output, code = (
            (exc.stdout or "") + (exc.stderr or "") if isinstance(exc.stdout, str) else "",
            "timeout",
        )
    except RuntimeError as exc:  # the benchmark's service is missing: no figure, say why
        output, code = str(exc), "not run"
    finally:
        if bench_id == "PL1pg" and env is not None:
            _drop_scratch(env["DATABASE_URL"])
    records = []
    for line in output.splitlines():
        if line.startswith("BENCH "):
            record = json.loads(line[6:])
            record["id"] = bench_id
            records.append(record)
        elif line.strip() and not line.startswith("client "):
            print(f"   {line}")
    if not records:
        tail = " | ".join(output.strip().splitlines()[-3:])
        records.append(
            {
                "id": bench_id,
                "name": bench_id,
                "value": None,
                "unit": "",
                "target": "",
                "met": None,
                "notes": f"no figure (exit {code}): {tail}"[:400],
            }
        )
    print(f"   ({time.monotonic() - started:.0f} s)")
    return records


def lower_is_better(target) -> bool | None:
    """A figure's direction from its target ("< 10 s", "≤ 1.5" -> lower is better; "≥ …" ->
    higher); None when the target states no bound ("report", free text)."""
    text = str(target or "").strip()
    if re.match(r"^(<|≤|<=)", text):
        return True
    if re.match(r"^(>|≥|>=)", text):
        return False
    return None


def regressions(records: list, previous: dict) -> list[str]:
    """A warning line per figure more than 20 % worse than the same figure (id and name)
    in the previous results file, or with no figure (None, NaN) where it had one."""
    before = {
        (r.get("id"), r.get("name")): r
        for r in previous.get("figures", [])
        if _a_number(r.get("value"))
    }
    lines = []
    for r in records:
        old = before.get((r.get("id"), r.get("name")))
        value = r.get("value")
        if old is None and r.get("name") == r.get("id") and not _a_number(value):
            # The benchmark gave no figure at all (run_one's stand-in record).
            old = next((f for (i, _n), f in before.items() if i == r.get("id")), None)
        if old is not None and not _a_number(value):
            # A benchmark that measures nothing any more is the worst regression (a later
            # feature broke its setup): say so even though there is nothing to compare.
            lines.append(
                f"WARNING regression: {r['id']} {r['name']}: {old['value']} -> no figure "
                f"({r.get('notes', '')[:120]}); was measured {previous.get('date', 'before')}"
            )
            continue
        lower = lower_is_better(r.get("target"))
        if old is None or not isinstance(value, (int, float)) or lower is None:
            continue
        was = old["value"]
        if was == 0:
            continue
        change = (value - was) / abs(was)
        worse = change if lower else -change
        if worse > REGRESSION:
            lines.append(
                f"WARNING regression: {r['id']} {r['name']}: {was} -> {value} {r.get('unit', '')} "
                f"({worse:+.0%} worse than {previous.get('date', 'the previous run')}, "
                f"commit {previous.get('commit', '?')})"
            )
    return lines


def _a_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value == value


def git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=HERE,
            capture_output=True,
            text=True,
            timeout=10,
        )
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def history_of(result: dict, previous: dict) -> list:
    """The last HISTORY_RUNS runs (this one first): date, commit, machine and each figure."""
    runs = [
        {
            "date": result["date"],
            "commit": result["commit"],
            "machine": result["machine"],
            "quick": result["quick"],
            "figures": [
                {"id": r.get("id"), "name": r.get("name"), "value": r.get("value")}
                for r in result["figures"]
            ],
        }
    ]
    older = previous.get("history")
    if older is None and previous.get("figures"):  # a file written before the history
        older = [
            {
                "date": previous.get("date"),
                "commit": previous.get("commit", "unknown"),
                "machine": previous.get("machine"),
                "quick": previous.get("quick"),
                "figures": [
                    {"id": r.get("id"), "name": r.get("name"), "value": r.get("value")}
                    for r in previous["figures"]
                ],
            }
        ]
    return (runs + list(older or []))[:HISTORY_RUNS]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--only", default="", help="comma-separated ids, e.g. W1,W2")
    parser.add_argument("--quick", action="store_true", help="smaller sizes, for a smoke run")
    parser.add_argument(
        "--merge",
        action="store_true",
        help="keep the figures of benchmarks not run now from the previous latest.json",
    )
    args = parser.parse_args()
    by_upper = {b.upper(): b for b in BENCHMARKS}  # ids are case-insensitive ("m1b", "M1b")
    chosen = [
        by_upper.get(b.strip().upper(), b.strip()) for b in args.only.split(",") if b.strip()
    ] or DEFAULT
    started = time.monotonic()
    records = []
    for bench_id in chosen:
        records += run_one(bench_id, args.quick)
    out = HERE / "results"
    previous = {}
    if (out / "latest.json").exists():
        previous = json.loads((out / "latest.json").read_text())
    warnings = regressions(records, previous)
    if args.merge and previous:
        kept = [r for r in previous.get("figures", []) if r.get("id") not in chosen]
        for r in kept:
            r.setdefault("measured", previous.get("date"))
        records = kept + records
    result = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "commit": git_commit(),
        "machine": machine(),
        "quick": args.quick,
        "seconds": round(time.monotonic() - started),
        "figures": records,
    }
    result["history"] = history_of(result, previous)
    out.mkdir(exist_ok=True)
    (out / "latest.json").write_text(json.dumps(result, indent=2) + "\n")
    print()
    print("| id | figure | value | target | met |\n|---|---|---|---|---|")
    for r in records:
        value = "—" if r["value"] is None else f"{r['value']} {r['unit']}"
        met = {True: "yes", False: "**no**", None: "—"}[r.get("met")]
        print(f"| {r['id']} | {r['name']} | {value} | {r.get('target') or '—'} | {met} |")
    if warnings:
        print()
        for line in warnings:
            print(line)
    print(f"\nwrote {out / 'latest.json'} ({result['seconds']} s, {result['machine']})")


if __name__ == "__main__":
    main()
