"""Roles scoped to host groups hold for campaigns as for plans (issue 18): a person scoped
to group A cannot create, see or approve a campaign over group-B hosts, and four eyes
counts people (another account of the author may not approve)."""

import pytest

from dashboard.accounts.models import RoleGrant
from migrations_app.campaigns.services import campaign_approve, campaign_create, campaign_submit
from migrations_app.errors import PlanError
from migrations_app.models import Campaign
from migrations_app.workflow.services import WorkflowForbidden
from tests.factories import host_make

pytestmark = pytest.mark.django_db


def scoped(make_user, name, role, group):
    user = make_user(name)
    RoleGrant.objects.create(user=user, role=role, host_group=group)
    return user


def test_a_scoped_planner_and_approver_stay_inside_their_groups(make_user, people, api_as):
    a = host_make("camp-a1")
    b = host_make("camp-b1")
    a.group, b.group = "site-a", "site-b"
    a.save(update_fields=["group"])
    b.save(update_fields=["group"])
    planner_a = scoped(make_user, "pa", "planner", "site-a")
    with pytest.raises(PlanError, match="Unknown host"):
        campaign_create(actor=planner_a, name="b rolling", hosts=[b.pk])
    assert not Campaign.objects.exists()
    mine = campaign_create(actor=planner_a, name="a rolling", hosts=[a.pk])
    theirs = campaign_create(actor=people["planner"], name="b rolling", hosts=[b.pk])
    campaign_submit(campaign=theirs, actor=people["planner"])
    approver_a = scoped(make_user, "aa", "approver", "site-a")
    with pytest.raises(WorkflowForbidden, match="site-b"):
        campaign_approve(campaign=theirs, actor=approver_a)
    theirs.refresh_from_db()
    assert theirs.status == "submitted"
    client = api_as()
    client.force_authenticate(planner_a)
    listed = client.get("/api/v1/campaigns/").json()
    rows = listed["results"] if isinstance(listed, dict) else listed
    assert [r["id"] for r in rows] == [mine.pk]
    assert client.get(f"/api/v1/campaigns/{theirs.pk}/").status_code == 404
