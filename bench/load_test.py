"""L1 — load on one machine: 200 page/API viewers, 50 websocket subscribers and 10
concurrent rehearsal migrations against a real server started the way production runs it
(`manage.py serve`: Daphne processes sharing the port, plus worker processes when REDIS_URL
is set; else one web process with embedded worker threads) for a bounded time.

A viewer is a person with Ferry open: one page or API read, then a pause of 2-6 s (mean
4 s) before the next, so 200 viewers ask ~50 requests/s. Each of the 10 plans runs one
rehearsal migration at a time (real-time simulation, ~25 s per item) with enough items to
last the whole run; the number of migrations actually running is sampled every 5 s.

Reports 5xx responses (target 0), p95 API latency in the steady state after the first 15 s
(target < 300 ms; with the ramp-up too, for reference), stream stalls (no
frame, not even a heartbeat, for 20 s; target 0), events missing at subscribers, and the
migrations running concurrently (median of the samples).

    .venv/bin/python bench/load_test.py [--seconds 300] [--viewers 200] [--subscribers 50]
        [--plans 10] [--workers 10] [--web-processes N] [--think 2-6]

On a scratch SQLite database, or with DATABASE_URL on PostgreSQL in a scratch database
created on that server for the run and dropped after. Only loopback addresses are used.
"""

import argparse
import asyncio
import json
import logging
import os
import random
import socket
import subprocess
import sys
import threading
import time
import uuid
from urllib.parse import urlsplit

from common import REPO, machine, median, percentile, report, setup_django

STALL_SECONDS = 20.0  # heartbeats come every 15 s: 20 s of silence is a stall
VIEWER_RAMP_SECONDS = 10  # viewers arrive over the first seconds, not in one instant
SUBSCRIBER_RAMP_SECONDS = 5
RAMP_UP_SECONDS = 15  # the steady-state figures leave out requests sent before this
ITEM_SECONDS = 20  # 2,048 MiB at 100 MiB/s in real time, plus verify and bookkeeping


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def seed(plans: int, items: int):
    """Users, approved rehearsal plans (one migration at a time each), a session cookie and a
    token."""
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group
    from django.contrib.sessions.backends.db import SessionStore
    from knox.models import AuthToken

    from inventory.models import Host, VirtualMachine
    from migrations_app.models import MigrationPlan, PlanItem
    from migrations_app.workflow.services import plan_approve, plan_submit
    from tests.factories import plan_validate_stub

    User = get_user_model()

    def user(name, role):
        account = User.objects.create_user(name, "", f"pw-{name}-{uuid.uuid4().hex}")
        account.groups.add(Group.objects.get_or_create(name=role)[0])
        return account

    tag = uuid.uuid4().hex[:6]
    planner, approver = user(f"l-plan-{tag}", "planner"), user(f"l-appr-{tag}", "approver")
    operator, viewer = user(f"l-op-{tag}", "operator"), user(f"l-view-{tag}", "viewer")
    hosts = [
        Host.objects.create(name=f"l-{tag}-{i}", uri=f"test:///l-{tag}-{i}", transport="test")
        for i in range(8)
    ]
    plan_ids = []
    for p in range(plans):
        plan = MigrationPlan.objects.create(
            name=f"load-{tag}-{p}",
            change_ticket="CHG-LOAD",
            author=planner,
            author_name=planner.username,
            policy={
                "require_tls": False,
                "verify_seconds": 2,
                "max_concurrent": 1,
                "bandwidth_mib_s": 100,
            },
        )
        for position in range(items):
            src, dst = random.sample(hosts, 2)
            vm = VirtualMachine.objects.create(
                uuid=uuid.uuid4(), name=f"l-{tag}-vm-{p}-{position}", host=src, memory_mib=2048
            )
            PlanItem.objects.create(
                plan=plan, vm=vm, source_host=src, destination_host=dst, position=position
            )
        plan_validate_stub(plan)
        plan_submit(plan=plan, actor=planner)
        plan_approve(plan=plan, actor=approver)
        plan_ids.append(plan.pk)
    session = SessionStore()
    session["_auth_user_id"] = str(viewer.pk)
    session["_auth_user_backend"] = settings.AUTHENTICATION_BACKENDS[0]
    session["_auth_user_hash"] = viewer.get_session_auth_hash()
    session.create()
    operator_token = AuthToken.objects.create(user=operator)[1]
    return plan_ids, session.session_key, operator_token


def start_server(port: int, args, log_path: str) -> subprocess.Popen:
    """`manage.py serve`, as production runs Ferry, in real time (rehearsal speed 1)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = f"{REPO}:{env.get('PYTHONPATH', '')}"
    env["FERRY_REHEARSAL_SPEED"] = "1"
    log = open(log_path, "ab")  # noqa: SIM115 - kept open for the child's lifetime
    proc = subprocess.Popen(
        [
            sys.executable,
            "manage.py",
            "serve",
            "--port",
            str(port),
            "--workers",
            str(args.workers),
            "--web-processes",
            str(args.web_processes),
        ],
        cwd=REPO,
        env=env,
        stdout=log,
        stderr=log,
    )
    deadline = time.time() + 40
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}; see {log_path}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return proc
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"server did not start; see {log_path}")


def scratch_postgres() -> tuple[str, str] | None:
    """With DATABASE_URL on PostgreSQL, a fresh database on that server for this run (so no
    task or plan of an earlier run competes for the workers): the server's URL and the
    database's name, to drop it after."""
    url = os.environ.get("DATABASE_URL", "")
    if not url.startswith(("postgres://", "postgresql://")):
        return None
    import psycopg

    name = f"ferry_load_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    os.environ["DATABASE_URL"] = urlsplit(url)._replace(path=f"/{name}").geturl()
    return url, name


def drop_scratch_postgres(url: str, name: str) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def sample_running(plan_ids, stop: threading.Event, samples: list[int]):
    """Every 5 s, how many migrations of the load plans are running."""
    from django.db import connection

    from migrations_app.models import ItemAttempt

    while not stop.wait(5):
        samples.append(
            ItemAttempt.objects.filter(run__plan_id__in=plan_ids, status="running").count()
        )
    connection.close()


class Stats:
    def __init__(self):
        # One row per answered request: (sent at, latency ms, endpoint kind, API or page).
        self.requests: list[tuple[float, float, str, bool]] = []
        self.codes: dict[int, int] = {}
        self.errors = 0
        self.stalls = 0
        self.missing = 0  # events below the highest seen that never arrived
        self.out_of_order = 0
        self.frames = 0
        self.ws_connected = 0
        self.ws_failed = 0  # never connected during the run
        self.ws_reconnects = 0


async def viewer(base, cookie, plan_ids, stop_at, think, stats: Stats):
    import httpx

    async with httpx.AsyncClient(
        base_url=base, cookies={"sessionid": cookie}, timeout=30
    ) as client:
        await asyncio.sleep(random.uniform(0, VIEWER_RAMP_SECONDS))  # people arrive
        while time.time() < stop_at:
            plan = random.choice(plan_ids)
            path = random.choice(
                [
                    "/api/v1/plans/",
                    f"/api/v1/plans/{plan}/",
                    f"/api/v1/runs/?plan={plan}",
                    f"/api/v1/live/plans/{plan}/",
                    "/api/v1/hosts/",
                    "/api/v1/vms/?page_size=50",
                    "/",
                    f"/plans/{plan}/",
                    "/plans/",
                ]
            )
            started, started_at = time.perf_counter(), time.time()
            try:
                response = await client.get(path)
            except httpx.HTTPError:
                stats.errors += 1
                continue
            elapsed = (time.perf_counter() - started) * 1000
            stats.codes[response.status_code] = stats.codes.get(response.status_code, 0) + 1
            kind = path.split("?")[0].rstrip("/").split("/")
            kind = "/".join("N" if part.isdigit() else part for part in kind) or "/"
            stats.requests.append((started_at, elapsed, kind, path.startswith("/api/")))
            await asyncio.sleep(random.uniform(*think))


async def subscriber(ws_base, origin, cookie, plan_id, stop_at, stats: Stats):
    """One browser tab on a plan page: connects (the tabs of a crowd arrive over a few
    seconds), counts silences and numbered events, and reconnects like static/js/live.js
    after a refusal or a drop (each one counted)."""
    import websockets

    covered: dict[int, int] = {}  # run -> highest seq a snapshot covered (0: a new run)
    seen: dict[int, set[int]] = {}
    connected_once = False
    await asyncio.sleep(random.uniform(0, SUBSCRIBER_RAMP_SECONDS))
    while time.time() < stop_at - 1:
        try:
            async with websockets.connect(
                f"{ws_base}/ws/plans/{plan_id}/",
                origin=origin,
                additional_headers={"Cookie": f"sessionid={cookie}"},
                open_timeout=30,
                max_size=2**22,
            ) as ws:
                if not connected_once:
                    stats.ws_connected += 1
                    connected_once = True
                while time.time() < stop_at:
                    try:
                        raw = await asyncio.wait_for(
                            ws.recv(),
                            timeout=min(STALL_SECONDS, max(0.1, stop_at - time.time())),
                        )
                    except TimeoutError:
                        if time.time() < stop_at - 0.5:
                            stats.stalls += 1
                        continue
                    stats.frames += 1
                    message = json.loads(raw)
                    if message.get("type") == "snapshot":
                        run = (message.get("run") or {}).get("id")
                        if run is not None:
                            covered[run] = max(covered.get(run, 0), message.get("last_seq", 0))
                    elif message.get("type") == "event":
                        run, seq = message.get("run"), message.get("seq")
                        if run is not None and seq is not None:
                            got = seen.setdefault(run, set())
                            if got and seq < max(got):
                                stats.out_of_order += 1
                            got.add(seq)
        except Exception as exc:  # noqa: BLE001 - a refusal or a drop is a result
            stats.ws_reconnects += 1
            print(f"client subscriber {plan_id}: {exc}", file=sys.stderr)
            await asyncio.sleep(random.uniform(1, 3))
    if not connected_once:
        stats.ws_failed += 1
    for run, got in seen.items():
        expected = set(range(covered.get(run, 0) + 1, max(got) + 1))
        stats.missing += len(expected - got)


async def start_plans(base, token, plan_ids):
    import httpx

    async with httpx.AsyncClient(
        base_url=base, headers={"Authorization": f"Token {token}"}, timeout=30
    ) as client:
        answers = await asyncio.gather(
            *[client.post(f"/api/v1/plans/{pk}/start/", json={}) for pk in plan_ids]
        )
    for answer in answers:
        if answer.status_code >= 300:
            print(f"start refused: {answer.status_code} {answer.text[:300]}")
    return [a.status_code for a in answers]


async def load(args, base, cookie, token, plan_ids) -> Stats:
    stats = Stats()
    stop_at = time.time() + args.seconds
    ws_base = base.replace("http://", "ws://")
    subscribers = [
        asyncio.create_task(
            subscriber(ws_base, base, cookie, plan_ids[i % len(plan_ids)], stop_at, stats)
        )
        for i in range(args.subscribers)
    ]
    await asyncio.sleep(SUBSCRIBER_RAMP_SECONDS)
    started = await start_plans(base, token, plan_ids)
    print(f"plans started: {started}")
    viewers = [
        asyncio.create_task(viewer(base, cookie, plan_ids, stop_at, args.think, stats))
        for _ in range(args.viewers)
    ]
    await asyncio.gather(*viewers, *subscribers, return_exceptions=True)
    return stats


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=300)
    parser.add_argument("--viewers", type=int, default=200)
    parser.add_argument("--subscribers", type=int, default=50)
    parser.add_argument("--plans", type=int, default=10)
    parser.add_argument("--workers", type=int, default=10, help="background workers")
    parser.add_argument(
        "--web-processes",
        type=int,
        default=0,
        help="Daphne processes (default: one per core with REDIS_URL, else 1)",
    )
    parser.add_argument("--think", default="2-6", help="a viewer's pause between reads, s")
    args = parser.parse_args()
    low, _, high = args.think.partition("-")
    args.think = (float(low), float(high or low))
    if not args.web_processes:
        args.web_processes = (os.cpu_count() or 1) if os.environ.get("REDIS_URL") else 1
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request otherwise
    sys.path.insert(0, str(REPO))
    scratch = scratch_postgres()
    try:
        run(args)
    finally:
        if scratch:
            from django.db import connections

            connections.close_all()
            drop_scratch_postgres(*scratch)


def run(args):
    setup_django()
    from django.db import connection

    from migrations_app.models import MigrationPlan

    items = int(args.seconds // ITEM_SECONDS) + 3  # enough to keep every plan busy
    plan_ids, cookie, token = seed(args.plans, items)
    settings_dict = connection.settings_dict
    if connection.vendor == "sqlite":
        os.environ["DATABASE_URL"] = f"sqlite:///{settings_dict['NAME']}"
    connection.close()
    port = free_port()
    log_path = f"/tmp/ferry-load-{port}.log"
    server = start_server(port, args, log_path)
    base = f"http://127.0.0.1:{port}"
    running: list[int] = []
    stop = threading.Event()
    sampler = threading.Thread(target=sample_running, args=(plan_ids, stop, running))
    try:
        began = time.time()
        sampler.start()
        stats = asyncio.run(load(args, base, cookie, token, plan_ids))
        wall = time.time() - began
    finally:
        stop.set()
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
        sampler.join()
    states = list(MigrationPlan.objects.filter(pk__in=plan_ids).values_list("status", flat=True))
    requests = sum(stats.codes.values())
    server_errors = sum(n for code, n in stats.codes.items() if code >= 500)
    first = min((sent for sent, *_ in stats.requests), default=0.0)
    api = [(sent, ms) for sent, ms, _kind, is_api in stats.requests if is_api]
    page_ms = [ms for _sent, ms, _kind, is_api in stats.requests if not is_api]
    p95_all = percentile([ms for _sent, ms in api], 95)
    # Steady state: requests sent after the ramp-up (viewers arrive over the first 10 s).
    p95 = percentile([ms for sent, ms in api if sent >= first + RAMP_UP_SECONDS], 95)
    windows: dict[int, list[float]] = {}
    by_kind: dict[str, list[float]] = {}
    for sent, ms, kind, _is_api in stats.requests:
        windows.setdefault(int((sent - first) // 15), []).append(ms)
        by_kind.setdefault(kind, []).append(ms)
    print(
        "  p95 per 15 s: "
        + ", ".join(f"{percentile(v, 95):.0f}" for _k, v in sorted(windows.items()))
        + " ms"
    )
    for kind, values in sorted(by_kind.items()):
        print(
            f"  {kind:28s} {len(values):5d} requests, median {median(values):6.0f} ms, "
            f"p95 {percentile(values, 95):6.0f} ms"
        )
    print(f"machine: {machine()}; database: {connection.vendor}; log: {log_path}")
    print(
        f"{requests} requests in {wall:.0f} s ({requests / wall:.0f}/s), codes {stats.codes}, "
        f"client errors {stats.errors}; websockets {stats.ws_connected} connected, "
        f"{stats.ws_failed} never connected, {stats.ws_reconnects} reconnects, "
        f"{stats.frames} frames; plans: {states}"
    )
    notes = (
        f"{args.viewers} viewers ({args.think[0]:g}-{args.think[1]:g} s pauses), "
        f"{args.subscribers} subscribers, {args.plans} plans, {args.seconds:.0f} s, "
        f"{requests / wall:.0f} requests/s, {args.web_processes} web process(es), "
        f"{args.workers} workers, {connection.vendor}"
        + (" + Redis" if os.environ.get("REDIS_URL") else "")
    )
    report("L1 5xx responses", server_errors, "", "0", server_errors == 0, notes)
    report(
        "L1 p95 API latency",
        round(p95, 1),
        "ms",
        "< 300",
        p95 < 300,
        f"after the first {RAMP_UP_SECONDS} s (viewers arriving); {notes}",
    )
    report(
        "L1 p95 API latency including the ramp-up",
        round(p95_all, 1),
        "ms",
        "",
        None,
        "every API request of the run",
    )
    report("L1 p95 page latency", round(percentile(page_ms, 95), 1), "ms", "", None, notes)
    interruptions = stats.stalls + stats.ws_reconnects + stats.ws_failed
    report(
        "L1 stream stalls",
        interruptions,
        "",
        "0",
        interruptions == 0,
        f"{stats.stalls} silences of {STALL_SECONDS:.0f} s, {stats.ws_reconnects} drops or "
        f"refusals (then reconnected), {stats.ws_failed} never connected; "
        f"{args.subscribers} subscribers arriving over {SUBSCRIBER_RAMP_SECONDS} s",
    )
    report(
        "L1 events missing",
        stats.missing,
        "",
        "0",
        stats.missing == 0,
        f"numbered events a subscriber never received (below the highest it saw); "
        f"{stats.out_of_order} arrived out of order (the page fills a gap over REST, by number)",
    )
    report(
        "L1 migrations running at once",
        median(running) if running else 0,
        "",
        "10",
        None,
        f"median of {len(running)} samples every 5 s (min {min(running, default=0)}, "
        f"max {max(running, default=0)}); plans: {states}",
    )


if __name__ == "__main__":
    main()
