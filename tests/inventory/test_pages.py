"""Inventory pages render for signed-in users and send anonymous ones to the login page."""

import pytest

from inventory.models import VirtualMachine
from inventory.services import host_add
from inventory.sync import host_sync

pytestmark = pytest.mark.django_db


@pytest.fixture
def signed_in(client, make_user):
    client.force_login(make_user("viewer1", "viewer"))
    return client


def test_it_sends_anonymous_visitors_to_login(client):
    response = client.get("/")
    assert response.status_code == 302 and "/login/" in response["Location"]
    assert client.get("/login/").status_code == 200


def test_it_renders_the_overview_with_the_memory_chart(signed_in, demo_uri):
    host_sync(host=host_add(name="kvm-a1", uri=demo_uri("kvm-a1"), actor=None))
    page = signed_in.get("/").content.decode()
    assert "memory-chart-data" in page and "kvm-a1" in page
    assert "/static/vendor/plotly.min.js" in page
    assert "<script>" not in page  # data travels in JSON blocks, no inline code


def test_it_renders_host_and_vm_pages(signed_in, demo_uri):
    host = host_add(name="kvm-a1", uri=demo_uri("kvm-a1"), actor=None)
    host_sync(host=host)
    assert "kvm-a1" in signed_in.get("/inventory/hosts/").content.decode()
    detail = signed_in.get(f"/inventory/hosts/{host.pk}/").content.decode()
    assert "nfs-vms" in detail and "prod" in detail
    assert "Sync now" not in detail  # viewers cannot sync
    vm = VirtualMachine.objects.first()
    assert vm.name in signed_in.get(f"/inventory/vms/{vm.pk}/").content.decode()


def test_it_lets_a_planner_queue_a_sync_from_the_host_page(client, make_user):
    client.force_login(make_user("p1", "planner"))
    host = host_add(name="t1", uri="test:///default", actor=None)
    assert "Sync now" in client.get(f"/inventory/hosts/{host.pk}/").content.decode()
    response = client.post(f"/inventory/hosts/{host.pk}/sync/")
    assert response.status_code == 302
    host.refresh_from_db()
    assert host.last_sync_task_id


def test_it_forbids_a_viewer_to_sync_from_the_page(signed_in):
    host = host_add(name="t1", uri="test:///default", actor=None)
    assert signed_in.post(f"/inventory/hosts/{host.pk}/sync/").status_code == 403
