"""Plans over the real lab: validation through the API gives the verdicts a planner
expects from the real hosts' capabilities, pools and networks; placement explains."""

import pytest

pytest.importorskip("libvirt")

from inventory.models import Host, VirtualMachine  # noqa: E402

# The lab execution tests own the fixtures that register the lab hosts in Ferry.
from tests.lab.test_execution_lab import ferry, sync  # noqa: E402,F401,F811

pytestmark = [pytest.mark.lab, pytest.mark.django_db(transaction=True)]


def verdicts(body, vm_name):
    """{check id: severity} of one VM in a validation answer."""
    rows = [r for r in body["results"] if r.get("vm_name") == vm_name]
    return {r["check_id"]: r["severity"] for r in rows}, rows


def test_it_validates_a_lab_plan_through_the_api_with_the_expected_verdicts(ferry, guest, api_as):  # noqa: F811
    shared = guest("lab-a", memory_mib=256, pool="shared")
    local = guest("lab-a", memory_mib=256, pool="local")
    sync(ferry)
    planner = api_as("planner", username="plan-lab")
    lab_a, lab_b = Host.objects.get(name="lab-a"), Host.objects.get(name="lab-b")
    assert lab_a.hostname != lab_b.hostname and lab_a.cpu_xml and lab_a.machine_types

    plan = planner.post(
        "/api/v1/plans/", {"name": "lab evacuation", "change_ticket": "CHG-LAB"}, format="json"
    )
    assert plan.status_code == 201, plan.content
    plan_id = plan.json()["id"]
    vms = {n: VirtualMachine.objects.get(name=n) for n in (shared, local)}
    # bad input: destination equal to the source
    same = planner.post(
        f"/api/v1/plans/{plan_id}/items/",
        {"vms": [vms[shared].pk], "destination": lab_a.pk},
        format="json",
    )
    assert same.status_code == 400 and "current host" in same.content.decode()
    added = planner.post(
        f"/api/v1/plans/{plan_id}/items/",
        {"vms": [vms[shared].pk, vms[local].pk], "destination": lab_b.pk},
        format="json",
    )
    assert added.status_code in (200, 201), added.content

    body = planner.post(f"/api/v1/plans/{plan_id}/validate/", {}, format="json").json()
    shared_v, rows = verdicts(body, shared)
    print("\nverdicts of the shared-pool guest:", shared_v)
    # real capabilities: same hypervisor, versions, machine type and CPU on both hosts
    for check in (
        "host.distinct",
        "host.state",
        "hypervisor.type",
        "hypervisor.version",
        "machine.type",
        "cpu.compat",
        "capacity.memory",
        "network.attached",
    ):
        assert shared_v.get(check) in ("ok", "info"), [r for r in rows if r["check_id"] == check]
    # the shared pool is reachable from lab-b: no copy needed
    assert shared_v["storage.shared"] in ("ok", "info", "warning")
    # the local-pool guest needs a storage copy, which a plain live item does not allow
    local_v, _ = verdicts(body, local)
    assert local_v["storage.shared"] == "blocker"
    assert body["blockers"] >= 1

    # switching that item to "live with storage copy" clears the blocker
    items = planner.get(f"/api/v1/plans/{plan_id}/items/").json()
    rows = items["results"] if isinstance(items, dict) else items
    local_item = next(i for i in rows if i["vm"] == vms[local].pk or i.get("vm_name") == local)
    changed = planner.patch(
        f"/api/v1/plans/{plan_id}/items/{local_item['id']}/", {"mode": "live_copy"}, format="json"
    )
    assert changed.status_code == 200, changed.content
    body = planner.post(f"/api/v1/plans/{plan_id}/validate/", {}, format="json").json()
    local_v, rows = verdicts(body, local)
    assert local_v["storage.shared"] != "blocker", [
        r for r in rows if r["check_id"] == "storage.shared"
    ]
    assert local_v["storage.capacity"] in ("ok", "info"), local_v


def test_it_places_an_evacuation_of_a_lab_host_and_explains(ferry, guest, api_as):  # noqa: F811
    names = [guest("lab-a", memory_mib=256) for _ in range(2)]
    sync(ferry)
    planner = api_as("planner", username="plan-evac")
    plan_id = planner.post("/api/v1/plans/", {"name": "evacuate lab-a"}, format="json").json()["id"]
    lab_a = Host.objects.get(name="lab-a")
    answer = planner.post(f"/api/v1/plans/{plan_id}/evacuate/", {"host": lab_a.pk}, format="json")
    assert answer.status_code == 200, answer.content
    items = planner.get(f"/api/v1/plans/{plan_id}/items/").json()
    rows = items["results"] if isinstance(items, dict) else items
    ours = [
        i
        for i in rows
        if i.get("vm_name") in names or VirtualMachine.objects.get(pk=i["vm"]).name in names
    ]
    assert len(ours) == 2
    for item in ours:
        assert item["destination_host"] == Host.objects.get(name="lab-b").pk
        assert item["placement_note"]
