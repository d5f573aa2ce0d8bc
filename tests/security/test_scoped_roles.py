"""Roles scoped to host groups (issue 18): a planner, approver or operator scoped to site-a
never sees, includes, approves or runs anything of site-b, whatever path they take, and
every audited action records the scope it was taken under."""

import uuid

import pytest
from django.core.exceptions import PermissionDenied
from rest_framework.test import APIClient

from dashboard.accounts.roles import user_roles_get, user_roles_set
from dashboard.audit.models import AuditEvent
from dashboard.permissions import scope_of
from inventory.models import Host, VirtualMachine
from migrations_app.errors import PlanError
from migrations_app.live.consumers import DashboardConsumer, PlanConsumer
from migrations_app.models import MigrationPlan, PlanItem
from migrations_app.services.plans import plan_add_vms, plan_create, plan_evacuate_host
from migrations_app.workflow import services as workflow
from tests.factories import plan_make, plan_validate_stub

pytestmark = pytest.mark.django_db


def _host(name, group, free=64000):
    return Host.objects.create(
        name=name,
        uri=f"test:///{name}",
        transport="test",
        group=group,
        memory_total_mib=free,
        memory_free_mib=free,
        cpus=32,
        arch="x86_64",
    )


def _vm(name, host):
    return VirtualMachine.objects.create(
        uuid=uuid.uuid4(), name=name, host=host, memory_mib=1024, vcpus=1, state="running"
    )


@pytest.fixture
def sites(people, make_user):
    admin = people["admin"]
    a1, a2 = _host("a1", "site-a"), _host("a2", "site-a", free=8000)
    b1 = _host("b1", "site-b", free=500000)  # the roomiest host: placement would pick it
    users = {}
    for name, roles in {
        "plan-a": {"planner": ["site-a"]},
        "appr-a": {"approver": ["site-a"]},
        "appr-ab": {"approver": ["site-a", "site-b"]},
        "op-a": {"operator": ["site-a"]},
    }.items():
        users[name] = make_user(name)
        user_roles_set(actor=admin, user=users[name], roles=roles)
    return {"a1": a1, "a2": a2, "b1": b1, "users": users, "admin": admin}


def fresh(plan):
    return MigrationPlan.objects.get(pk=plan.pk)


def test_it_reads_scope_from_grants_and_groups(sites, people):
    planner = sites["users"]["plan-a"]
    assert scope_of(planner, "plan.edit") == frozenset({"site-a"})
    assert scope_of(planner, "plan.approve") == frozenset()
    assert scope_of(people["planner"], "plan.edit") is None  # the Django group: every host
    assert user_roles_get(planner) == {"planner": ["site-a"]}


def test_it_refuses_vms_and_destinations_outside_the_planners_groups(sites):
    planner = sites["users"]["plan-a"]
    plan = plan_create(actor=planner, name="scoped")
    b_vm = _vm("b-vm", sites["b1"])
    events = AuditEvent.objects.count()
    with pytest.raises(PlanError, match=f"Unknown VM id\\(s\\): {b_vm.pk}"):
        plan_add_vms(plan=plan, vms=[b_vm.pk], actor=planner)
    a_vm = _vm("a-vm", sites["a1"])
    with pytest.raises(PlanError, match="Unknown host"):
        plan_add_vms(plan=plan, vms=[a_vm.pk], destination=sites["b1"].pk, actor=planner)
    assert not PlanItem.objects.filter(plan=plan).exists()
    assert AuditEvent.objects.count() == events  # nothing half-written, nothing audited
    plan_add_vms(plan=plan, vms=[a_vm.pk], destination=sites["a2"].pk, actor=planner)
    event = AuditEvent.objects.filter(action="plan.items_added").latest("sequence")
    assert event.after["scope"] == ["site-a"]


def test_it_evacuates_only_inside_the_planners_groups(sites):
    planner = sites["users"]["plan-a"]
    plan = plan_create(actor=planner, name="evacuate-a1")
    _vm("a-vm-1", sites["a1"])
    _vm("a-vm-2", sites["a1"])
    result = plan_evacuate_host(plan=plan, host=sites["a1"].pk, actor=planner)
    destinations = set(
        PlanItem.objects.filter(plan=plan).values_list("destination_host", flat=True)
    )
    # b1 has the most room, but the planner's role does not reach site-b.
    assert destinations == {sites["a2"].pk}, result
    assert result["scope"] == ["site-a"]
    with pytest.raises(PlanError, match="Unknown host"):
        plan_evacuate_host(plan=plan, host=sites["b1"].pk, actor=planner)


def test_it_refuses_an_approver_whose_scope_misses_a_group_the_plan_touches(sites, people):
    plan = plan_make(people["planner"])
    item = plan.items.get()
    Host.objects.filter(pk=item.source_host_id).update(group="site-a")
    Host.objects.filter(pk=item.destination_host_id).update(group="site-b")
    plan_validate_stub(plan)
    workflow.plan_submit(plan=fresh(plan), actor=people["planner"])
    with pytest.raises(PermissionDenied, match="outside the host groups your role covers"):
        workflow.plan_approve(plan=fresh(plan), actor=sites["users"]["appr-a"])
    assert fresh(plan).status == "submitted"
    # Through the API the plan does not even exist for that approver.
    client = APIClient()
    client.force_authenticate(sites["users"]["appr-a"])
    assert client.post(f"/api/v1/plans/{plan.pk}/approve/", {}, format="json").status_code == 404
    # An approver whose scope reaches both groups approves, and the event says under which.
    workflow.plan_approve(plan=fresh(plan), actor=sites["users"]["appr-ab"])
    event = AuditEvent.objects.filter(action="plan.approve").latest("sequence")
    assert event.after["scope"] == ["site-a", "site-b"]
    assert fresh(plan).status == "approved"
    with pytest.raises(PermissionDenied, match="outside the host groups"):
        workflow.plan_start(plan=fresh(plan), actor=sites["users"]["op-a"])


def test_it_refuses_websockets_outside_the_scope(sites, people):
    plan = plan_make(people["planner"])
    Host.objects.filter(pk__in=[plan.items.get().source_host_id]).update(group="site-b")
    scoped = sites["users"]["plan-a"]
    assert PlanConsumer._snapshot(scoped, plan.pk) is None
    assert DashboardConsumer._snapshot(scoped) is None
    assert PlanConsumer._snapshot(people["viewer"], plan.pk) is not None


def test_it_sets_roles_through_the_admin_api_with_an_audit_event(sites, people):
    client = APIClient()
    client.force_authenticate(sites["admin"])
    url = f"/api/v1/users/{people['viewer'].username}/roles/"
    answer = client.put(url, {"roles": {"planner": ["site-b"], "viewer": "all"}}, format="json")
    assert answer.status_code == 200, answer.content
    assert answer.json()["roles"] == {"planner": ["site-b"], "viewer": "all"}
    event = AuditEvent.objects.filter(action="user.roles_set").latest("sequence")
    assert event.before["roles"] == {"viewer": "all"}
    assert event.after["roles"] == {"planner": ["site-b"], "viewer": "all"}
    for bad in ({"roles": {"wizard": "all"}}, {"roles": {"planner": []}}, {"roles": "x"}, {}):
        assert client.put(url, bad, format="json").status_code == 400, bad
    assert client.get(url).json()["roles"] == {"planner": ["site-b"], "viewer": "all"}
    other = APIClient()
    other.force_authenticate(people["planner"])
    assert other.put(url, {"roles": {"admin": "all"}}, format="json").status_code == 403


def test_it_balances_and_moves_only_groups_the_planner_reaches(sites):
    from migrations_app.services.balancing import plan_create_balanced
    from migrations_app.services.plans import plan_move_to_group

    planner = sites["users"]["plan-a"]
    with pytest.raises(PlanError, match="No host is in group 'site-b'. Known groups: site-a"):
        plan_create_balanced(actor=planner, group="site-b", name="balance-b")
    assert not MigrationPlan.objects.filter(name="balance-b").exists()
    plan = plan_create(actor=planner, name="move")
    a_vm = _vm("a-vm", sites["a1"])
    with pytest.raises(PlanError, match="No host is in group 'site-b'"):
        plan_move_to_group(plan=plan, vms=[a_vm.pk], group="site-b", actor=planner)


def test_it_grants_and_revokes_scoped_roles_on_the_admin_site_with_audit_events(
    sites, people, make_user
):
    from django.test import Client

    from dashboard.accounts.models import RoleGrant

    root = make_user("root", superuser=True)
    browser = Client()
    browser.force_login(root)
    viewer = people["viewer"]
    answer = browser.post(
        "/admin/dashboard/rolegrant/add/",
        {"user": viewer.pk, "role": "planner", "host_group": "site-c"},
    )
    assert answer.status_code == 302, answer.content[:500]
    grant = RoleGrant.objects.get(user=viewer, role="planner")
    assert grant.host_group == "site-c"
    event = AuditEvent.objects.filter(action="user.roles_set").latest("sequence")
    assert event.actor_name == "root" and event.reason == "admin site"
    assert event.after["roles"] == {"planner": ["site-c"], "viewer": "all"}
    answer = browser.post(f"/admin/dashboard/rolegrant/{grant.pk}/delete/", {"post": "yes"})
    assert answer.status_code == 302
    assert user_roles_get(viewer) == {"viewer": "all"}
    assert (
        AuditEvent.objects.filter(action="user.roles_set").latest("sequence").sequence
        > event.sequence
    )
