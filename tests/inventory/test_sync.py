"""Sync through real libvirt (the test driver, default and the shipped demo node files)."""

import libvirt
import pytest
from django.core.management import call_command

from dashboard.audit.models import AuditEvent
from inventory.libvirt_read import read_domain_xml
from inventory.models import Host, Network, StoragePool, VirtualDisk, VirtualMachine, VirtualNIC
from inventory.services import InventoryError, host_add
from inventory.sync import host_sync
from inventory.xmlparse import UnsafeXML, parse_xml

pytestmark = pytest.mark.django_db


def snapshot():
    """Everything the inventory holds, to compare before and after a sync."""
    rows = []
    for model in (Host, StoragePool, Network, VirtualMachine, VirtualDisk, VirtualNIC):
        for values in model.objects.order_by("pk").values():
            values.pop("last_sync_at", None)
            values.pop("last_seen_at", None)
            rows.append((model.__name__, values))
    return rows


def test_it_fills_the_inventory_when_a_test_host_is_added_and_synced(capsys):
    call_command("host_add", "test:///default", "--name", "t1")
    call_command("sync_inventory", "--host", "t1")
    host = Host.objects.get(name="t1")
    assert host.transport == "test"
    assert host.hypervisor_type == "TEST"
    assert host.libvirt_version >= 9_000_000
    assert host.cpus == 16 and host.memory_total_mib > 0
    assert host.last_sync_error == ""
    vm = VirtualMachine.objects.get(name="test")
    assert vm.host == host and vm.state == "running" and vm.vcpus == 2
    assert vm.disks.get().source == "/guest/diskimage1"
    assert vm.nics.get().network.name == "default"
    assert StoragePool.objects.get(name="default-pool").hosts.get() == host
    assert Network.objects.get(name="default").bridge == "virbr0"
    assert "1 new" in capsys.readouterr().out


def test_it_changes_nothing_when_a_host_is_synced_twice():
    host = host_add(name="t1", uri="test:///default", actor=None)
    first = host_sync(host=host)
    assert first.ok and first.vms_created == ["test"]
    before = snapshot()
    events = AuditEvent.objects.count()
    second = host_sync(host=host)
    assert second.ok and not second.changed
    assert second.vms_unchanged == 1
    assert snapshot() == before
    # the sync itself is recorded, but no VM change events are
    assert AuditEvent.objects.count() == events + 1


def test_it_sees_a_shared_pool_once_and_local_pools_per_host(demo_uri):
    for name in ("kvm-a1", "kvm-a2", "kvm-b1"):
        assert host_sync(host=host_add(name=name, uri=demo_uri(name), actor=None)).ok
    nfs = StoragePool.objects.get(name="nfs-vms")
    assert nfs.shared and nfs.pool_type == "netfs"
    assert sorted(nfs.hosts.values_list("name", flat=True)) == ["kvm-a1", "kvm-a2"]
    assert "nfs1.site-a.internal" in nfs.source
    locals_ = StoragePool.objects.filter(name="local")
    assert locals_.count() == 3
    assert all(not p.shared and p.hosts.count() == 1 for p in locals_)
    prod = Network.objects.get(name="prod")
    assert prod.vlan == 120 and prod.hosts.count() == 3
    assert Network.objects.get(name="dmz").hosts.get().name == "kvm-b1"
    # disks resolve to their pool and volume sizes
    disk = VirtualDisk.objects.filter(pool=nfs).first()
    assert disk.capacity_bytes and disk.capacity_bytes > 0
    # Ferry's metadata namespace gives tags, owner and criticality
    db = VirtualMachine.objects.filter(name__startswith="db-").first()
    assert "anti:db-cluster" in db.tags and db.criticality == "critical"


def test_it_marks_a_vm_missing_instead_of_deleting_it(tmp_path):
    node = tmp_path / "node.xml"
    domain = (
        "<domain type='test'><name>{n}</name><uuid>{u}</uuid><memory unit='MiB'>512</memory>"
        "<vcpu>1</vcpu><os><type arch='x86_64'>hvm</type></os></domain>"
    )
    two = domain.format(n="keep", u="00000000-0000-0000-0000-000000000001") + domain.format(
        n="gone", u="00000000-0000-0000-0000-000000000002"
    )
    node.write_text(f"<node>{two}</node>")
    host = host_add(name="h", uri=f"test://{node}", actor=None)
    assert host_sync(host=host).ok
    node.write_text(
        f"<node>{domain.format(n='keep', u='00000000-0000-0000-0000-000000000001')}</node>"
    )
    result = host_sync(host=host)
    assert result.vms_missing == ["gone"]
    gone = VirtualMachine.objects.get(name="gone")
    assert gone.missing and gone.missing_since is not None and gone.host == host
    assert AuditEvent.objects.filter(action="vm.missing", object_repr="gone").exists()
    # it comes back when seen again
    node.write_text(f"<node>{two}</node>")
    host_sync(host=host)
    gone.refresh_from_db()
    assert not gone.missing


def test_it_moves_a_vm_found_on_another_host(tmp_path):
    domain = (
        "<domain type='test'><name>mover</name><uuid>00000000-0000-0000-0000-0000000000aa</uuid>"
        "<memory unit='MiB'>512</memory><vcpu>1</vcpu><os><type arch='x86_64'>hvm</type></os></domain>"
    )
    (tmp_path / "a.xml").write_text(f"<node>{domain}</node>")
    (tmp_path / "b.xml").write_text("<node></node>")
    a = host_add(name="a", uri=f"test://{tmp_path / 'a.xml'}", actor=None)
    b = host_add(name="b", uri=f"test://{tmp_path / 'b.xml'}", actor=None)
    host_sync(host=a)
    host_sync(host=b)
    (tmp_path / "a.xml").write_text("<node></node>")
    (tmp_path / "b.xml").write_text(f"<node>{domain}</node>")
    result = host_sync(host=b)
    assert result.vms_moved == ["mover"]
    assert VirtualMachine.objects.get(name="mover").host == b
    assert host_sync(host=a).vms_missing == []  # it moved, so it is not missing from a
    assert AuditEvent.objects.filter(action="vm.moved").count() == 1


def test_it_records_an_error_when_the_host_is_unreachable():
    host = host_add(name="dead", uri="qemu+ssh://127.0.0.1:1/system", actor=None)
    result = host_sync(host=host)
    assert not result.ok
    host.refresh_from_db()
    assert host.state == Host.State.UNREACHABLE
    # Everyone reads the classified reason; libvirt's text (with the address) is for admins.
    assert host.last_sync_error == "host unreachable"
    assert "127.0.0.1:1" in host.last_sync_error_detail
    assert VirtualMachine.objects.count() == 0
    assert AuditEvent.objects.filter(action="host.sync_failed").count() == 1


def test_it_records_an_error_when_the_test_node_file_is_missing(tmp_path):
    host = host_add(name="nofile", uri=f"test://{tmp_path / 'absent.xml'}", actor=None)
    result = host_sync(host=host)
    assert not result.ok and result.error
    assert Host.objects.get(pk=host.pk).last_sync_error


@pytest.mark.parametrize(
    "uri, message",
    [
        ("", "empty"),
        ("http://example/system", "qemu\\+tls:// or qemu\\+ssh:// only"),
        ("qemu+tls:///system", "names no host"),
        ("qemu+tls://kvm1/", "exactly /system"),
        ("qemu:///system extra", "without spaces"),
        ("test://", "test:///default or test:///PATH"),
    ],
)
def test_it_refuses_a_malformed_uri_with_a_clear_message(uri, message):
    with pytest.raises(InventoryError, match=message):
        host_add(name="x", uri=uri, actor=None)
    assert Host.objects.count() == 0


def test_it_refuses_duplicate_names_and_uris():
    host_add(name="t1", uri="test:///default", actor=None)
    with pytest.raises(InventoryError, match="already registered"):
        host_add(name="t1", uri="test:///default", actor=None)
    with pytest.raises(InventoryError, match="already registered"):
        host_add(name="t2", uri="test:///default", actor=None)


BILLION_LAUGHS = """<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>
<domain><name>&lol3;</name></domain>"""
XXE = """<?xml version="1.0"?>
<!DOCTYPE d [<!ENTITY x SYSTEM "file:///etc/passwd">]><domain><name>&x;</name></domain>"""


@pytest.mark.parametrize("payload", [BILLION_LAUGHS, XXE, "<domain><name>unclosed</domain>"])
def test_it_refuses_hostile_or_broken_xml(payload):
    with pytest.raises(UnsafeXML):
        parse_xml(payload)
    with pytest.raises(UnsafeXML):
        read_domain_xml(payload)


def test_it_reads_a_real_domain_xml_from_libvirt():
    conn = libvirt.open("test:///default")
    try:
        data = read_domain_xml(conn.listAllDomains()[0].XMLDesc(0))
    finally:
        conn.close()
    assert data["name"] == "test" and data["memory_mib"] == 2048 and data["max_memory_mib"] == 8192
