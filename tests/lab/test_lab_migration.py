"""Real live migrations between the lab hosts, verified by watching the guest.

libvirt's return value is not trusted on its own (QEMU 7.2 reported success
while corrupting guests): after each switchover the guest must keep running
on the destination only, its in-RAM heartbeat counter must keep counting
without a reset or gap, and its console must show no panic, oops or
memory-check mismatch.
"""

from __future__ import annotations

import time

import pytest

libvirt = pytest.importorskip("libvirt")
from labtools import BASE  # noqa: E402

from lab.guest import vm  # noqa: E402

pytestmark = pytest.mark.lab

# the shared pool is a plain directory both hosts see, declared in every host's
# qemu.conf `shared_filesystems`: libvirt treats it as shared, no UNSAFE needed
SHARED = BASE


def migrate(conns, lab_env, name, src, dst, flags, via="tcp_uri"):
    """Peer-to-peer migrate; returns (completed job stats from the destination, wall seconds)."""
    dom = conns[src].lookupByName(name)
    t0 = time.monotonic()
    dom.migrateToURI3(lab_env["hosts"][dst][via], {}, flags)
    wall = time.monotonic() - t0
    stats = conns[dst].lookupByName(name).jobStats(libvirt.VIR_DOMAIN_JOB_STATS_COMPLETED)
    return stats, wall


def assert_alive_only_on(conns, name, host, last_before, beats=3):
    """The guest counts on past `last_before` on `host`, and exists nowhere else."""
    hb = vm.wait_heartbeat(name, timeout=30, after=last_before + beats)
    seq = vm.console_heartbeats(name)
    assert seq[0] == 1 and seq == list(range(1, seq[-1] + 1)), f"heartbeat reset or gap: {seq}"
    assert not vm.console_problems(name), vm.console_problems(name)
    for other, c in conns.items():
        if other == host:
            dom = c.lookupByName(name)
            assert dom.state()[0] == libvirt.VIR_DOMAIN_RUNNING
            assert dom.isPersistent()
        else:
            with pytest.raises(libvirt.libvirtError):
                c.lookupByName(name)
    return hb


def test_it_live_migrates_a_dirtying_guest_over_tls(conns, lab_env, guest, record):
    name = guest("lab-a", memory_mib=256, dirty_ws=64, dirty_rate=20)
    before = vm.wait_heartbeat(name, timeout=60, after=1)
    stats, wall = migrate(
        conns, lab_env, name, "lab-a", "lab-b", SHARED | libvirt.VIR_MIGRATE_TLS, via="tls_uri"
    )
    assert_alive_only_on(conns, name, "lab-b", before)
    row = record("tls-p2p-shared-256MiB-20MBps", stats, wall, memory_mib=256, dirty_rate=20)
    assert row["total_ms"] and row["downtime_ms"] is not None


def test_it_survives_repeated_migrations_while_dirtying_memory(conns, lab_env, guest, record):
    # the regression guard for QEMU 7.2's silent corruption under TCG
    name = guest("lab-a", memory_mib=256, dirty_ws=128, dirty_rate=100)
    last = vm.wait_heartbeat(name, timeout=60, after=1)
    src, dst = "lab-a", "lab-b"
    for i in range(4):
        stats, wall = migrate(conns, lab_env, name, src, dst, SHARED)
        last = assert_alive_only_on(conns, name, dst, last, beats=2)
        record(
            f"pingpong-{i + 1}-{src}-to-{dst}-100MBps", stats, wall, memory_mib=256, dirty_rate=100
        )
        src, dst = dst, src


def test_it_copies_a_local_disk_with_non_shared_disk(conns, lab_env, guest, record):
    name = guest("lab-a", memory_mib=256, dirty_ws=32, dirty_rate=10, pool="local")
    before = vm.wait_heartbeat(name, timeout=60, after=1)
    src_disk = vm.disk_path(name, "local", "lab-a")
    dst_disk = vm.disk_path(name, "local", "lab-b")
    assert not dst_disk.exists()
    stats, wall = migrate(
        conns, lab_env, name, "lab-a", "lab-b", BASE | libvirt.VIR_MIGRATE_NON_SHARED_DISK
    )
    frozen = vm.disk_heartbeat(name, src_disk)["counter"]
    assert_alive_only_on(conns, name, "lab-b", before)
    on_dst = vm.disk_heartbeat(name, dst_disk)
    assert on_dst["counter"] > frozen, (frozen, on_dst)
    time.sleep(2)
    assert vm.disk_heartbeat(name, dst_disk)["counter"] > on_dst["counter"]
    assert vm.disk_heartbeat(name, src_disk)["counter"] == frozen  # the source copy stays behind
    record("nonshared-disk-p2p-256MiB", stats, wall, memory_mib=256, dirty_rate=10)
