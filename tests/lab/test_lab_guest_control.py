"""Lab guests as fault-injection targets: a real guest agent, runtime control, panics, UEFI.

Everything here drives the real guest: Debian's qemu-ga answers through libvirt,
the dirtier changes rate without a reboot (QEMU's own dirty-rate sampling must
see it), an NMI makes the guest kernel panic and libvirt must report the crash,
and OVMF boots a q35 guest whose NVRAM lives on its host, not on shared storage.
"""

from __future__ import annotations

import json
import threading
import time

import pytest

libvirt = pytest.importorskip("libvirt")
libvirt_qemu = pytest.importorskip("libvirt_qemu")
from labtools import BASE  # noqa: E402

from lab.guest import vm  # noqa: E402

pytestmark = pytest.mark.lab

PING = json.dumps({"execute": "guest-ping"})


def ping_ms(dom, n=5):
    """Median guest-ping round trip through libvirt, in ms."""
    times = []
    for _ in range(n):
        t0 = time.monotonic()
        assert json.loads(libvirt_qemu.qemuAgentCommand(dom, PING, 5, 0)) == {"return": {}}
        times.append((time.monotonic() - t0) * 1000)
    return sorted(times)[n // 2]


def migrate_to_b(conns, lab_env, name):
    """Live p2p migration lab-a -> lab-b (no UNSAFE); returns (domain on lab-b, completed
    job stats, wall seconds)."""
    t0 = time.monotonic()
    conns["lab-a"].lookupByName(name).migrateToURI3(lab_env["hosts"]["lab-b"]["tcp_uri"], {}, BASE)
    wall = time.monotonic() - t0
    moved = conns["lab-b"].lookupByName(name)
    assert moved.state()[0] == libvirt.VIR_DOMAIN_RUNNING
    return moved, moved.jobStats(libvirt.VIR_DOMAIN_JOB_STATS_COMPLETED), wall


def dirty_rate_mb_s(dom, conn, seconds=1):
    """QEMU's own estimate (page sampling) of how fast the guest dirties memory."""
    dom.startDirtyRateCalc(seconds, 0)
    deadline = time.monotonic() + seconds + 15
    while time.monotonic() < deadline:
        time.sleep(0.5)
        ((_, stats),) = conn.domainListGetStats([dom], libvirt.VIR_DOMAIN_STATS_DIRTYRATE)
        if stats.get("dirtyrate.calc_status") == 2:  # measured
            return stats["dirtyrate.megabytes_per_second"]
    raise AssertionError(f"dirty rate not measured in time: {stats}")


def test_it_live_migrates_a_shared_pool_guest_without_unsafe_and_the_agent_still_answers(
    conns, lab_env, guest, record
):
    t0 = time.monotonic()
    name = guest("lab-a", memory_mib=256, dirty_ws=32, dirty_rate=10)
    first = vm.wait_heartbeat(name, timeout=60)
    boot_s = time.monotonic() - t0
    vm.wait_agent(name, "lab-a", timeout=30)
    agent_s = time.monotonic() - t0
    before = ping_ms(conns["lab-a"].lookupByName(name))

    # qemu.conf shared_filesystems names the shared pool: no VIR_MIGRATE_UNSAFE needed
    assert lab_env["shared_pool_needs_unsafe"] is False
    moved, stats, wall = migrate_to_b(conns, lab_env, name)
    after = ping_ms(moved)
    assert vm.agent_ping(name, "lab-b") < 10  # the lab helper (virsh) agrees
    hb = vm.wait_heartbeat(name, timeout=30, after=vm.last_console_heartbeat(name) + 1)
    seq = vm.console_heartbeats(name)
    assert seq == list(range(1, hb + 1)) and first == 1, seq
    assert not vm.console_problems(name)
    record(
        "shared-pool-no-unsafe-p2p",
        stats,
        wall,
        boot_to_first_hb_s=round(boot_s, 2),
        boot_to_agent_s=round(agent_s, 2),
        agent_ping_ms_before=round(before, 2),
        agent_ping_ms_after=round(after, 2),
    )
    print(
        f"\n[lab] BIOS boot to first HB {boot_s:.1f} s, agent answers at {agent_s:.1f} s, "
        f"guest-ping {before:.1f} ms before / {after:.1f} ms after migration"
    )


def test_it_switches_the_dirty_rate_at_runtime_when_told_through_the_agent(conns, guest):
    name = guest("lab-a", memory_mib=256)  # boots idle: no working set
    vm.wait_heartbeat(name, timeout=60)
    vm.wait_agent(name, "lab-a", timeout=30)
    conn = conns["lab-a"]
    dom = conn.lookupByName(name)
    idle = dirty_rate_mb_s(dom, conn)
    assert vm.set_dirty(name, 64, 50) == {"ws_mb": 64, "rate_mb_s": 50}
    busy = dirty_rate_mb_s(dom, conn)
    assert vm.set_dirty(name, 64, 0) == {"ws_mb": 64, "rate_mb_s": 0}
    quiet = dirty_rate_mb_s(dom, conn)
    print(
        f"\n[lab] QEMU-measured dirty rate: idle {idle}, at 50 MB/s {busy}, back to 0 {quiet} MB/s"
    )
    assert idle < 10 and quiet < 10, (idle, quiet)
    assert busy >= 30, busy
    assert "DIRTY set ws=64MB rate=50MB/s" in vm.console_text(name)
    assert vm.last_console_heartbeat(name) and not vm.console_problems(name)
    assert dom.state()[0] == libvirt.VIR_DOMAIN_RUNNING  # no reboot on the way


def test_it_stops_the_guest_as_crashed_when_its_kernel_panics_on_demand(lab_env, guest):
    name = guest("lab-a", memory_mib=128)
    vm.wait_heartbeat(name, timeout=60, after=1)
    events = []
    libvirt.virEventRegisterDefaultImpl()
    stop = threading.Event()

    def loop():
        while not stop.is_set():
            libvirt.virEventRunDefaultImpl()

    conn = libvirt.open(lab_env["hosts"]["lab-a"]["uri"])
    cb = conn.domainEventRegisterAny(
        None,
        libvirt.VIR_DOMAIN_EVENT_ID_LIFECYCLE,
        lambda _c, dom, event, detail, _o: events.append((dom.name(), event, detail)),
        None,
    )
    th = threading.Thread(target=loop, daemon=True)
    th.start()
    try:
        t0 = time.monotonic()
        assert vm.panic(name) == "lab-a"  # an NMI; the guest has unknown_nmi_panic=1
        dom = conn.lookupByName(name)
        while dom.state()[0] != libvirt.VIR_DOMAIN_SHUTOFF and time.monotonic() - t0 < 30:
            time.sleep(0.1)
        took = time.monotonic() - t0
        # pvpanic reports the panic to QEMU; libvirt applies on_crash=destroy
        assert dom.state() == [libvirt.VIR_DOMAIN_SHUTOFF, libvirt.VIR_DOMAIN_SHUTOFF_CRASHED]
        assert vm.domain_state(name, "lab-a") == ("shut off", "crashed")
        deadline = time.monotonic() + 5
        while len(events) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        mine = [(e, d) for n, e, d in events if n == name]
        assert (libvirt.VIR_DOMAIN_EVENT_CRASHED, libvirt.VIR_DOMAIN_EVENT_CRASHED_PANICKED) in mine
        assert (libvirt.VIR_DOMAIN_EVENT_STOPPED, libvirt.VIR_DOMAIN_EVENT_STOPPED_CRASHED) in mine
        assert vm.where_running(name) == []
        print(f"\n[lab] panic -> shut off (crashed) in {took:.2f} s; events {mine}")
    finally:
        conn.domainEventDeregisterAny(cb)
        stop.set()
        conn.close()


def test_it_boots_a_uefi_guest_with_its_nvram_on_the_host_and_migrates_it(
    conns, lab_env, guest, record
):
    t0 = time.monotonic()
    name = guest("lab-a", memory_mib=256, uefi=True)
    vm.wait_heartbeat(name, timeout=120)
    boot_s = time.monotonic() - t0
    vm.wait_agent(name, "lab-a", timeout=30)
    dom = conns["lab-a"].lookupByName(name)
    xml = dom.XMLDesc(0)
    assert "OVMF_CODE_4M.fd" in xml and "<nvram" in xml and "q35" in xml
    nvram_a = vm.nvram_file(name, "lab-a")
    assert nvram_a.exists()  # copied from the template into lab-a's own /var
    assert not str(nvram_a).startswith(lab_env["shared_pool_path"])
    assert not vm.nvram_file(name, "lab-b").exists()

    moved, stats, wall = migrate_to_b(conns, lab_env, name)
    assert vm.nvram_file(name, "lab-b").exists()  # lab-b made its own NVRAM file
    vm.wait_heartbeat(name, timeout=30, after=vm.last_console_heartbeat(name) + 1)
    vm.agent_ping(name, "lab-b")
    assert not vm.console_problems(name)
    source_left = [d.name() for d in conns["lab-a"].listAllDomains() if d.name() == name]
    record(
        "uefi-p2p",
        stats,
        wall,
        uefi_boot_to_first_hb_s=round(boot_s, 2),
        source_nvram_left=nvram_a.exists(),
        source_definition_left=bool(source_left),
    )
    print(
        f"\n[lab] UEFI (OVMF, q35) boot to first HB {boot_s:.1f} s; after migration the "
        f"source NVRAM file {'is still there' if nvram_a.exists() else 'is gone'}, source "
        f"definition {'left' if source_left else 'undefined'}"
    )
    assert not source_left  # VIR_MIGRATE_UNDEFINE_SOURCE removed it despite the NVRAM
