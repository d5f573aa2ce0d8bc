"""A maintenance campaign over the demo hosts on the rehearsal driver: every step, the
four-eyes rule, the gate pause, hooks, and failback."""

import pytest

from dashboard.audit.models import AuditEvent
from inventory.models import Host, VirtualMachine
from migrations_app.campaigns.services import (
    campaign_approve,
    campaign_create,
    campaign_resume,
    campaign_start,
    campaign_submit,
)
from migrations_app.errors import TransitionError
from migrations_app.models import HookCall, MigrationPlan
from migrations_app.workflow.services import WorkflowForbidden
from tests.migrations_app.campaigns.conftest import play

pytestmark = pytest.mark.django_db(transaction=True)

POLICY = {"require_tls": False, "verify_seconds": 1}


def approved(people, hosts, **kwargs):
    campaign = campaign_create(
        actor=people["planner"],
        name="patch site-a",
        hosts=[h.name for h in hosts],
        change_ticket="CHG-17",
        policy=POLICY,
        **kwargs,
    )
    campaign_submit(campaign=campaign, actor=people["planner"])
    return campaign_approve(campaign=campaign, actor=people["approver"])


def free_anti_affinity():
    """The demo puts one anti-affine db VM on each site-a host: with three hosts, draining one
    leaves its db nowhere to go (the test below shows the pause). Lift it where needed."""
    for vm in VirtualMachine.objects.filter(tags__icontains="anti:"):
        vm.tags = [t for t in vm.tags if not t.startswith("anti:")]
        vm.save(update_fields=["tags"])


def test_it_pauses_before_draining_when_anti_affinity_leaves_a_vm_nowhere_to_go(people, site_a):
    campaign = approved(people, [site_a[0]])
    campaign_start(campaign=campaign, actor=people["operator"])

    campaign = play(campaign)

    assert campaign.status == "paused"
    assert "cannot be planned" in campaign.status_reason
    assert "anti:db-cluster" in campaign.status_reason
    step = campaign.steps.get()
    assert step.phase == "pending" and step.plan is None
    # Nothing moved; the generated plan was cancelled, the host stays closed to placements.
    assert MigrationPlan.objects.get(campaign=campaign).status == "cancelled"
    assert Host.objects.get(pk=site_a[0].pk).state == "maintenance"


def test_it_drains_acts_waits_exits_and_fails_back_host_by_host(people, site_b):
    b1, b2, b3 = site_b
    on_b1 = set(
        VirtualMachine.objects.filter(host=b1, state="running").values_list("pk", flat=True)
    )
    assert on_b1
    campaign = approved(people, [b1, b2], failback=True)
    campaign_start(campaign=campaign, actor=people["operator"])

    campaign = play(campaign)

    assert campaign.status == "completed", campaign.status_reason
    steps = list(campaign.steps.order_by("position"))
    assert [s.phase for s in steps] == ["done", "done"]
    for step in steps:
        assert {"drain", "gate", "host_action", "wait_healthy", "exit"} <= set(step.timeline)
    evacuation = steps[0].plan
    assert evacuation.campaign_id == campaign.pk and evacuation.status == "completed"
    # Placement honoured capacity: a1's VMs went to a2/a3, never back to a1.
    # Placed by the existing placement ("spread": most memory left; capacity and
    # anti-affinity: b2 runs a db VM, so b1's db VM can only go to the spare).
    spread = dict(evacuation.items.values_list("vm__name", "destination_host__name"))
    assert set(spread.values()) <= {"kvm-b2", "kvm-b3"}
    assert spread["db-b1-02"] == "kvm-b3"
    # b2's evacuation ran once b1 was open again, and never targeted b2.
    assert "kvm-b2" not in set(steps[1].plan.items.values_list("destination_host__name", flat=True))
    failback = MigrationPlan.objects.get(campaign=campaign, campaign_role="failback")
    assert failback.status == "completed"
    returned = set(failback.items.filter(destination_host=b1).values_list("vm_id", flat=True))
    assert returned == on_b1
    assert failback.items.count() == len(on_b1) + steps[1].plan.items.count()
    assert Host.objects.filter(state="maintenance").count() == 0
    actions = list(AuditEvent.objects.order_by("sequence").values_list("action", flat=True))
    for action in (
        "campaign.start",
        "host.maintenance_entered",
        "plan.approved_by_campaign",
        "campaign.gate_passed",
        "host.maintenance_exited",
        "campaign.failback_planned",
        "campaign.completed",
    ):
        assert action in actions, action
    # a1 entered maintenance before its evacuation plan was approved, and left it after
    assert actions.index("host.maintenance_entered") < actions.index("plan.approved_by_campaign")


def test_it_refuses_an_approval_by_the_author(people, site_a):
    campaign = campaign_create(
        actor=people["admin"], name="c", hosts=[site_a[0].name], policy=POLICY
    )
    campaign_submit(campaign=campaign, actor=people["admin"])
    with pytest.raises(WorkflowForbidden):
        campaign_approve(campaign=campaign, actor=people["admin"])


def test_it_does_not_start_a_campaign_that_was_not_approved(people, site_a):
    campaign = campaign_create(actor=people["planner"], name="c", hosts=["kvm-a1"], policy=POLICY)
    campaign_submit(campaign=campaign, actor=people["planner"])
    with pytest.raises(TransitionError):
        campaign_start(campaign=campaign, actor=people["operator"])


def test_it_closes_a_host_in_maintenance_to_placement_and_to_plans(people, site_b):
    from inventory.services import host_maintenance_enter
    from migrations_app.services.plans import plan_add_vms, plan_create
    from migrations_app.services.validation import plan_validate

    b1, b2, b3 = site_b
    host_maintenance_enter(host=b2, actor=people["operator"], reason="firmware")
    host_maintenance_enter(host=b3, actor=people["admin"], reason="spare on loan")
    campaign = approved(people, [b1])
    campaign_start(campaign=campaign, actor=people["operator"])

    campaign = play(campaign)

    # Both other hosts are in maintenance (and b1 itself): b1 cannot be drained.
    assert campaign.status == "paused" and "host.state rejected 3" in campaign.status_reason
    # A planner who picks b2 by hand gets a blocker.
    plan = plan_create(actor=people["planner"], name="by hand", policy=POLICY)
    vm = VirtualMachine.objects.filter(host=b1).first()
    plan_add_vms(plan=plan, vms=[vm], actor=people["planner"], destination=b2)
    run = plan_validate(plan=plan, actor=people["planner"])
    blocker = run.results.get(check_id="host.state", severity="blocker")
    assert "maintenance" in blocker.message
    event = AuditEvent.objects.get(action="host.maintenance_entered", object_id=str(b2.pk))
    assert event.actor_name == "oli" and event.reason == "firmware"


def test_it_pauses_at_the_gate_and_does_nothing_to_the_host_when_a_vm_did_not_move(
    people, site_a, monkeypatch
):
    from migrations_app.execution.drivers.rehearsal import RehearsalSession

    def refuse(self):
        raise RuntimeError("injected: this VM cannot move")

    monkeypatch.setattr(RehearsalSession, "start", refuse)
    free_anti_affinity()
    a1 = site_a[0]
    campaign = approved(people, [a1])
    campaign_start(campaign=campaign, actor=people["operator"])

    campaign = play(campaign)

    assert campaign.status == "paused"
    assert "did not move" in campaign.status_reason
    assert "Nothing was done" in campaign.status_reason
    step = campaign.steps.get()
    assert step.phase == "gate" and step.action_started_at is None
    assert "host_action" not in step.timeline
    a1.refresh_from_db()
    assert a1.state == "maintenance"
    assert AuditEvent.objects.filter(action="campaign.gate_closed").exists()
    # Resuming checks the gate again: still closed, still paused.
    campaign_resume(campaign=campaign, actor=people["operator"])
    assert play(campaign).status == "paused"


def test_it_pauses_when_the_host_action_hook_fails_and_runs_it_again_on_resume(
    people, site_a, settings, tmp_path
):
    script = tmp_path / "patch.sh"
    flag = tmp_path / "ok"
    script.write_text(f"#!/bin/sh\ncat >/dev/null\ntest -e {flag} || {{ echo no >&2; exit 3; }}\n")
    script.chmod(0o755)
    settings.FERRY_HOOK_COMMAND_DIR = str(tmp_path)
    free_anti_affinity()
    from migrations_app.campaigns.services import campaign_hook_add

    a1 = site_a[0]
    campaign = campaign_create(actor=people["admin"], name="c", hosts=["kvm-a1"], policy=POLICY)
    campaign_hook_add(
        campaign=campaign,
        actor=people["admin"],
        event="host_action",
        kind="command",
        command="patch.sh",
        timeout_s=10,
    )
    campaign_submit(campaign=campaign, actor=people["admin"])
    campaign = campaign_approve(campaign=campaign, actor=people["approver"])
    campaign_start(campaign=campaign, actor=people["operator"])

    campaign = play(campaign)
    assert campaign.status == "paused" and "exit 3" in campaign.status_reason
    call = HookCall.objects.get()
    assert not call.ok and call.code == 3 and "no" in call.detail
    a1.refresh_from_db()
    assert a1.state == "maintenance"

    flag.write_text("")
    campaign_resume(campaign=campaign, actor=people["operator"])
    assert play(campaign).status == "completed"
    assert HookCall.objects.filter(ok=True).count() == 1
