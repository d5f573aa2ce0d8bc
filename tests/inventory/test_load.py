"""Measured load: parsing libvirt's bulk statistics, rates from consecutive samples, the
sampling at sync, averages over a window, retention, the command and the periodic task.
(The lab test tests/lab/test_load_lab.py measures real guests.)"""

import datetime as dt
import uuid

import libvirt
import pytest
from django.core.management import CommandError, call_command

from inventory import load as load_module
from inventory.libvirt_read import DomainLoad, HostLoadFacts, domain_load, read_load
from inventory.load import load_averages, load_record, load_samples_prune
from inventory.models import Host, HostLoadSample, VirtualMachine, VmLoadSample
from inventory.sync import host_sync

pytestmark = pytest.mark.django_db
T0 = dt.datetime(2025, 5, 1, 8, 0, tzinfo=dt.UTC)

# A record as QEMU's driver returns it for a 2-vCPU guest with a balloon driver.
STATS = {
    "state.state": 1,
    "state.reason": 1,
    "vcpu.current": 2,
    "vcpu.maximum": 2,
    "vcpu.0.state": 1,
    "vcpu.0.time": 7_000_000_000,
    "vcpu.1.state": 1,
    "vcpu.1.time": 3_000_000_000,
    "balloon.current": 4_194_304,
    "balloon.maximum": 4_194_304,
    "balloon.unused": 3_145_728,
    "balloon.rss": 1_572_864,
    "block.count": 2,
    "block.0.name": "vda",
    "block.0.rd.bytes": 1000,
    "block.0.wr.bytes": 500,
    "block.1.name": "vdb",
    "block.1.rd.bytes": 24,
    "block.1.wr.bytes": 12,
    "net.count": 1,
    "net.0.rx.bytes": 4096,
    "net.0.tx.bytes": 2048,
}


def test_it_reads_cpu_time_memory_disk_and_network_from_a_stats_record():
    load = domain_load("u-1", STATS)
    assert load.state == "running" and load.vcpus == 2
    assert load.cpu_time_ns == 10_000_000_000
    assert (load.block_rd_bytes, load.block_wr_bytes) == (1024, 512)
    assert (load.net_rx_bytes, load.net_tx_bytes) == (4096, 2048)
    # The balloon driver says how much is unused: 4 GiB − 3 GiB.
    assert load.memory_used == (1024, "balloon")


def test_it_falls_back_to_rss_and_then_to_nothing_without_a_balloon_driver():
    no_balloon = {k: v for k, v in STATS.items() if k != "balloon.unused"}
    assert domain_load("u", no_balloon).memory_used == (1536, "rss")
    bare = {"state.state": 1}
    load = domain_load("u", bare)
    assert load.memory_used == (None, "") and load.cpu_time_ns is None and load.vcpus is None


def test_it_reads_the_test_driver_which_reports_states_only():
    conn = libvirt.open("test:///default")
    try:
        facts = read_load(conn)
    finally:
        conn.close()
    assert facts.cpus == 16 and facts.cpu_busy_ns is not None
    assert [d.state for d in facts.domains] == ["running"]
    assert facts.domains[0].cpu_time_ns is None


def _host(name="k1", transport="tls"):
    return Host.objects.create(name=name, uri=f"qemu+tls://{name}/system", transport=transport)


def _vm(host, name="vm1"):
    return VirtualMachine.objects.create(uuid=uuid.uuid4(), name=name, host=host, vcpus=2)


def _reading(at, domains, busy=0):
    return HostLoadFacts(
        at=at.timestamp(),
        cpus=8,
        cpu_busy_ns=busy,
        memory_total_mib=32768,
        memory_used_mib=8192,
        domains=domains,
    )


def _dom(vm, cpu_ns, *, rd=0, rss=2048, state="running"):
    return DomainLoad(
        uuid=str(vm.uuid),
        state=state,
        vcpus=2,
        cpu_time_ns=cpu_ns,
        balloon_current_mib=None,
        balloon_unused_mib=None,
        rss_mib=rss,
        block_rd_bytes=rd,
        block_wr_bytes=0,
        net_rx_bytes=0,
        net_tx_bytes=0,
    )


def test_it_computes_rates_from_the_previous_sample_of_the_same_vm_on_the_same_host():
    host = _host()
    vm = _vm(host)
    first = load_record(host=host, facts=_reading(T0, [_dom(vm, 10 * 10**9)], busy=0))
    assert first.vms == 1 and first.with_rates == 0  # one sample: no rate yet
    later = T0 + dt.timedelta(seconds=10)
    second = load_record(
        host=host, facts=_reading(later, [_dom(vm, 15 * 10**9, rd=10_000)], busy=40 * 10**9)
    )
    assert second.with_rates == 1
    sample = VmLoadSample.objects.filter(vm=vm).latest("at")
    assert sample.interval_s == pytest.approx(10.0)
    assert sample.cpu_cores == pytest.approx(0.5)  # 5 s of vCPU time in 10 s
    assert sample.disk_read_bps == pytest.approx(1000.0)
    assert sample.memory_used_mib == 2048 and sample.memory_source == "rss"
    host_sample = HostLoadSample.objects.filter(host=host).latest("at")
    assert host_sample.cpu_cores == pytest.approx(4.0) and host_sample.memory_used_mib == 8192


def test_it_gives_no_rate_when_the_counter_started_again_or_the_vm_moved():
    a, b = _host("k1"), _host("k2")
    vm = _vm(a)
    load_record(host=a, facts=_reading(T0, [_dom(vm, 50 * 10**9)]))
    # A new QEMU process (a restart): its counter is lower than the last one.
    load_record(host=a, facts=_reading(T0 + dt.timedelta(seconds=10), [_dom(vm, 1 * 10**9)]))
    assert VmLoadSample.objects.filter(vm=vm).latest("at").cpu_cores is None
    # The VM now runs on k2: k1's counters are not its previous sample there.
    load_record(host=b, facts=_reading(T0 + dt.timedelta(seconds=20), [_dom(vm, 90 * 10**9)]))
    assert VmLoadSample.objects.filter(vm=vm, host=b).get().cpu_cores is None


def test_it_clamps_cpu_to_the_vcpus_and_skips_unknown_or_stopped_domains():
    host = _host()
    vm = _vm(host)
    stranger = DomainLoad(str(uuid.uuid4()), "running", 1, 1, None, None, 10, 0, 0, 0, 0)
    load_record(host=host, facts=_reading(T0, [_dom(vm, 0), stranger]))
    result = load_record(
        host=host, facts=_reading(T0 + dt.timedelta(seconds=1), [_dom(vm, 5 * 10**9), stranger])
    )
    assert result.skipped == [stranger.uuid]
    assert VmLoadSample.objects.filter(vm=vm).latest("at").cpu_cores == 2.0
    paused_off = _dom(vm, 6 * 10**9, state="shutoff")
    assert (
        load_record(host=host, facts=_reading(T0 + dt.timedelta(seconds=2), [paused_off])).vms == 0
    )


def test_it_averages_the_window_and_prunes_what_is_older_than_the_retention(settings):
    settings.FERRY_LOAD_RETENTION_HOURS = 2
    host = _host()
    vm = _vm(host)
    now = T0 + dt.timedelta(hours=3)
    for minutes_ago, cores, memory in ((150, 9.0, 9000), (50, 1.0, 1000), (10, 0.5, 3000)):
        VmLoadSample.objects.create(
            vm=vm,
            host=host,
            at=now - dt.timedelta(minutes=minutes_ago),
            cpu_cores=cores,
            memory_used_mib=memory,
        )
        HostLoadSample.objects.create(
            host=host,
            at=now - dt.timedelta(minutes=minutes_ago),
            cpu_cores=cores * 2,
            memory_used_mib=memory * 2,
        )
    vms, hosts = load_averages(minutes=60, now=now)
    assert vms[vm.pk] == {"cpu_cores": 0.75, "memory_used_mib": 2000, "samples": 2}
    assert hosts[host.pk]["cpu_cores"] == 1.5 and hosts[host.pk]["samples"] == 2
    assert load_averages(vm_ids=[], host_ids=[], now=now) == ({}, {})
    assert load_samples_prune(now=now) == 2  # the 150-minute-old VM and host samples
    assert VmLoadSample.objects.count() == 2


def test_it_samples_during_a_sync_and_a_failing_reading_does_not_fail_the_sync(monkeypatch):
    # A host Ferry measures, reached through the test driver (a real libvirt connection).
    host = Host.objects.create(name="real", uri="test:///default", transport="tls")
    assert host_sync(host=host).ok
    assert HostLoadSample.objects.filter(host=host).count() == 1

    def broken(conn):
        raise libvirt.libvirtError("stats unavailable")

    monkeypatch.setattr("inventory.sync.read_load", broken)
    assert host_sync(host=host).ok
    assert HostLoadSample.objects.filter(host=host).count() == 1
    # The demo's test-driver hosts are never sampled: their figures are fixed fictions.
    monkeypatch.undo()
    HostLoadSample.objects.all().delete()
    Host.objects.filter(pk=host.pk).update(transport="test")
    host.refresh_from_db()
    assert host_sync(host=host).ok and not HostLoadSample.objects.filter(host=host).exists()


def test_it_samples_from_the_command_and_refuses_hosts_it_does_not_measure(monkeypatch):
    real = Host.objects.create(name="real", uri="test:///default", transport="tls")
    Host.objects.create(name="demo", uri="test:///default?d", transport="test")
    calls = []
    monkeypatch.setattr(
        load_module,
        "host_load_sample",
        lambda host: calls.append(host.name) or load_module.LoadResult(host=host.name, ok=True),
    )
    call_command("sample_load")
    assert calls == ["real"]
    with pytest.raises(CommandError, match="No host named"):
        call_command("sample_load", "--host", "nope")
    with pytest.raises(CommandError, match="real libvirt driver only"):
        call_command("sample_load", "--host", "demo")
    assert real.pk


def test_it_queues_one_housekeeping_pass_and_the_pass_samples_and_prunes(settings, monkeypatch):
    from django_tasks_db.models import DBTaskResult

    from dashboard.runtime import housekeeping

    settings.TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend"}}
    housekeeping.housekeeping_ensure()
    housekeeping.housekeeping_ensure()  # a second worker starting queues nothing more
    queued = DBTaskResult.objects.filter(status="READY", task_path__endswith="housekeeping_task")
    assert queued.count() == 1
    sampled = []
    monkeypatch.setattr(housekeeping, "load_sample_all", lambda: sampled.append(1) or [])
    settings.FERRY_LOAD_SAMPLE_SECONDS = 0
    assert "load" not in housekeeping.housekeeping() and sampled == []
    settings.FERRY_LOAD_SAMPLE_SECONDS = 60
    out = housekeeping.housekeeping()
    assert (
        sampled == [1] and out["load_samples_pruned"] == 0 and out["progress_samples_pruned"] == 0
    )


def test_it_shows_the_measured_use_on_the_host_and_vm_pages(client, make_user):
    from django.utils import timezone

    host = _host()
    vm = _vm(host)
    now = timezone.now()
    VmLoadSample.objects.create(vm=vm, host=host, at=now, cpu_cores=1.25, memory_used_mib=3000)
    HostLoadSample.objects.create(host=host, at=now, cpu_cores=3.5, memory_used_mib=9000)
    client.force_login(make_user("viewer1", "viewer"))
    vm_page = client.get(f"/inventory/vms/{vm.pk}/").content.decode()
    assert "1.25 CPU cores busy, 3000 MiB memory in use" in vm_page
    host_page = client.get(f"/inventory/hosts/{host.pk}/").content.decode()
    assert "3.50 CPU cores busy, 9000 MiB memory in use" in host_page
    other = _vm(host, "quiet")
    assert (
        "no sample in the last 60 min" in client.get(f"/inventory/vms/{other.pk}/").content.decode()
    )
