"""Measured load on the real lab: libvirt's bulk statistics of real QEMU guests, read at a
sync and by the sampler, show more CPU for the guest whose memory dirtier runs than for
an idle one, and the averages the balance planner reads say the same.

The dirtier writes one word per page, so at migration-test rates (100 MB/s) it costs a
TCG guest about 5 % of a core; asked for 100,000 MB/s it never sleeps and takes what the
host gives its vCPU (0.3 cores measured on this 2-core machine, shared with other work),
against about 0.02 for the idle guest's heartbeat."""

from __future__ import annotations

import time

import pytest

pytest.importorskip("libvirt")

from inventory.load import host_load_sample, load_averages  # noqa: E402
from inventory.models import Host, HostLoadSample, VirtualMachine, VmLoadSample  # noqa: E402
from lab.guest import vm  # noqa: E402

# The lab execution tests own the fixtures that register the lab hosts in Ferry.
from tests.lab.test_execution_lab import ferry, sync  # noqa: E402,F401,F811

pytestmark = [pytest.mark.lab, pytest.mark.django_db(transaction=True)]
WINDOW_S = 8  # seconds between the two samples whose difference gives the rate


def test_it_measures_more_cpu_for_a_guest_whose_dirtier_runs(ferry, guest):  # noqa: F811
    idle = guest("lab-a", memory_mib=256)
    busy = guest("lab-a", memory_mib=256, dirty_ws=64, dirty_rate=100_000)
    for name in (idle, busy):
        vm.wait_heartbeat(name, timeout=120)
    time.sleep(3)  # past boot: the idle guest only ticks its heartbeat now

    sync(ferry)  # the inventory, and the first load sample on the sync's own connection
    lab_a = Host.objects.get(name="lab-a")
    vms = {name: VirtualMachine.objects.get(name=name) for name in (idle, busy)}
    first = {v.name: VmLoadSample.objects.filter(vm=v).count() for v in vms.values()}
    assert first == {idle: 1, busy: 1}, "the sync sampled both guests"
    time.sleep(WINDOW_S)
    result = host_load_sample(host=lab_a)
    assert result.ok and result.with_rates >= 2, result.summary()

    cores = {}
    for name, row in vms.items():
        sample = VmLoadSample.objects.filter(vm=row).latest("at")
        assert sample.interval_s and sample.interval_s >= WINDOW_S - 1
        assert sample.cpu_time_ns and sample.memory_used_mib and sample.memory_source == "rss"
        cores[name] = sample.cpu_cores
    print(f"\n[load-lab] measured CPU cores: idle {cores[idle]:.3f}, dirtying {cores[busy]:.3f}")
    assert cores[busy] > cores[idle] + 0.1 and cores[busy] > 3 * cores[idle], cores
    assert 0 <= cores[idle] < 0.1 and cores[busy] <= 1.0  # one vCPU each

    host_sample = HostLoadSample.objects.filter(host=lab_a).latest("at")
    assert host_sample.cpu_cores is not None and host_sample.cpu_cores >= cores[busy] * 0.5
    assert host_sample.memory_used_mib and host_sample.memory_total_mib

    averages, hosts = load_averages(vm_ids=[v.pk for v in vms.values()], host_ids=[lab_a.pk])
    assert averages[vms[busy].pk]["cpu_cores"] > averages[vms[idle].pk]["cpu_cores"]
    assert hosts[lab_a.pk]["samples"] == 2
