"""W1 — live-stream latency and fan-out: 200 signed-in websocket subscribers on one plan
(the plan page's stream) while a worker publishes 10 events/s; with the in-process
channel layer and with channels_redis; baseline: a bare `websockets` broadcast server on
the same machine.

Target: p95 publish-to-receive ≤ 100 ms; Ferry's delivered events/s reported as a ratio
of the baseline's.

    .venv/bin/python bench/w1_live_stream.py [--clients 200] [--rate 10] [--seconds 20]
"""

import argparse
import asyncio
import json
import logging
import os
import secrets
import socket
import subprocess
import sys
import time

from common import REPO, percentile, report, setup_django


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def subscribe(url, origin, stop_at, latencies, counts, index, ready, headers=None):
    import websockets

    try:
        async with websockets.connect(
            url, origin=origin, max_size=2**20, open_timeout=30, additional_headers=headers
        ) as ws:
            ready.append(index)
            while time.time() < stop_at:
                try:
                    raw = await asyncio.wait_for(ws.recv(), timeout=max(0.1, stop_at - time.time()))
                except TimeoutError:
                    break
                now = time.time()
                msg = json.loads(raw)
                payload = msg.get("payload") or {}
                if "sent" in payload:
                    latencies.append((now - payload["sent"]) * 1000)
                    counts[index] += 1
    except Exception as exc:  # a refused client is a result, not a crash
        print(f"client {index}: {exc}", file=sys.stderr)


async def run_clients(url, origin, clients, seconds, start_publishing, headers=None):
    latencies, counts, ready = [], [0] * clients, []
    stop_at = time.time() + seconds + 30
    tasks = [
        asyncio.create_task(subscribe(url, origin, stop_at, latencies, counts, i, ready, headers))
        for i in range(clients)
    ]
    deadline = time.time() + 60
    while len(ready) < clients and time.time() < deadline:
        await asyncio.sleep(0.2)
    connected = len(ready)
    await asyncio.sleep(1)
    started = time.time()
    await start_publishing()
    # Give the stream its duration plus a little for the last events to arrive.
    await asyncio.sleep(seconds + 2)
    elapsed = time.time() - started
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return latencies, sum(counts), elapsed, connected


async def baseline(clients, rate, seconds):
    import websockets

    port = free_port()
    conns = set()

    async def handler(ws):
        conns.add(ws)
        try:
            await ws.wait_closed()
        finally:
            conns.discard(ws)

    async with websockets.serve(handler, "127.0.0.1", port, max_size=2**20):

        async def start():
            async def pump():
                for n in range(int(rate * seconds)):
                    message = json.dumps(
                        {"type": "event", "seq": n + 1, "payload": {"n": n, "sent": time.time()}}
                    )
                    websockets.broadcast(conns, message)
                    await asyncio.sleep(1 / rate)

            asyncio.create_task(pump())

        return await run_clients(f"ws://127.0.0.1:{port}/", None, clients, seconds, start)


def start_daphne(port, env):
    log = open(f"/tmp/ferry-w1-{port}.log", "wb")  # noqa: SIM115
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "daphne",
            "-b",
            "127.0.0.1",
            "-p",
            str(port),
            "dashboard.asgi:application",
        ],
        cwd=REPO,
        env=env,
        stdout=log,
        stderr=log,
    )


def wait_port(port, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"server on {port} did not start")


def ferry_case(layer, clients, rate, seconds, run_id, plan_id, cookie):
    from django.conf import settings

    port = free_port()
    env = dict(os.environ)
    env["PYTHONPATH"] = f"{REPO / 'bench'}:{env.get('PYTHONPATH', '')}"
    if layer == "redis":
        env["REDIS_URL"] = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
        env["FERRY_EMBEDDED_WORKERS"] = "0"
    else:
        env.pop("REDIS_URL", None)
        env["FERRY_EMBEDDED_WORKERS"] = "1"
    server = start_daphne(port, env)
    worker = None
    try:
        wait_port(port)

        async def start():
            import w1_tasks
            from asgiref.sync import sync_to_async

            if layer == "redis":
                # A separate worker process publishes through Redis, as in production.
                nonlocal worker
                worker = subprocess.Popen(
                    [
                        sys.executable,
                        "-c",
                        "import os,sys,django;sys.path.insert(0,'bench');"
                        "os.environ.setdefault('DJANGO_SETTINGS_MODULE','dashboard.settings');django.setup();"
                        f"import w1_tasks;w1_tasks.publish.call({run_id},{rate},{seconds})",
                    ],
                    cwd=REPO,
                    env=env,
                )
            else:
                await sync_to_async(w1_tasks.publish.enqueue)(run_id, rate, seconds)

        # Signed-in viewers of the plan page: their stream carries every event whole (a
        # status link's carries a redacted copy, without the send time this measures by).
        url = f"ws://127.0.0.1:{port}/ws/plans/{plan_id}/"
        headers = {"Cookie": f"{settings.SESSION_COOKIE_NAME}={cookie}"}
        return asyncio.run(
            run_clients(url, f"http://127.0.0.1:{port}", clients, seconds, start, headers)
        )
    finally:
        if worker:
            worker.wait(timeout=60)
        server.terminate()
        server.wait(timeout=15)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--rate", type=float, default=10)
    parser.add_argument("--seconds", type=float, default=20)
    args = parser.parse_args()
    # The baseline server logs every connection at INFO: 400 lines of noise in the table.
    logging.getLogger("websockets").setLevel(logging.WARNING)
    sys.path.insert(0, str(REPO / "bench"))
    setup_django()
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.contrib.sessions.backends.db import SessionStore

    from migrations_app.models import MigrationPlan, PlanRun

    user = get_user_model().objects.create_superuser("bench", "", "bench-pass-123")
    session = SessionStore()
    session["_auth_user_id"] = str(user.pk)
    session["_auth_user_backend"] = settings.AUTHENTICATION_BACKENDS[0]
    session["_auth_user_hash"] = user.get_session_auth_hash()
    session.create()
    expected = args.rate * args.seconds * args.clients
    base_lat, base_count, base_elapsed, base_conn = asyncio.run(
        baseline(args.clients, args.rate, args.seconds)
    )
    base_rate = base_count / base_elapsed
    print(
        f"baseline: {base_conn} clients, {base_count}/{expected:.0f} events, p95 {percentile(base_lat, 95):.1f} ms"
    )
    for layer in ("inprocess", "redis"):
        # A plan number no earlier run used: a server killed at the end of a run leaves its
        # memberships in Redis's group (until they expire a day later), and a scratch
        # database would number every run's plan 1, so each run would also feed the dead.
        plan = MigrationPlan.objects.create(
            pk=secrets.randbelow(2**31 - 2**20) + 2**20,
            name=f"w1 {layer}",
            author=user,
            status="running",
        )
        run = PlanRun.objects.create(plan=plan)
        lat, count, elapsed, connected = ferry_case(
            layer, args.clients, args.rate, args.seconds, run.pk, plan.pk, session.session_key
        )
        p95 = percentile(lat, 95)
        report(
            f"W1 p95 publish-to-receive ({layer} layer)",
            round(p95, 1),
            "ms",
            "≤ 100 ms",
            p95 <= 100,
            f"{connected}/{args.clients} subscribers, {count}/{expected:.0f} events delivered, p50 {percentile(lat, 50):.1f} ms",
        )
        ratio = (count / elapsed) / base_rate if base_rate else float("nan")
        report(
            f"W1 delivered events/s vs bare websockets ({layer} layer)",
            round(ratio, 3),
            "ratio",
            "report",
            None,
            f"Ferry {count / elapsed:.0f}/s, baseline {base_rate:.0f}/s (p95 {percentile(base_lat, 95):.1f} ms)",
        )


if __name__ == "__main__":
    main()
