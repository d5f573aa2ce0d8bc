"""PL1: validate and place a plan of 10,000 VMs over 1,000 hosts.

Builds a synthetic inventory with bulk_create (10 sites x 100 hosts, each site with its
own shared pool and network, three CPU generations, 10 VMs per host, anti-affinity
pairs), puts every VM into one plan, then times `plan_place` followed by `plan_validate`
(which stores every check result: 220,000 verdicts as one ItemCheckResults row per item,
read back through the CheckResult view). Target: under 10 s on a 2-core machine.

    .venv/bin/python bench/pl1_planning.py          # throwaway SQLite in a temp dir
    DATABASE_URL=postgres://... .venv/bin/python bench/pl1_planning.py   # a scratch DB!

Prints one human line and, last, a JSON record; also writes bench/results/pl1.json.
"""

import json
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
if "DATABASE_URL" not in os.environ and "FERRY_DATA_DIR" not in os.environ:
    os.environ["FERRY_DATA_DIR"] = tempfile.mkdtemp(prefix="ferry-pl1-")
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dashboard.settings")

import django  # noqa: E402

django.setup()

from django.core.management import call_command  # noqa: E402

SITES, HOSTS_PER_SITE, VMS_PER_HOST = 10, 100, 10
CPU_MODELS = ("Skylake-Server", "Cascadelake-Server", "EPYC-Milan")
GIB = 1024**3
TARGET_S = 10.0


def build_inventory():
    from inventory.models import (
        Host,
        Network,
        StoragePool,
        VirtualDisk,
        VirtualMachine,
        VirtualNIC,
    )

    hosts = []
    for site in range(SITES):
        model = CPU_MODELS[site % len(CPU_MODELS)]
        for n in range(HOSTS_PER_SITE):
            name = f"s{site:02d}-h{n:03d}"
            hosts.append(
                Host(
                    name=name,
                    uri=f"qemu+tls://{name}.example/system",
                    transport="tls",
                    group=f"site-{site:02d}",
                    hypervisor_type="QEMU",
                    hypervisor_version=8_002_000,
                    libvirt_version=10_000_000,
                    arch="x86_64",
                    cpu_vendor="AMD" if model.startswith("EPYC") else "Intel",
                    cpu_model=model,
                    cpus=64,
                    memory_total_mib=512 * 1024,
                    memory_free_mib=512 * 1024 - VMS_PER_HOST * 8 * 1024,
                    machine_types=["pc-q35-8.2", "pc-i440fx-8.2"],
                    domain_types=["kvm"],
                )
            )
    Host.objects.bulk_create(hosts, batch_size=500)
    hosts = list(Host.objects.order_by("name"))
    pools = StoragePool.objects.bulk_create(
        [
            StoragePool(
                name=f"ceph-{site:02d}",
                pool_type="rbd",
                identity=f"rbd:site-{site:02d}",
                shared=True,
                capacity_bytes=500_000 * GIB,
                available_bytes=400_000 * GIB,
            )
            for site in range(SITES)
        ]
    )
    networks = Network.objects.bulk_create(
        [Network(name="prod", bridge="br-prod", vlan=120)]
        + [Network(name=f"site-{s:02d}", bridge="br-site", vlan=200 + s) for s in range(SITES)]
    )
    prod, site_nets = networks[0], networks[1:]
    pool_through, net_through = StoragePool.hosts.through, Network.hosts.through
    pool_rows, net_rows = [], []
    for index, host in enumerate(hosts):
        site = index // HOSTS_PER_SITE
        pool_rows.append(pool_through(storagepool_id=pools[site].pk, host_id=host.pk))
        net_rows.append(net_through(network_id=prod.pk, host_id=host.pk))
        net_rows.append(net_through(network_id=site_nets[site].pk, host_id=host.pk))
    pool_through.objects.bulk_create(pool_rows, batch_size=2000)
    net_through.objects.bulk_create(net_rows, batch_size=2000)

    vms = []
    sizes = (2048, 4096, 8192, 16384)
    for index, host in enumerate(hosts):
        model = CPU_MODELS[(index // HOSTS_PER_SITE) % len(CPU_MODELS)]
        for n in range(VMS_PER_HOST):
            number = index * VMS_PER_HOST + n
            custom = number % 3 == 0
            vms.append(
                VirtualMachine(
                    uuid=uuid.UUID(int=number + 1),
                    name=f"vm{number:05d}",
                    host=host,
                    state="running",
                    vcpus=2 + number % 4 * 2,
                    memory_mib=sizes[number % 4],
                    max_memory_mib=sizes[number % 4],
                    cpu_mode="custom" if custom else "host-model",
                    cpu_model=model if custom else "",
                    cpu_features=[{"name": "aes", "policy": "require"}] if custom else [],
                    machine_type="pc-q35-8.2",
                    arch="x86_64",
                    domain_type="kvm",
                    tags=[f"anti:pair-{number // 20}"] if number % 10 == 0 else ["app"],
                    dirty_rate_mib_s=float(number % 50) if number % 2 else None,
                )
            )
    VirtualMachine.objects.bulk_create(vms, batch_size=1000)
    vms = list(VirtualMachine.objects.order_by("name").values_list("pk", "host_id"))
    site_of = {h.pk: i // HOSTS_PER_SITE for i, h in enumerate(hosts)}
    disks, nics = [], []
    for number, (vm_id, host_id) in enumerate(vms):
        site = site_of[host_id]
        disks.append(
            VirtualDisk(
                vm_id=vm_id,
                target="vda",
                device="disk",
                source_type="network",
                source=f"rbd:vms/vm{number:05d}",
                pool=pools[site],
                capacity_bytes=40 * GIB,
                allocation_bytes=8 * GIB,
            )
        )
        nics.append(
            VirtualNIC(
                vm_id=vm_id,
                mac=f"52:54:00:{number >> 16 & 255:02x}:{number >> 8 & 255:02x}:{number & 255:02x}",
                source_type="network",
                network=prod,
                network_name="prod",
                bridge="br-prod",
                vlan=120,
            )
        )
        nics.append(
            VirtualNIC(
                vm_id=vm_id,
                mac=f"52:54:01:{number >> 16 & 255:02x}:{number >> 8 & 255:02x}:{number & 255:02x}",
                source_type="network",
                network=site_nets[site],
                network_name=site_nets[site].name,
                bridge="br-site",
                vlan=200 + site,
            )
        )
    VirtualDisk.objects.bulk_create(disks, batch_size=2000)
    VirtualNIC.objects.bulk_create(nics, batch_size=2000)
    return [pk for pk, _ in vms]


def main():
    from django.db import connection

    from migrations_app.services import validation
    from migrations_app.services.placing import plan_place
    from migrations_app.services.plans import plan_add_vms, plan_create

    call_command("migrate", verbosity=0)
    started = time.perf_counter()
    vm_ids = build_inventory()
    built = time.perf_counter() - started
    plan = plan_create(
        actor=None,
        name="PL1",
        policy={"max_concurrent": 50, "max_outbound_per_host": 2, "max_inbound_per_host": 2},
    )
    t0 = time.perf_counter()
    plan_add_vms(plan=plan, vms=vm_ids, actor=None)
    added = time.perf_counter() - t0
    # CPU seconds of this process beside the wall clock: on a shared machine the wall clock
    # also counts the time other processes held the cores (the database's own work is in
    # the wall figure only).
    c0, t0 = time.process_time(), time.perf_counter()
    placements = plan_place(plan=plan, actor=None)
    placed_s = time.perf_counter() - t0
    t1 = time.perf_counter()
    run = validation.plan_validate(plan=plan, actor=None)
    validated_s = time.perf_counter() - t1
    total = placed_s + validated_s
    cpu_s = time.process_time() - c0
    n = len(vm_ids)
    placed = sum(1 for p in placements if p.destination_id is not None)
    print(
        f"PL1 validate+place {n} VMs / {SITES * HOSTS_PER_SITE} hosts: {total:.2f} s "
        f"({total / n * 1000:.3f} ms/VM)  [place {placed_s:.2f} s, validate {validated_s:.2f} s "
        f"({run.results.count()} results stored); setup {built:.1f} s, add {added:.1f} s; "
        f"placed {placed}/{n}; blockers {run.blockers}; db {connection.vendor}; "
        f"cpus {os.cpu_count()}; this process's CPU {cpu_s:.2f} s]"
    )
    record = {
        "name": "PL1 validate+place 10000 VMs / 1000 hosts",
        "value": round(total, 3),
        "unit": "s",
        "target": TARGET_S,
        "per_vm_ms": round(total / n * 1000, 4),
        "place_s": round(placed_s, 3),
        "validate_s": round(validated_s, 3),
        "cpu_s": round(cpu_s, 3),
        "placed": placed,
        "vms": n,
        "hosts": SITES * HOSTS_PER_SITE,
        "blockers": run.blockers,
        "database": connection.vendor,
        "cpus": os.cpu_count(),
    }
    out = REPO / "bench" / "results" / "pl1.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps(record))
    from common import report

    report(
        f"PL1 validate+place {n} VMs / {SITES * HOSTS_PER_SITE} hosts ({connection.vendor})",
        round(total, 2),
        "s",
        "< 10 s on 2 cores",
        total < 10.0,
        f"{total / n * 1000:.2f} ms/VM; place {placed_s:.1f} s, validate {validated_s:.1f} s; "
        f"CPU of this process {cpu_s:.1f} s",
    )


if __name__ == "__main__":
    main()
