"""Host.vm_count is kept by the sync and by vm_record_move (issue 19, W2)."""

import uuid

import pytest

from inventory.counts import hosts_vm_count_refresh
from inventory.models import Host, VirtualMachine
from inventory.services import host_add, vm_record_move
from inventory.sync import host_sync

pytestmark = pytest.mark.django_db


def test_it_counts_a_hosts_vms_when_the_sync_records_them(demo_uri):
    host = host_add(name="kvm-a1", uri=demo_uri("kvm-a1"), actor=None)
    host_sync(host=host)
    host.refresh_from_db()
    assert host.vm_count == VirtualMachine.objects.filter(host=host).count() > 0


def test_it_moves_the_count_with_the_vm_when_a_move_is_recorded(demo_uri):
    a = host_add(name="kvm-a1", uri=demo_uri("kvm-a1"), actor=None)
    b = host_add(name="kvm-a2", uri=demo_uri("kvm-a2"), actor=None)
    host_sync(host=a)
    host_sync(host=b)
    a.refresh_from_db()
    b.refresh_from_db()
    before_a, before_b = a.vm_count, b.vm_count
    vm = VirtualMachine.objects.filter(host=a).first()
    vm_record_move(vm=vm, host=b, disk_pools={}, actor=None, reason="test")
    a.refresh_from_db()
    b.refresh_from_db()
    assert (a.vm_count, b.vm_count) == (before_a - 1, before_b + 1)


def test_it_recounts_every_host_and_ignores_an_empty_selection():
    host = Host.objects.create(name="h", uri="test:///h", transport="test")
    VirtualMachine.objects.create(uuid=uuid.uuid4(), name="v", host=host, memory_mib=1, vcpus=1)
    assert hosts_vm_count_refresh([None]) == 0
    host.refresh_from_db()
    assert host.vm_count == 0  # bulk rows are not counted until a refresh
    assert hosts_vm_count_refresh() == 1
    host.refresh_from_db()
    assert host.vm_count == 1
