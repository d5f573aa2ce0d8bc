"""W2 — API at scale: list endpoints with 100 and with 100,000 VMs (paged).

Target: p95 latency at 100k ≤ 1.5 × p95 at 100, and the same number of queries.
Runs in-process through Django's test client (no network noise) on a scratch SQLite
database, or on DATABASE_URL (give it an empty scratch database).

    .venv/bin/python bench/w2_api_scale.py [--large 100000] [--requests 60]
"""

import argparse
import random
import time
import uuid

from common import percentile, report, setup_django

ENDPOINTS = ["/api/v1/vms/", "/api/v1/hosts/"]


def populate(target_vms: int, hosts: list, start: int) -> None:
    from inventory.models import VirtualDisk, VirtualMachine, VirtualNIC

    batch = 5000
    for offset in range(start, target_vms, batch):
        count = min(batch, target_vms - offset)
        vms = VirtualMachine.objects.bulk_create(
            VirtualMachine(
                uuid=uuid.uuid4(),
                name=f"vm{offset + i:06d}",
                host=hosts[(offset + i) % len(hosts)],
                memory_mib=2048,
                vcpus=2,
                state="running",
            )
            for i in range(count)
        )
        VirtualDisk.objects.bulk_create(
            VirtualDisk(vm=vm, target="vda", device="disk") for vm in vms
        )
        VirtualNIC.objects.bulk_create(
            VirtualNIC(
                vm=vm,
                mac=f"52:54:{(offset + i) >> 16 & 255:02x}:{(offset + i) >> 8 & 255:02x}:{(offset + i) & 255:02x}:00",
            )
            for i, vm in enumerate(vms)
        )
    # Rows loaded in bulk, so recount as the sync does after it records a host's VMs.
    from inventory.counts import hosts_vm_count_refresh

    hosts_vm_count_refresh()


def measure(client, requests: int, total_vms: int) -> dict:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    results = {}
    rng = random.Random(7)
    for endpoint in ENDPOINTS:
        pages = max(1, total_vms // 50) if "vms" in endpoint else 1
        times, queries = [], set()
        for i in range(requests):
            page = rng.randint(1, min(pages, 2000)) if i else 1
            with CaptureQueriesContext(connection) as ctx:
                started = time.perf_counter()
                response = client.get(endpoint, {"page": page})
                times.append((time.perf_counter() - started) * 1000)
            assert response.status_code == 200, response.content[:300]
            queries.add(len(ctx.captured_queries))
        results[endpoint] = {
            "p95": percentile(times[1:], 95),
            "p50": percentile(times[1:], 50),
            "queries": sorted(queries),
        }
    return results


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--small", type=int, default=100)
    parser.add_argument("--large", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=200)
    args = parser.parse_args()
    setup_django()
    from django.contrib.auth import get_user_model
    from rest_framework.test import APIClient

    from inventory.models import Host

    hosts = Host.objects.bulk_create(
        Host(
            name=f"h{i:03d}",
            uri=f"test:///bench-{i}",
            transport="test",
            memory_total_mib=262144,
            memory_free_mib=131072,
        )
        for i in range(100)
    )
    user = get_user_model().objects.create_superuser("bench", "", "bench-pass-123")
    client = APIClient()
    client.force_authenticate(user)

    populate(args.small, hosts, 0)
    small = measure(client, args.requests, args.small)
    started = time.perf_counter()
    populate(args.large, hosts, args.small)
    print(f"loaded {args.large} VMs with disks and NICs in {time.perf_counter() - started:.1f} s")
    large = measure(client, args.requests, args.large)
    for endpoint in ENDPOINTS:
        s, big = small[endpoint], large[endpoint]
        ratio = big["p95"] / s["p95"]
        report(
            f"W2 {endpoint} p95 ratio {args.large // 1000}k/{args.small}",
            round(ratio, 2),
            "×",
            "≤ 1.5",
            ratio <= 1.5,
            f"p95 {s['p95']:.1f} ms at {args.small}, {big['p95']:.1f} ms at {args.large}",
        )
        # Large tables may answer from a cached count (one query fewer): compare the
        # worst case, which must not grow with the table.
        report(
            f"W2 {endpoint} queries per request (most)",
            big["queries"][-1],
            "queries",
            "equal at both sizes",
            big["queries"][-1] <= s["queries"][-1],
            f"{s['queries']} at {args.small}, {big['queries']} at {args.large}",
        )


if __name__ == "__main__":
    main()
