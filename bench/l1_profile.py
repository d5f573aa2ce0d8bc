"""L1 profile: what one request of each load-test endpoint costs in CPU, and where it goes.

The load test (load_test.py) measures latency through Daphne on a shared machine, where
queueing for the cores dominates. This runs the same endpoints in-process (Django's test
client, the load test's seed, one viewer session) and reports CPU milliseconds per request
per endpoint, then writes a cProfile of all of them to bench/results/l1_profile.txt. CPU per
request gives the sizing rule: one core serves about 1000 / (CPU ms per request) requests/s.

    .venv/bin/python bench/l1_profile.py [--requests 40]   # scratch SQLite, or DATABASE_URL
"""

import argparse
import cProfile
import io
import pstats
import time

from common import REPO, percentile, report, setup_django


def endpoints(plan: int) -> list[str]:
    # The load test's viewer mix (load_test.viewer), one plan.
    return [
        "/api/v1/plans/",
        f"/api/v1/plans/{plan}/",
        f"/api/v1/runs/?plan={plan}",
        f"/api/v1/live/plans/{plan}/",
        "/api/v1/hosts/",
        "/api/v1/vms/?page_size=50",
        f"/plans/{plan}/",
        "/plans/",
    ]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=40)
    args = parser.parse_args()
    setup_django()
    from django.conf import settings
    from django.test import Client
    from load_test import seed

    plan_ids, cookie, _token = seed(10, 30)
    client = Client()
    client.cookies[settings.SESSION_COOKIE_NAME] = cookie
    profile = cProfile.Profile()
    rows = []
    for path in endpoints(plan_ids[0]):
        assert client.get(path).status_code == 200, path  # warm: first-use imports
        cpu, wall = [], []
        for _ in range(args.requests):  # the figures: profiler off
            c0, w0 = time.process_time(), time.perf_counter()
            response = client.get(path)
            cpu.append((time.process_time() - c0) * 1000)
            wall.append((time.perf_counter() - w0) * 1000)
            assert response.status_code == 200, (path, response.status_code)
        profile.enable()
        for _ in range(args.requests):  # the profile: same requests, profiler on
            client.get(path)
        profile.disable()
        rows.append((path, percentile(cpu, 50), percentile(cpu, 95), percentile(wall, 50)))
    out = io.StringIO()
    out.write("CPU ms per request (in-process, profiler off; median / p95) and wall median\n")
    for path, c50, c95, w50 in rows:
        out.write(f"  {path:32s} cpu {c50:6.1f} / {c95:6.1f} ms   wall {w50:6.1f} ms\n")
    stats = pstats.Stats(profile, stream=out)
    stats.sort_stats("cumulative").print_stats(60)
    stats.sort_stats("tottime").print_stats(40)
    target = REPO / "bench" / "results" / "l1_profile.txt"
    target.write_text(out.getvalue())
    mix = sum(r[1] for r in rows) / len(rows)
    for path, c50, c95, _w50 in rows:
        print(f"{path:32s} cpu median {c50:6.1f} ms, p95 {c95:6.1f} ms")
    report(
        "L1 CPU per request, load-test mix (in-process, mean of endpoint medians)",
        round(mix, 1),
        "ms",
        "report",
        None,
        f"one core ≈ {1000 / mix:.0f} requests/s of this mix (web process only); "
        f"profile in {target.relative_to(REPO)}",
    )


if __name__ == "__main__":
    main()
