"""The change record of a plan completed on the rehearsal driver shows everything an
auditor files: ticket, evidence, approvals, execution per VM, audit events with hashes."""

import pytest
from django.test import Client

from dashboard.audit.verify import audit_chain_verify
from tests.migrations_app.execution.conftest import _fast, approved_plan, drain, host, start  # noqa: F401

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def people(make_user):
    # The execution fixtures' people, plus an auditor who reads the record.
    return {
        "planner": make_user("pat", "planner"),
        "approver": make_user("ann", "approver"),
        "operator": make_user("oli", "operator"),
        "auditor": make_user("aud", "auditor"),
    }


def test_it_shows_a_completed_rehearsal_plan_end_to_end(approved_plan, start, people):  # noqa: F811
    source, destination = host(), host()
    plan = approved_plan([(source, destination), (source, destination)])
    run = drain(start(plan))
    plan.refresh_from_db()
    assert plan.status == "completed" and run.status == "completed"

    client = Client()
    client.force_login(people["auditor"])
    record = client.get(f"/api/v1/plans/{plan.pk}/change-record/").json()
    assert record["plan"]["change_ticket"] == "CHG-6" and record["plan"]["status"] == "completed"
    assert record["validation"]["matches_approved_hash"] is True
    assert [(a["approver"], a["decision"]) for a in record["approvals"]] == [("ann", "approved")]
    attempts = record["runs"][0]["attempts"]
    assert len(attempts) == 2
    assert all(a["status"] == "completed" and a["downtime_ms"] is not None for a in attempts)
    actions = [e["action"] for e in record["audit_events"]]
    assert actions[:3] == ["plan.submit", "plan.approve", "plan.start"]
    assert "plan.completed" in actions
    assert all(len(e["hash"]) == 64 for e in record["audit_events"])

    page = client.get(f"/plans/{plan.pk}/change-record/").content.decode()
    for attempt in attempts:
        assert attempt["vm"] in page and f"{attempt['downtime_ms']} ms" in page
    pdf = client.get(f"/plans/{plan.pk}/change-record.pdf")
    assert pdf.content.startswith(b"%PDF-")

    head = record["chain_head"]
    result = audit_chain_verify(expect_head=(head["sequence"], head["hash"]))
    assert result.ok, result.problem
