"""M1 (security review): a planner could register a "hypervisor" of their own, turn TLS off
and let one inattentive approval stream a VM's memory and disks to it. Host registration is
now admin-only (C1); a destination reached without TLS is a blocker unless an admin records
an override with a reason for that plan; the approval card shows every destination's URI,
who registered it and when.
"""

import pytest
from django.core.exceptions import PermissionDenied
from django.test import Client

from dashboard.audit.models import AuditEvent
from migrations_app.checks.security import check_security_transport
from migrations_app.models import MigrationPlan
from migrations_app.policy import Policy
from migrations_app.services.transport_override import plan_transport_override_set
from migrations_app.workflow import services as workflow
from tests.factories import plan_make, plan_validate_stub
from tests.migrations_app.snapshots import ctx_of, two_hosts


@pytest.mark.parametrize(
    "dest_transport, require_tls, severity",
    [
        ("tls", True, "ok"),
        ("tls", False, "blocker"),
        ("tcp", True, "blocker"),
        ("tcp", False, "blocker"),
        ("unix", False, "blocker"),
        ("ssh", False, "blocker"),
        ("ssh", True, "warning"),
        ("test", False, "info"),
    ],
)
def test_it_blocks_a_destination_reached_without_tls(dest_transport, require_tls, severity):
    snap, item, dest = two_hosts()
    dest.transport = dest_transport
    if dest_transport == "test":
        snap.hosts[1].transport = "test"
    item.policy = Policy(require_tls=require_tls)
    assert check_security_transport(ctx_of(snap), item, dest).severity == severity


def test_it_turns_the_blocker_into_a_warning_naming_the_admin_and_reason():
    snap, item, dest = two_hosts()
    item.policy = Policy(require_tls=False)
    snap.plan.transport_override = "isolated migration VLAN 42, CHG-77"
    snap.plan.transport_override_by = "ada"
    finding = check_security_transport(ctx_of(snap), item, dest)
    assert finding.severity == "warning"
    assert "ada" in finding.message and "VLAN 42" in finding.message


@pytest.mark.django_db
def test_it_lets_only_admins_override_and_voids_approvals(people, api_as):
    plan = plan_make(people["planner"])
    plan_validate_stub(plan)
    workflow.plan_submit(plan=plan, actor=people["planner"])
    workflow.plan_approve(plan=MigrationPlan.objects.get(pk=plan.pk), actor=people["approver"])
    for role in ("planner", "approver", "operator"):
        with pytest.raises(PermissionDenied):
            plan_transport_override_set(plan=plan, actor=people[role], reason="trust me")
        answer = api_as(role).post(
            f"/api/v1/plans/{plan.pk}/transport-override/", {"reason": "x"}, format="json"
        )
        assert answer.status_code == 403
    admin = api_as("admin")
    answer = admin.post(
        f"/api/v1/plans/{plan.pk}/transport-override/",
        {"reason": "isolated migration network"},
        format="json",
    )
    assert answer.status_code == 200, answer.content
    after = MigrationPlan.objects.get(pk=plan.pk)
    assert after.status == "draft" and after.transport_override_by == admin.user.username
    assert after.approvals.filter(voided_at__isnull=True).count() == 0
    event = AuditEvent.objects.get(action="plan.transport_override")
    assert event.reason == "isolated migration network"
    # The admin shaped the content: four eyes keeps them from approving it.
    plan_validate_stub(after)
    workflow.plan_submit(plan=after, actor=people["planner"])
    with pytest.raises(PermissionDenied, match="Four eyes"):
        workflow.plan_approve(plan=MigrationPlan.objects.get(pk=plan.pk), actor=admin.user)


@pytest.mark.django_db
def test_it_shows_each_destination_uri_registrar_and_date_on_the_approval_card(people):
    plan = plan_make(people["planner"])
    dest = plan.items.get().destination_host
    type(dest).objects.filter(pk=dest.pk).update(
        uri="qemu+tls://kvm-rogue.example/system", registered_by_name="ada"
    )
    plan_validate_stub(plan)
    workflow.plan_submit(plan=plan, actor=people["planner"])
    page = Client()
    page.force_login(people["approver"])
    html = page.get(f"/plans/{plan.pk}/").content.decode()
    assert "qemu+tls://kvm-rogue.example/system" in html
    assert "registered" in html and "by ada" in html
