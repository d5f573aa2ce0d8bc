"""Plan pages: list, editor with add-by-filter, evacuation, placement notes, results by
severity and the Gantt data; refused input shows a message, never an error page."""

import json
import re

import pytest
from django.test import Client

from migrations_app.models import MigrationPlan, PlanItem
from migrations_app.services.plans import plan_create

pytestmark = pytest.mark.django_db


@pytest.fixture
def planner_client(make_user):
    user = make_user("pat", "planner")
    client = Client()
    client.force_login(user)
    client.user = user
    return client


def test_it_creates_a_plan_from_the_list_page_and_refuses_a_bad_window(planner_client):
    assert planner_client.get("/plans/").status_code == 200
    response = planner_client.post(
        "/plans/new/",
        {"name": "Night", "window_start": "2030-01-02T03:00", "window_end": "2030-01-02T01:00"},
        follow=True,
    )
    assert response.status_code == 200
    assert "before it starts" in response.content.decode()
    assert not MigrationPlan.objects.exists()
    response = planner_client.post(
        "/plans/new/", {"name": "Night", "policy_on_no_convergence": "postcopy"}
    )
    plan = MigrationPlan.objects.get()
    assert response.status_code == 302 and plan.policy == {"on_no_convergence": "postcopy"}


def test_it_edits_a_plan_through_the_page_and_shows_checks_and_the_gantt(planner_client, demo):
    plan = plan_create(actor=planner_client.user, name="evacuate a1")
    page = planner_client.get(f"/plans/{plan.pk}/", {"tag": "db"}).content.decode()
    assert "db-a1-02" in page and "db-b2-02" in page  # add-by-filter candidates
    a1 = demo["kvm-a1"]
    response = planner_client.post(f"/plans/{plan.pk}/evacuate/", {"host": a1.pk}, follow=True)
    assert "Evacuating kvm-a1: 7 VM(s) added" in response.content.decode()
    planner_client.post(f"/plans/{plan.pk}/validate/")
    response = planner_client.get(f"/plans/{plan.pk}/")
    page = response.content.decode()
    assert "Warnings" in page and "Remedy:" in page
    assert "hosts rejected per check" in page or "most memory left" in page
    assert 'data-chart="plan-gantt"' in page
    for tag in re.findall(r"<script[^>]*>", page):  # no inline code: strict CSP
        assert "src=" in tag or 'type="application/json"' in tag, tag
    start = page.index('id="plan-gantt-data"')
    data = json.loads(page[page.index(">", start) + 1 : page.index("</script>", start)])
    assert len(data["items"]) == 7 and data["makespan_s"] > 0
    # each item's time is an interval, with where its inputs come from
    assert "move time (interval)" in page and "first move" in page
    assert "no moves measured between these hosts" in page


def test_it_shows_service_refusals_as_messages(planner_client, demo):
    plan = plan_create(actor=planner_client.user, name="p")
    vm = demo["kvm-a1"].vms.first()
    response = planner_client.post(
        f"/plans/{plan.pk}/add/", {"vms": [vm.pk], "destination": demo["kvm-a1"].pk}, follow=True
    )
    assert response.status_code == 200 and "current host" in response.content.decode()
    response = planner_client.post(f"/plans/{plan.pk}/add/", {"vms": ["x"]}, follow=True)
    assert response.status_code == 200 and "must be a number" in response.content.decode()
    planner_client.post(f"/plans/{plan.pk}/add/", {"vms": [vm.pk]})
    item = PlanItem.objects.get()
    response = planner_client.post(
        f"/plans/{plan.pk}/items/{item.pk}/",
        {"destination": demo["kvm-a3"].pk, "mode": "nope"},
        follow=True,
    )
    assert "not a migration mode" in response.content.decode()
    planner_client.post(f"/plans/{plan.pk}/items/{item.pk}/remove/")
    assert not PlanItem.objects.exists()


def test_it_refuses_page_edits_to_viewers(make_user, demo):
    plan = plan_create(actor=None, name="p")
    viewer = Client()
    viewer.force_login(make_user("vic", "viewer"))
    assert viewer.get(f"/plans/{plan.pk}/").status_code == 200
    assert viewer.post(f"/plans/{plan.pk}/validate/").status_code == 403


def test_a_submitted_plan_shows_the_estimate_its_validation_made(planner_client):
    """Once validated, the page shows the validation's estimate (the one approvers saw), not
    a fresh one over an inventory that has changed since (and that the run changes)."""
    from migrations_app.workflow.services import plan_submit
    from tests.factories import plan_make, plan_validate_stub

    plan = plan_make(author=planner_client.user, items=2)

    def gantt_makespan():
        page = planner_client.get(f"/plans/{plan.pk}/").content.decode()
        start = page.index('id="plan-gantt-data"')
        data = json.loads(page[page.index(">", start) + 1 : page.index("</script>", start)])
        return data["makespan_s"], page

    fresh, page = gantt_makespan()  # not validated: estimated now
    assert fresh > 0 and "as estimated by the latest validation" not in page
    plan_validate_stub(plan)  # stores makespan 120 s
    plan_submit(plan=plan, actor=planner_client.user)
    makespan, page = gantt_makespan()
    assert makespan == 120 and "as estimated by the latest validation" in page
