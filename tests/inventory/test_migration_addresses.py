"""A host's migration addresses: the peer address (libvirtd to libvirtd) and the migration
network address (QEMU's data stream). Admins set them; bad values are a clear 400 and
change nothing; every change is audited; sync never overwrites what an admin set."""

import pytest

from dashboard.audit.models import AuditEvent
from inventory.models import Host
from inventory.services import host_add
from inventory.sync import host_sync

pytestmark = pytest.mark.django_db


@pytest.fixture
def host(demo_uri):
    return host_add(name="kvm-a1", uri=demo_uri("kvm-a1"), actor=None)


def test_it_sets_and_audits_a_migration_network_address(api_as, host):
    admin = api_as("admin")
    answer = admin.patch(
        f"/api/v1/hosts/{host.pk}/",
        {"migration_network_address": " 10.78.0.2 ", "migration_address": "KVM-A1.example."},
        format="json",
    )
    assert answer.status_code == 200, answer.content
    assert answer.json()["migration_network_address"] == "10.78.0.2"
    assert answer.json()["migration_address"] == "kvm-a1.example"
    event = AuditEvent.objects.filter(action="host.updated", object_id=str(host.pk)).latest("id")
    assert event.before["migration_network_address"] == ""
    assert event.after["migration_network_address"] == "10.78.0.2"
    # normal IPv6 form; empty clears
    answer = admin.patch(
        f"/api/v1/hosts/{host.pk}/", {"migration_network_address": "FD00:0::2"}, format="json"
    )
    assert answer.json()["migration_network_address"] == "fd00::2"
    answer = admin.patch(
        f"/api/v1/hosts/{host.pk}/", {"migration_network_address": ""}, format="json"
    )
    assert answer.json()["migration_network_address"] == ""


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("tcp://10.78.0.2", "neither an IP address nor a host name"),
        ("10.78.0.2:49152", "neither an IP address nor a host name"),
        ("127.0.0.1", "loopback"),
        ("0.0.0.0", "unspecified"),  # noqa: S104 - refused, never bound
        ("fe80::1", "link-local"),
        ("localhost", "localhost"),
        ("bad_name.example", "neither"),
        ("-lead.example", "neither"),
        ("300.1.1.1", "neither"),
        ("a" * 254, "253"),
    ],
)
def test_it_refuses_what_is_not_an_address_other_hosts_can_reach(api_as, host, value, fragment):
    answer = api_as("admin").patch(
        f"/api/v1/hosts/{host.pk}/", {"migration_network_address": value}, format="json"
    )
    assert answer.status_code == 400
    assert fragment in str(answer.json())
    assert Host.objects.get(pk=host.pk).migration_network_address == ""


def test_it_lets_only_admins_set_where_hypervisors_connect(api_as, host):
    planner = api_as("planner")
    answer = planner.patch(
        f"/api/v1/hosts/{host.pk}/", {"migration_network_address": "10.78.0.2"}, format="json"
    )
    assert answer.status_code == 403
    assert Host.objects.get(pk=host.pk).migration_network_address == ""
    # the planner's other host edits still work
    answer = planner.patch(f"/api/v1/hosts/{host.pk}/", {"group": "g"}, format="json")
    assert answer.status_code == 200


def test_a_sync_keeps_the_addresses_an_admin_set(api_as, host):
    api_as("admin").patch(
        f"/api/v1/hosts/{host.pk}/",
        {"migration_network_address": "10.78.0.1", "migration_address": "10.77.0.1"},
        format="json",
    )
    assert host_sync(host=Host.objects.get(pk=host.pk)).ok
    row = Host.objects.get(pk=host.pk)
    assert (row.migration_address, row.migration_network_address) == ("10.77.0.1", "10.78.0.1")
