"""The lab's hosts look like two distinct hypervisors with the same network and pools."""

from __future__ import annotations

import re
import uuid

import pytest

pytestmark = pytest.mark.lab


def _host_uuid(conn) -> str:
    return re.search(r"<host>\s*<uuid>([^<]+)</uuid>", conn.getCapabilities()).group(1)


def _pool_path(conn, name) -> str:
    return re.search(r"<path>([^<]+)</path>", conn.storagePoolLookupByName(name).XMLDesc()).group(1)


def test_it_gives_each_host_its_own_hostname_and_uuid(conns):
    names = {name: c.getHostname() for name, c in conns.items()}
    assert names == {name: name for name in conns}
    uuids = {_host_uuid(c) for c in conns.values()}
    assert len(uuids) == len(conns)


def test_it_defines_labnet_and_all_pools_on_every_host(conns):
    for name, c in conns.items():
        net = c.networkLookupByName("labnet")
        assert net.isActive(), name
        assert "<forward mode='bridge'/>" in net.XMLDesc()
        for pool in ("shared", "local", "twin"):
            assert c.storagePoolLookupByName(pool).isActive(), f"{pool} on {name}"


def test_it_shares_the_shared_pool_and_keeps_local_pools_per_host(conns):
    a, b = conns["lab-a"], conns["lab-b"]
    assert _pool_path(a, "shared") == _pool_path(b, "shared")
    # local pools have the same path (libvirt's NON_SHARED_DISK pre-creation
    # looks the destination pool up by path) but a different directory behind it
    vol = f"probe-{uuid.uuid4().hex[:8]}"
    xml = f"<volume><name>{vol}</name><capacity unit='KiB'>64</capacity><target><format type='raw'/></target></volume>"
    for pool, visible_on_b in (("shared", True), ("local", False)):
        v = a.storagePoolLookupByName(pool).createXML(xml, 0)
        try:
            pb = b.storagePoolLookupByName(pool)
            pb.refresh(0)
            assert (vol in pb.listVolumes()) is visible_on_b, pool
        finally:
            v.delete(0)
            b.storagePoolLookupByName(pool).refresh(0)


def test_it_gives_the_twin_pool_one_uuid_and_path_but_a_directory_per_host(conns):
    a, b = conns["lab-a"], conns["lab-b"]
    pa, pb = a.storagePoolLookupByName("twin"), b.storagePoolLookupByName("twin")
    # looks shared from the inventory: same UUID, same path ...
    assert pa.UUIDString() == pb.UUIDString()
    assert _pool_path(a, "twin") == _pool_path(b, "twin")
    assert pa.UUIDString() != a.storagePoolLookupByName("shared").UUIDString()
    # ... but a volume made through lab-a is not there for lab-b
    vol = f"probe-{uuid.uuid4().hex[:8]}"
    xml = f"<volume><name>{vol}</name><capacity unit='KiB'>64</capacity><target><format type='raw'/></target></volume>"
    v = pa.createXML(xml, 0)
    try:
        pb.refresh(0)
        assert vol not in pb.listVolumes()
    finally:
        v.delete(0)
    # the shared pool is one UUID everywhere, the local pool one UUID per host
    uuids = {
        pool: {c.storagePoolLookupByName(pool).UUIDString() for c in conns.values()}
        for pool in ("shared", "local")
    }
    assert len(uuids["shared"]) == 1 and len(uuids["local"]) == len(conns)


def test_it_reports_distinct_local_dirs_and_peer_uris(lab_env):
    hosts = lab_env["hosts"]
    assert len({h["local_dir"] for h in hosts.values()}) == len(hosts)
    assert len({h["twin_dir"] for h in hosts.values()}) == len(hosts)
    assert hosts["lab-b"]["tls_uri"] == "qemu+tls://10.77.0.2/system"
    assert hosts["lab-b"]["tcp_uri"] == "qemu+tcp://10.77.0.2/system"
    assert hosts["lab-b"]["migration_uri"] == "tcp://10.78.0.2"
    assert lab_env["shared_pool_needs_unsafe"] is False
    assert lab_env["migration_network"] == "10.78.0.0/24"


def test_it_keeps_every_link_up_and_counts_bytes_per_network(lab_env):
    from lab import labctl

    for name in lab_env["hosts"]:
        assert labctl.link_state(name) == {"mgmt": "up", "migration": "up"}
        c = labctl.link_counters(name)
        assert c["mgmt"]["iface"] == "eth0" and c["migration"]["iface"] == "eth1"
        assert labctl.env()["hosts"][name]["virtlockd_pid"]
