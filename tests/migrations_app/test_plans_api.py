"""The plan API over the demo inventory: verdicts, evacuation, bad input, permissions,
the return-to-draft contract, and pinned query counts."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from dashboard.audit.models import AuditEvent
from migrations_app.models import Approval, CheckResult, MigrationPlan, PlanItem

pytestmark = pytest.mark.django_db


def new_plan(client, **extra) -> dict:
    response = client.post("/api/v1/plans/", {"name": "maintenance a1", **extra}, format="json")
    assert response.status_code == 201, response.content
    return response.json()


def verdicts(run: dict) -> dict:
    """{vm: {check id: severity}} of a validation run."""
    out: dict = {}
    for result in run["results"]:
        out.setdefault(result["vm_name"], {})[result["check_id"]] = result["severity"]
    return out


def set_free_memory(**free_mib):
    """Pin hosts' free memory (the demo node files may change; these tests need numbers)."""
    from inventory.models import Host

    for name, value in free_mib.items():
        Host.objects.filter(name=name.replace("_", "-")).update(memory_free_mib=value)


def test_it_validates_a_plan_over_two_hosts_with_the_expected_verdicts(api_as, demo, vm_id):
    client = api_as("planner")
    set_free_memory(kvm_a3=60000)  # room for 52 GiB of the first four, not batch's 64
    plan = new_plan(client, window_start="2030-01-05T22:00:00Z", window_end="2030-01-06T02:00Z")
    names = ["api-a1-07", "web-a1-06", "db-a1-02", "api-a1-01", "batch-a1-04"]
    response = client.post(
        f"/api/v1/plans/{plan['id']}/items/",
        {"vms": [vm_id(n) for n in names], "destination": demo["kvm-a3"].pk},
        format="json",
    )
    assert response.status_code == 201, response.content
    assert [i["vm_name"] for i in response.json()] == names
    response = client.post(f"/api/v1/plans/{plan['id']}/validate/")
    assert response.status_code == 201, response.content
    run = response.json()
    got = verdicts(run)
    assert set(got["api-a1-07"].values()) <= {"ok", "info"}  # shared NFS, host-model fits
    assert got["web-a1-06"]["cpu.compat"] == "ok"  # Skylake custom on Cascadelake
    assert got["db-a1-02"]["affinity"] == "blocker"  # db-a3-02 lives on kvm-a3
    assert got["db-a1-02"]["storage.devices"] == "warning"  # local ISO in the CD-ROM
    assert got["api-a1-01"]["storage.shared"] == "blocker"  # local disk, mode live
    assert got["batch-a1-04"]["capacity.memory"] == "blocker"  # 64 GiB after 52 GiB sent
    assert got["api-a1-07"]["window"] == "ok"
    assert run["blockers"] == 3 and not run["passed"]
    assert run["estimate"]["makespan_s"] > 0 and len(run["estimate"]["items"]) == 5
    assert CheckResult.objects.filter(run_id=run["id"]).count() == 5 * 22
    latest = client.get(f"/api/v1/plans/{plan['id']}/validations/latest/?severity=blocker")
    assert latest.status_code == 200
    assert {r["severity"] for r in latest.json()["results"]} == {"blocker"}
    assert AuditEvent.objects.filter(action="plan.validated").count() == 1


def test_it_validates_cross_site_moves_with_cpu_storage_and_network_blockers(api_as, demo, vm_id):
    client = api_as("planner")
    plan = new_plan(client)
    client.post(
        f"/api/v1/plans/{plan['id']}/items/",
        {"vms": [vm_id("db-a1-02"), vm_id("cache-a1-03")], "destination": demo["kvm-b1"].pk},
        format="json",
    )
    got = verdicts(client.post(f"/api/v1/plans/{plan['id']}/validate/").json())
    assert got["cache-a1-03"]["cpu.compat"] == "blocker"  # Skylake-Server on EPYC-Milan
    assert got["cache-a1-03"]["storage.shared"] == "blocker"  # NFS not mounted at site b
    assert got["db-a1-02"]["network.attached"] == "blocker"  # no 'backup' on kvm-b1


def test_it_evacuates_a_host_placing_what_fits_and_explaining_the_rest(api_as, demo):
    client = api_as("planner")
    set_free_memory(kvm_a2=0, kvm_a3=53248)
    plan = new_plan(client)
    response = client.post(
        f"/api/v1/plans/{plan['id']}/evacuate/", {"host": "kvm-a1"}, format="json"
    )
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["added"] == 7 and body["placed"] + len(body["unplaced"]) == 7
    items = PlanItem.objects.filter(plan_id=plan["id"]).select_related("vm", "destination_host")
    for item in items:
        if item.destination_host is None:
            assert item.placement_note["reason"].startswith("No host passes")
            assert item.placement_note["rejected"]
        else:
            assert item.destination_host.name != "kvm-a1"
            assert item.placement_note["chosen"] == item.destination_host.name
    local = items.get(vm__name="api-a1-01")
    assert local.mode == "live_copy"  # its disk is on kvm-a1's local pool
    unplaced = {i.vm.name: i.placement_note for i in items if i.destination_host is None}
    assert "affinity" in unplaced["db-a1-02"]["rejected"]
    assert "capacity.memory" in unplaced["batch-a1-04"]["rejected"]
    run = client.post(f"/api/v1/plans/{plan['id']}/validate/").json()
    placed_blockers = [
        r for r in run["results"] if r["severity"] == "blocker" and r["vm_name"] not in unplaced
    ]
    assert placed_blockers == []  # what placement chose passes validation


def test_it_places_items_and_moves_vms_to_a_group(api_as, demo, vm_id):
    client = api_as("planner")
    plan = new_plan(client)
    client.post(f"/api/v1/plans/{plan['id']}/items/", {"vms": [vm_id("web-b2-06")]}, format="json")
    body = client.post(f"/api/v1/plans/{plan['id']}/place/", {}, format="json").json()
    assert body["placed"] == 1 and body["items"][0]["note"]["chosen"] == "kvm-b1"
    response = client.post(
        f"/api/v1/plans/{plan['id']}/move-to-group/",
        {"vms": [vm_id("ci-b1-05")], "group": "site-a"},
        format="json",
    )
    assert response.status_code == 200, response.content
    assert response.json()["unplaced"]  # ceph is not reachable from site a: explained
    response = client.post(
        f"/api/v1/plans/{plan['id']}/move-to-group/",
        {"vms": [vm_id("ci-b1-05")], "group": "nowhere"},
        format="json",
    )
    assert (
        response.status_code == 400 and "Known groups: site-a, site-b" in response.json()["detail"]
    )


def test_it_estimates_with_labelled_inputs_and_a_timeline(api_as, demo, vm_id):
    client = api_as("planner")
    plan = new_plan(client, policy={"max_concurrent": 1})
    client.post(
        f"/api/v1/plans/{plan['id']}/items/",
        {"vms": [vm_id("api-a1-07"), vm_id("web-a1-06")], "destination": demo["kvm-a3"].pk},
        format="json",
    )
    body = client.get(f"/api/v1/plans/{plan['id']}/estimate/").json()
    first, second = body["items"]
    assert first["dirty_rate_source"] == "assumed" and first["bandwidth_source"]
    assert second["start_s"] == first["end_s"]  # one at a time
    assert body["makespan_s"] == second["end_s"]


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (
            {"name": "x", "window_start": "2030-01-02T00:00Z", "window_end": "2030-01-01T00:00Z"},
            "ends",
        ),
        ({"name": "x", "policy": {"on_no_convergence": "pray"}}, "policy.on_no_convergence"),
        ({"name": "x", "policy": {"speed": 3}}, "Unknown policy field(s): speed"),
        ({"name": "x", "policy": {"max_concurrent": "many"}}, "policy.max_concurrent"),
        ({"name": ""}, "name"),
        ({"name": "x", "window_start": "not a date"}, "window_start"),
    ],
)
def test_it_refuses_bad_plan_input_with_a_clear_message(api_as, db, payload, message):
    response = api_as("planner").post("/api/v1/plans/", payload, format="json")
    assert response.status_code == 400, response.content
    assert message in response.json()["detail"]
    assert not MigrationPlan.objects.exists()


def test_it_refuses_bad_item_input_with_a_clear_message(api_as, demo, vm_id):
    client = api_as("planner")
    plan = new_plan(client)
    url = f"/api/v1/plans/{plan['id']}/items/"
    cases = [
        ({"vms": [999999]}, "Unknown VM id(s): 999999"),
        ({"vms": [vm_id("api-a1-07")], "destination": demo["kvm-a1"].pk}, "current host"),
        ({"vms": [vm_id("api-a1-07")], "destination": 999999}, "Unknown host id 999999"),
        ({"vms": [vm_id("api-a1-07")], "mode": "teleport"}, "not a migration mode"),
        ({"vms": "all"}, "vms"),
        ({}, "vms"),
    ]
    for payload, message in cases:
        response = client.post(url, payload, format="json")
        assert response.status_code == 400, (payload, response.content)
        assert message in response.json()["detail"], (payload, response.json())
    assert not PlanItem.objects.exists()
    client.post(url, {"vms": [vm_id("api-a1-07")]}, format="json")
    other = new_plan(client)
    response = client.post(
        f"/api/v1/plans/{other['id']}/items/", {"vms": [vm_id("api-a1-07")]}, format="json"
    )
    assert response.status_code == 400 and "another open plan" in response.json()["detail"]
    item = PlanItem.objects.get(plan_id=plan["id"])
    item_url = f"{url}{item.pk}/"
    for payload, message in [
        ({"destination": demo["kvm-a1"].pk}, "current host"),
        ({"policy_overrides": {"max_downtime_ms": 1}}, "policy.max_downtime_ms"),
        ({"storage_map": {"12345": 1}}, "Unknown storage pool id 12345"),
        ({"network_map": {"prod": "nope"}}, "Unknown network 'nope'"),
    ]:
        response = client.patch(item_url, payload, format="json")
        assert response.status_code == 400, (payload, response.content)
        assert message in response.json()["detail"]
    assert client.patch(f"{url}999999/", {}, format="json").status_code == 404


def test_it_answers_409_for_edits_of_a_finished_plan(api_as, demo, vm_id):
    client = api_as("planner")
    plan = new_plan(client)
    MigrationPlan.objects.filter(pk=plan["id"]).update(status="completed")
    url = f"/api/v1/plans/{plan['id']}/"
    for response in (
        client.patch(url, {"name": "renamed"}, format="json"),
        client.post(f"{url}items/", {"vms": [vm_id("api-a1-07")]}, format="json"),
        client.post(f"{url}place/", {}, format="json"),
        client.delete(url),
    ):
        assert response.status_code == 409, response.content
        assert "Completed" in response.json()["detail"] or "completed" in response.json()["detail"]


def test_it_returns_an_approved_plan_to_draft_and_voids_its_approvals_on_edit(api_as, demo, vm_id):
    client = api_as("planner")
    plan = new_plan(client)
    client.post(f"/api/v1/plans/{plan['id']}/items/", {"vms": [vm_id("api-a1-07")]}, format="json")
    MigrationPlan.objects.filter(pk=plan["id"]).update(status="approved", content_hash="abc")
    approval = Approval.objects.create(
        plan_id=plan["id"], approver_name="ann", decision="approved", content_hash="abc"
    )
    before = MigrationPlan.objects.get(pk=plan["id"]).version
    item = PlanItem.objects.get(plan_id=plan["id"])
    response = client.patch(
        f"/api/v1/plans/{plan['id']}/items/{item.pk}/",
        {"destination": demo["kvm-a3"].pk},
        format="json",
    )
    assert response.status_code == 200, response.content
    fresh = MigrationPlan.objects.get(pk=plan["id"])
    assert fresh.status == "draft" and fresh.content_hash == "" and fresh.version == before + 1
    approval.refresh_from_db()
    assert approval.voided_at is not None and "content edited" in approval.void_reason
    assert AuditEvent.objects.filter(action="plan.returned_to_draft").count() == 1
    # The name is content too (what the approvers read, L1): it returns the plan to draft.
    MigrationPlan.objects.filter(pk=plan["id"]).update(status="submitted")
    client.patch(f"/api/v1/plans/{plan['id']}/", {"name": "renamed"}, format="json")
    assert MigrationPlan.objects.get(pk=plan["id"]).status == "draft"


def test_it_lets_viewers_read_but_not_write(api_as, demo):
    planner = api_as("planner")
    plan = new_plan(planner)
    viewer = api_as("viewer")
    assert viewer.get(f"/api/v1/plans/{plan['id']}/").status_code == 200
    assert viewer.get(f"/api/v1/plans/{plan['id']}/estimate/").status_code == 200
    assert viewer.post("/api/v1/plans/", {"name": "x"}, format="json").status_code == 403
    assert viewer.post(f"/api/v1/plans/{plan['id']}/validate/").status_code == 403
    assert viewer.post(f"/api/v1/plans/{plan['id']}/place/", {}, format="json").status_code == 403


def test_it_removes_items_and_deletes_drafts(api_as, demo, vm_id):
    client = api_as("planner")
    plan = new_plan(client)
    client.post(f"/api/v1/plans/{plan['id']}/items/", {"vms": [vm_id("api-a1-07")]}, format="json")
    item = PlanItem.objects.get(plan_id=plan["id"])
    assert client.delete(f"/api/v1/plans/{plan['id']}/items/{item.pk}/").status_code == 204
    assert not PlanItem.objects.exists()
    assert client.delete(f"/api/v1/plans/{plan['id']}/").status_code == 204
    assert not MigrationPlan.objects.exists()


def _count(client, url) -> int:
    with CaptureQueriesContext(connection) as queries:
        assert client.get(url).status_code == 200
    return len(queries)


def test_it_pins_the_query_counts_of_the_plan_and_item_lists(
    api_as, demo, vm_id, django_assert_num_queries
):
    client = api_as("planner")
    plan = new_plan(client)
    client.get("/api/v1/plans/")  # warm the user's role cache path
    baseline = _count(client, "/api/v1/plans/")
    for n in range(4):
        new_plan(client, name=f"p{n}")
    client.post(
        f"/api/v1/plans/{plan['id']}/items/",
        {"vms": [vm_id("api-a1-07"), vm_id("web-a1-06"), vm_id("db-a1-02")]},
        format="json",
    )
    # roles (1) + count (1) + page (1): constant however many plans and items there are
    with django_assert_num_queries(baseline):
        client.get("/api/v1/plans/")
    with django_assert_num_queries(baseline + 1):  # + the plan itself
        client.get(f"/api/v1/plans/{plan['id']}/items/")
