"""L1 — load on one machine: 200 page/API viewers, 50 websocket subscribers and 10
concurrent rehearsal migrations against a real server (Daphne, plus worker processes when
REDIS_URL is set, else the embedded workers) for a bounded time.

Reports 5xx responses (target 0), p95 API latency (target < 300 ms), stream stalls (no
frame, not even a heartbeat, for 20 s; target 0) and event gaps seen by subscribers.

    .venv/bin/python bench/load_test.py [--seconds 300] [--viewers 200] [--subscribers 50]
        [--plans 10] [--workers 2]

On a scratch SQLite database unless DATABASE_URL is set (then on that database: point it
at a throwaway one). Only loopback addresses are used.
"""

import argparse
import asyncio
import json
import os
import random
import socket
import subprocess
import sys
import time
import uuid

from common import REPO, machine, percentile, report, setup_django

STALL_SECONDS = 20.0  # heartbeats come every 15 s: 20 s of silence is a stall


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def seed(plans: int):
    """Users, 10 approved rehearsal plans of 3 items each, a session cookie and a token."""
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group
    from django.contrib.sessions.backends.db import SessionStore
    from rest_framework.authtoken.models import Token

    from inventory.models import Host, VirtualMachine
    from migrations_app.models import MigrationPlan, PlanItem
    from migrations_app.services.workflow import plan_approve, plan_submit
    from tests.workflow.factories import plan_validate_stub

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
            policy={"require_tls": False, "verify_seconds": 2},
        )
        for position in range(3):
            src, dst = random.sample(hosts, 2)
            vm = VirtualMachine.objects.create(
                uuid=uuid.uuid4(), name=f"l-{tag}-vm-{p}-{position}", host=src, memory_mib=4096
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
    operator_token = Token.objects.create(user=operator).key
    return plan_ids, session.session_key, operator_token


def start_server(port: int, workers: int, log_path: str) -> list[subprocess.Popen]:
    env = dict(os.environ)
    env["PYTHONPATH"] = f"{REPO}:{env.get('PYTHONPATH', '')}"
    env.setdefault("FERRY_REHEARSAL_SPEED", "5")
    log = open(log_path, "ab")  # noqa: SIM115 - kept open for the children's lifetime
    cmd = [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port)]
    if env.get("REDIS_URL"):
        env["FERRY_EMBEDDED_WORKERS"] = "0"
    else:
        env["FERRY_EMBEDDED_WORKERS"] = str(workers)
    procs = [
        subprocess.Popen(
            [*cmd, "dashboard.asgi:application"], cwd=REPO, env=env, stdout=log, stderr=log
        )
    ]
    if env.get("REDIS_URL"):
        for _ in range(workers):
            procs.append(
                subprocess.Popen(
                    [sys.executable, "manage.py", "ferry_worker"],
                    cwd=REPO,
                    env=env,
                    stdout=log,
                    stderr=log,
                )
            )
    deadline = time.time() + 40
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return procs
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"server did not start; see {log_path}")


class Stats:
    def __init__(self):
        self.api_ms: list[float] = []
        self.page_ms: list[float] = []
        self.codes: dict[int, int] = {}
        self.errors = 0
        self.stalls = 0
        self.gaps = 0
        self.frames = 0
        self.ws_connected = 0
        self.ws_failed = 0


async def viewer(base, cookie, plan_ids, stop_at, stats: Stats):
    import httpx

    async with httpx.AsyncClient(
        base_url=base, cookies={"sessionid": cookie}, timeout=30
    ) as client:
        await asyncio.sleep(random.random() * 2)
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
            started = time.perf_counter()
            try:
                response = await client.get(path)
            except httpx.HTTPError:
                stats.errors += 1
                continue
            elapsed = (time.perf_counter() - started) * 1000
            stats.codes[response.status_code] = stats.codes.get(response.status_code, 0) + 1
            (stats.api_ms if path.startswith("/api/") else stats.page_ms).append(elapsed)
            await asyncio.sleep(0.5 + random.random())


async def subscriber(ws_base, origin, cookie, plan_id, stop_at, stats: Stats):
    import websockets

    try:
        async with websockets.connect(
            f"{ws_base}/ws/plans/{plan_id}/",
            origin=origin,
            additional_headers={"Cookie": f"sessionid={cookie}"},
            open_timeout=30,
            max_size=2**22,
        ) as ws:
            stats.ws_connected += 1
            last_seq: dict[int, int] = {}
            while time.time() < stop_at:
                try:
                    raw = await asyncio.wait_for(
                        ws.recv(), timeout=min(STALL_SECONDS, max(0.1, stop_at - time.time()))
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
                        last_seq[run] = message.get("last_seq", 0)
                elif message.get("type") == "event":
                    run, seq = message.get("run"), message.get("seq")
                    if run is not None and seq is not None:
                        previous = last_seq.get(run)
                        if previous is not None and seq > previous + 1:
                            stats.gaps += 1
                        last_seq[run] = max(seq, previous or 0)
    except Exception as exc:  # noqa: BLE001 - a refused client is a result
        stats.ws_failed += 1
        print(f"client subscriber {plan_id}: {exc}", file=sys.stderr)


async def start_plans(base, token, plan_ids):
    import httpx

    async with httpx.AsyncClient(
        base_url=base, headers={"Authorization": f"Token {token}"}, timeout=30
    ) as client:
        answers = await asyncio.gather(
            *[client.post(f"/api/v1/plans/{pk}/start/", json={}) for pk in plan_ids]
        )
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
    await asyncio.sleep(1)
    started = await start_plans(base, token, plan_ids)
    print(f"plans started: {started}")
    viewers = [
        asyncio.create_task(viewer(base, cookie, plan_ids, stop_at, stats))
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
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    sys.path.insert(0, str(REPO))
    setup_django()
    from django.db import connection

    from migrations_app.models import MigrationPlan

    plan_ids, cookie, token = seed(args.plans)
    settings_dict = connection.settings_dict
    if connection.vendor == "sqlite":
        os.environ["DATABASE_URL"] = f"sqlite:///{settings_dict['NAME']}"
    connection.close()
    port = free_port()
    log_path = f"/tmp/ferry-load-{port}.log"
    procs = start_server(port, args.workers, log_path)
    base = f"http://127.0.0.1:{port}"
    try:
        began = time.time()
        stats = asyncio.run(load(args, base, cookie, token, plan_ids))
        wall = time.time() - began
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
    states = list(MigrationPlan.objects.filter(pk__in=plan_ids).values_list("status", flat=True))
    requests = sum(stats.codes.values())
    server_errors = sum(n for code, n in stats.codes.items() if code >= 500)
    p95 = percentile(stats.api_ms, 95)
    print(f"machine: {machine()}; database: {connection.vendor}; log: {log_path}")
    print(
        f"{requests} requests in {wall:.0f} s ({requests / wall:.0f}/s), codes {stats.codes}, "
        f"client errors {stats.errors}; websockets {stats.ws_connected} connected, "
        f"{stats.ws_failed} failed, {stats.frames} frames; plans: {states}"
    )
    notes = f"{args.viewers} viewers, {args.subscribers} subscribers, {args.plans} plans, {args.seconds:.0f} s"
    report("L1 5xx responses", server_errors, "", "0", server_errors == 0, notes)
    report("L1 p95 API latency", round(p95, 1), "ms", "< 300", p95 < 300, notes)
    report("L1 p95 page latency", round(percentile(stats.page_ms, 95), 1), "ms", "", None, notes)
    report(
        "L1 stream stalls",
        stats.stalls,
        "",
        "0",
        stats.stalls == 0,
        f"{STALL_SECONDS:.0f} s silence",
    )
    report("L1 event gaps", stats.gaps, "", "0", stats.gaps == 0, "seq jumps seen by subscribers")
    finished = sum(s in ("completed", "partially_completed", "failed") for s in states)
    report("L1 plans finished", finished, f"of {len(states)}", "", None, notes)


if __name__ == "__main__":
    main()
