"""Who reads which audit events, filters, exports, the plan timeline and the change record."""

import csv
import io
import json

import pytest
from django.test import Client
from rest_framework.test import APIClient

from dashboard.audit.record import Actor, audit_record
from migrations_app.workflow.services import plan_approve, plan_start, plan_submit

pytestmark = pytest.mark.django_db


@pytest.fixture
def trail(validated_plan, people):
    plan_submit(plan=validated_plan, actor=people["planner"])
    plan_approve(plan=validated_plan, actor=people["approver"], comment="=HYPERLINK(evil)")
    audit_record(actor=people["admin"], action="auth.logout_everywhere", object_type="auth.user")
    audit_record(actor=Actor.system(), action="inventory.host_sync", object_type="inventory.host")
    return validated_plan


def _api(user):
    client = APIClient()
    client.force_authenticate(user)
    return client


def test_it_shows_auditors_everything_and_others_plans_inventory_and_their_own(trail, people):
    everything = _api(people["auditor"]).get("/api/v1/audit-events/").json()
    assert {e["action"] for e in everything["results"]} >= {
        "plan.submit",
        "plan.approve",
        "auth.logout_everywhere",
        "inventory.host_sync",
    }
    seen = _api(people["viewer"]).get("/api/v1/audit-events/").json()
    actions = {e["action"] for e in seen["results"]}
    assert {"plan.submit", "plan.approve", "inventory.host_sync"} <= actions
    assert "auth.logout_everywhere" not in actions


def test_it_refuses_the_audit_api_to_someone_without_a_role(trail, make_user):
    assert _api(make_user("norole")).get("/api/v1/audit-events/").status_code == 403
    assert APIClient().get("/api/v1/audit-events/").status_code in (401, 403)


def test_it_filters_by_object_actor_action_and_time(trail, people):
    client = _api(people["auditor"])
    plan_id = str(trail.pk)
    answer = client.get(
        "/api/v1/audit-events/",
        {"object_type": "migrations_app.migrationplan", "object_id": plan_id, "actor": "ANN"},
    ).json()
    assert [e["action"] for e in answer["results"]] == ["plan.approve"]
    assert client.get("/api/v1/audit-events/", {"action": "plan.*"}).json()["count"] == 2
    future = client.get("/api/v1/audit-events/", {"since": "2999-01-01T00:00:00Z"}).json()
    assert future["count"] == 0
    with_until = client.get("/api/v1/audit-events/", {"until": "2999-01-01T00:00:00Z"}).json()
    assert with_until["count"] == 4


def test_it_exports_a_filtered_view_as_csv_and_json_without_formulas(trail, people):
    client = Client()
    client.force_login(people["auditor"])
    answer = client.get("/audit/export.csv", {"action": "plan.*"})
    rows = list(csv.DictReader(io.StringIO(b"".join(answer.streaming_content).decode())))
    assert [r["action"] for r in rows] == ["plan.submit", "plan.approve"]
    assert rows[1]["reason"] == "'=HYPERLINK(evil)"
    answer = client.get("/audit/export.json", {"action": "plan.approve"})
    data = json.loads(b"".join(answer.streaming_content))
    assert len(data) == 1 and len(data[0]["hash"]) == 64
    api = _api(people["auditor"]).get("/api/v1/audit-events/export/", {"as": "json"})
    assert len(json.loads(b"".join(api.streaming_content))) >= 4


def test_it_renders_the_audit_list_and_the_plan_timeline(trail, people):
    client = Client()
    client.force_login(people["auditor"])
    page = client.get("/audit/", {"action": "plan.*"})
    assert page.status_code == 200 and "plan.approve" in page.content.decode()
    timeline = client.get(f"/audit/plans/{trail.pk}/")
    body = timeline.content.decode()
    assert "plan.submit" in body and "submitted" in body


def test_it_builds_the_change_record_with_evidence_approvals_and_hashes(trail, people):
    plan_start(plan=trail, actor=people["operator"])
    client = Client()
    client.force_login(people["viewer"])
    page = client.get(f"/plans/{trail.pk}/change-record/")
    body = page.content.decode()
    trail.refresh_from_db()
    assert page.status_code == 200
    assert "CHG-1001" in body and trail.content_hash in body
    assert "matches the submitted content" in body and "=HYPERLINK(evil)" in body
    assert "plan.start" in body and "audit_verify --expect-head" in body
    api = _api(people["viewer"]).get(f"/api/v1/plans/{trail.pk}/change-record/")
    assert api.status_code == 200, api.content
    record = api.json()
    assert record["validation"]["matches_approved_hash"] is True
    assert [a["approver"] for a in record["approvals"]] == ["ann"]
    plan_events = [
        e["action"] for e in record["audit_events"] if e["object"].startswith("migrations_app.m")
    ]
    assert plan_events == ["plan.submit", "plan.approve", "plan.start"]
    # The run the execution hook created is part of the record too.
    assert any(e["object"].startswith("migrations_app.planrun") for e in record["audit_events"])
    assert record["runs"] and record["runs"][0]["status"] == "running"


def test_it_renders_the_change_record_as_pdf(trail, people):
    client = Client()
    client.force_login(people["auditor"])
    answer = client.get(f"/plans/{trail.pk}/change-record.pdf")
    assert answer.status_code == 200 and answer["Content-Type"] == "application/pdf"
    assert answer.content.startswith(b"%PDF-")
