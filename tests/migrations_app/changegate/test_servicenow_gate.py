"""The change-ticket gate against a local server that implements the parts of ServiceNow's
Table API Ferry uses, as ServiceNow documents them (see servicenow_fake: ServiceNow itself
cannot run here, this is the one stand-in): a missing ticket, one not approved, one whose
window does not contain now, and an approved one inside its window, which starts the plan
and whose write-backs the server receives."""

from datetime import timedelta

import pytest
from django.utils import timezone
from django_tasks_db.models import DBTaskResult

from dashboard.audit.models import AuditEvent
from dashboard.audit.record import Actor
from migrations_app.changegate.services import ChangeGateRefused, change_gate_write_back
from migrations_app.models import MigrationPlan
from migrations_app.workflow.services import (
    plan_approve,
    plan_cancel,
    plan_finish,
    plan_start,
    plan_submit,
)
from tests.factories import plan_make, plan_validate_stub
from tests.migrations_app.changegate.servicenow_fake import FakeServiceNow

pytestmark = pytest.mark.django_db


def _sn(when):
    return when.strftime("%Y-%m-%d %H:%M:%S")


@pytest.fixture
def servicenow(settings):
    fake = FakeServiceNow("ferry", "s3cret").start()
    settings.FERRY_CHANGE_GATE = "servicenow"
    settings.FERRY_CHANGE_GATE_URL = fake.url
    settings.FERRY_CHANGE_GATE_USER = "ferry"
    settings.FERRY_CHANGE_GATE_PASSWORD = "s3cret"
    settings.FERRY_CHANGE_GATE_TOKEN = ""
    settings.FERRY_WEBHOOK_ALLOW_HOSTS = ["127.0.0.1"]
    settings.FERRY_BASE_URL = "https://ferry.example"
    yield fake
    fake.stop()


@pytest.fixture
def approved(people):
    def _make(ticket):
        plan = plan_make(people["planner"])
        MigrationPlan.objects.filter(pk=plan.pk).update(change_ticket=ticket)
        plan.refresh_from_db()
        plan_validate_stub(plan)
        plan_submit(plan=plan, actor=people["planner"])
        plan_approve(plan=plan, actor=people["approver"], comment="ok")
        return plan

    return _make


def _gate_events(plan):
    return list(
        AuditEvent.objects.filter(
            object_id=str(plan.pk), action__startswith="plan.change_gate."
        ).order_by("sequence")
    )


def _refused(plan, actor, match):
    with pytest.raises(ChangeGateRefused, match=match):
        plan_start(plan=plan, actor=actor)
    plan.refresh_from_db()
    assert plan.status == "approved"
    event = _gate_events(plan)[-1]
    assert event.action == "plan.change_gate.refuse" and event.after["allowed"] is False
    return event


def test_it_refuses_start_when_the_ticket_does_not_exist(servicenow, approved, people):
    plan = approved("CHG0000404")
    _refused(plan, people["operator"], "CHG0000404 does not exist")
    assert (
        "GET",
        "/api/now/table/change_request?sysparm_query=number%3DCHG0000404&"
        "sysparm_fields=sys_id%2Cnumber%2Capproval%2Cstate%2Cstart_date%2Cend_date&"
        "sysparm_limit=1&sysparm_display_value=false",
    ) in servicenow.requests


def test_it_refuses_start_when_the_ticket_is_not_approved(servicenow, approved, people):
    now = timezone.now()
    servicenow.add(
        "CHG0000001",
        approval="requested",
        start=_sn(now - timedelta(hours=1)),
        end=_sn(now + timedelta(hours=1)),
    )
    plan = approved("CHG0000001")
    event = _refused(plan, people["operator"], "not approved \\(approval: requested\\)")
    assert event.after["record_url"].startswith(servicenow.url + "/change_request.do?sys_id=")


def test_it_refuses_start_outside_the_ticket_window(servicenow, approved, people):
    now = timezone.now()
    servicenow.add(
        "CHG0000002", start=_sn(now + timedelta(hours=2)), end=_sn(now + timedelta(hours=3))
    )
    plan = approved("CHG0000002")
    _refused(plan, people["operator"], "outside change ticket CHG0000002's window")


def test_it_refuses_a_ticket_reference_that_would_change_the_query(servicenow, approved, people):
    plan = approved("CHG1^ORnumber=CHG2")
    _refused(plan, people["operator"], "is not a ticket number")
    assert servicenow.requests == []


def test_it_fails_closed_without_echoing_the_remote_error(servicenow, approved, people, settings):
    settings.FERRY_CHANGE_GATE_PASSWORD = "wrong"
    plan = approved("CHG0000003")
    with pytest.raises(ChangeGateRefused) as caught:
        plan_start(plan=plan, actor=people["operator"])
    assert "HTTP 401" in str(caught.value)
    assert "User Not Authenticated" not in str(caught.value)  # raw answers: admins only
    with pytest.raises(ChangeGateRefused, match="User Not Authenticated"):
        plan_start(plan=plan, actor=people["admin"])


def test_it_starts_inside_an_approved_window_and_writes_back(
    servicenow, approved, people, django_capture_on_commit_callbacks
):
    now = timezone.now()
    sys_id = servicenow.add(
        "CHG0000042", start=_sn(now - timedelta(minutes=5)), end=_sn(now + timedelta(hours=2))
    )
    plan = approved("CHG0000042")
    with django_capture_on_commit_callbacks(execute=True):
        plan_start(plan=plan, actor=people["operator"])
    plan.refresh_from_db()
    assert plan.status == "running"
    allow = _gate_events(plan)[-1]
    assert allow.action == "plan.change_gate.allow" and allow.after["approval"] == "approved"
    start = AuditEvent.objects.get(object_id=str(plan.pk), action="plan.start")
    assert start.after["change_record"] == f"{servicenow.url}/change_request.do?sys_id={sys_id}"
    queued = DBTaskResult.objects.filter(task_path__endswith="change_gate_writeback_task")
    assert [r.args_kwargs["args"][:2] for r in queued] == [[plan.pk, "started"]]

    assert change_gate_write_back(plan.pk, "started")["status"] == "written"
    record = servicenow.records[sys_id]
    assert record["state"] == "-1"  # Implement
    note = servicenow.journal[sys_id][-1]
    assert f"https://ferry.example/plans/{plan.pk}/change-record/" in note
    assert "started" in note

    with django_capture_on_commit_callbacks(execute=True):
        plan_finish(plan=plan, actor=people["operator"], outcome="failed", reason="item 1")
    assert change_gate_write_back(plan.pk, "failed")["status"] == "written"
    assert record["state"] == "0" and "ended with failures" in servicenow.journal[sys_id][-1]
    actions = [e.action for e in _gate_events(plan)]
    assert actions == [
        "plan.change_gate.allow",
        "plan.change_gate.write_back",
        "plan.change_gate.write_back",
    ]


def test_it_changes_nothing_when_the_gate_is_off(settings, approved, people):
    settings.FERRY_CHANGE_GATE = "off"
    plan = approved("")
    plan_start(plan=plan, actor=people["operator"])
    assert plan.status == "running" and not _gate_events(plan)


def test_it_asks_at_most_once_a_minute_for_the_scheduler(servicenow, approved, people):
    plan = approved("CHG0000500")
    scheduler = Actor.system("scheduler")
    _refused(plan, scheduler, "does not exist")
    asked = len(servicenow.requests)
    with pytest.raises(ChangeGateRefused, match="waits for its change ticket"):
        plan_start(plan=plan, actor=scheduler)
    assert len(servicenow.requests) == asked  # not asked again, nothing more audited
    assert len(_gate_events(plan)) == 1
    _refused(plan, people["operator"], "does not exist")  # a person's start always asks


def test_it_writes_back_a_cancel_of_a_started_plan(
    servicenow, approved, people, django_capture_on_commit_callbacks
):
    now = timezone.now()
    sys_id = servicenow.add(
        "CHG0000043", start=_sn(now - timedelta(minutes=5)), end=_sn(now + timedelta(hours=2))
    )
    plan = approved("CHG0000043")
    plan_start(plan=plan, actor=people["operator"])
    with django_capture_on_commit_callbacks(execute=True):
        plan_cancel(plan=plan, actor=people["operator"], reason="host alarm")
    queued = DBTaskResult.objects.filter(task_path__endswith="change_gate_writeback_task")
    assert [r.args_kwargs["args"][1] for r in queued] == ["cancelled"]
    assert change_gate_write_back(plan.pk, "started")["status"] == "written"
    assert change_gate_write_back(plan.pk, "cancelled")["status"] == "written"
    assert servicenow.records[sys_id]["state"] == "0"
    assert "cancelled while running" in servicenow.journal[sys_id][-1]


def test_it_writes_the_end_only_after_the_start(servicenow, approved, people):
    now = timezone.now()
    sys_id = servicenow.add(
        "CHG0000044", start=_sn(now - timedelta(minutes=5)), end=_sn(now + timedelta(hours=2))
    )
    plan = approved("CHG0000044")
    plan_start(plan=plan, actor=people["operator"])
    assert change_gate_write_back(plan.pk, "completed")["status"] == "waiting"
    assert servicenow.journal[sys_id] == []  # nothing written before "started"
    assert change_gate_write_back(plan.pk, "started")["status"] == "written"
    assert change_gate_write_back(plan.pk, "completed")["status"] == "written"
    assert [note.split(") ")[1].split(" at ")[0] for note in servicenow.journal[sys_id]] == [
        "started",
        "completed",
    ]
