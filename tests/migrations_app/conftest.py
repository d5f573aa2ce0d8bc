"""The demo inventory (libvirt test-driver hosts) synced through the real sync path."""

import pytest

from inventory.models import Host, VirtualMachine
from inventory.services import host_add
from inventory.sync import host_sync

DEMO_HOSTS = {
    "kvm-a1": "site-a",
    "kvm-a2": "site-a",
    "kvm-a3": "site-a",
    "kvm-b1": "site-b",
    "kvm-b2": "site-b",
}


@pytest.fixture
def demo(db, demo_uri):
    """All five demo hosts, synced; returns {name: Host}."""
    for name, group in DEMO_HOSTS.items():
        host_sync(host=host_add(name=name, uri=demo_uri(name), actor=None, group=group))
    return {h.name: h for h in Host.objects.all()}


@pytest.fixture
def vm_id():
    def _vm(name: str) -> int:
        return VirtualMachine.objects.get(name=name).pk

    return _vm
