"""Campaign hooks (signed HTTP, allowlisted commands, pre_migration failures) and the API:
roles, four eyes, clear 4xx answers, raw hook answers for admins only."""

import json

import pytest
from rest_framework.test import APIClient

from dashboard.audit.models import AuditEvent
from migrations_app.campaigns.services import (
    campaign_approve,
    campaign_create,
    campaign_hook_add,
    campaign_start,
    campaign_submit,
)
from migrations_app.models import Campaign, HookCall, PlanItem
from migrations_app.notifications.services import SIGNATURE_HEADER, signature_valid
from tests.migrations_app.campaigns.conftest import play
from tests.migrations_app.campaigns.test_campaign_rehearsal import POLICY, free_anti_affinity
from tests.migrations_app.notifications.test_notifications import receiver  # noqa: F401

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _loopback_receivers_allowed(settings):
    settings.FERRY_WEBHOOK_ALLOW_HOSTS = ["127.0.0.1/32"]


def client_of(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def test_it_signs_the_host_action_call_and_shows_its_raw_answer_to_admins_only(
    people,
    site_b,
    receiver,  # noqa: F811
):
    handler, url = receiver
    free_anti_affinity()
    campaign = campaign_create(actor=people["planner"], name="c", hosts=["kvm-b2"], policy=POLICY)
    hook = campaign_hook_add(
        campaign=campaign, actor=people["planner"], event="host_action", kind="http", url=url
    )
    campaign_submit(campaign=campaign, actor=people["planner"])
    campaign_approve(campaign=campaign, actor=people["approver"])
    campaign_start(campaign=campaign, actor=people["operator"])

    assert play(campaign).status == "completed"

    ((headers, body),) = handler.received
    assert signature_valid(hook.secret, body, headers[SIGNATURE_HEADER])
    assert json.loads(body)["host"] == "kvm-b2" and json.loads(body)["event"] == "host_action"
    call = HookCall.objects.get()
    assert call.ok and call.code == 204
    event = AuditEvent.objects.get(action="hook.called")
    assert event.after["duration_ms"] == call.duration_ms and event.after["host"] == "kvm-b2"
    seen = client_of(people["viewer"]).get(f"/api/v1/campaigns/{campaign.pk}/").json()
    assert seen["hook_calls"][0]["outcome"] == "HTTP 204" and "detail" not in seen["hook_calls"][0]
    assert (
        "detail"
        in client_of(people["admin"])
        .get(f"/api/v1/campaigns/{campaign.pk}/")
        .json()["hook_calls"][0]
    )
    assert "secret" not in json.dumps(seen)


def test_it_leaves_a_vm_whose_pre_migration_hook_failed_and_moves_the_rest(
    people,
    site_b,
    receiver,  # noqa: F811
):
    handler, url = receiver
    free_anti_affinity()
    refused = []

    def answer(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).received.append(body)
        code = 503 if not refused or body["vm"] == refused[0] else 200
        if not refused:
            refused.append(body["vm"])
        self.send_response(code)
        self.end_headers()

    handler.do_POST = answer
    campaign = campaign_create(actor=people["planner"], name="c", hosts=["kvm-b2"], policy=POLICY)
    campaign_hook_add(
        campaign=campaign, actor=people["planner"], event="pre_migration", kind="http", url=url
    )
    campaign_submit(campaign=campaign, actor=people["planner"])
    campaign_approve(campaign=campaign, actor=people["approver"])
    campaign_start(campaign=campaign, actor=people["operator"])

    campaign = play(campaign)

    items = PlanItem.objects.filter(plan__campaign=campaign).select_related("vm")
    failed = [i for i in items if i.status != "completed"]
    assert [i.vm.name for i in failed] == refused
    attempt = failed[0].attempts.get()
    assert attempt.error_class == "hook_failed" and attempt.migrate_called_at is None
    assert all(i.status == "completed" for i in items if i not in failed)
    # The VM stayed, so the gate holds the host: nothing is done to it.
    assert campaign.status == "paused" and refused[0] in campaign.status_reason
    assert HookCall.objects.filter(ok=False).count() == 1


def test_it_answers_bad_campaign_input_with_clear_4xx(people, site_b, settings, tmp_path):
    planner = client_of(people["planner"])
    assert (
        planner.post(
            "/api/v1/campaigns/", {"name": "x", "hosts": ["nope"]}, format="json"
        ).status_code
        == 400
    )
    assert (
        client_of(people["viewer"])
        .post("/api/v1/campaigns/", {"name": "x", "hosts": ["kvm-b1"]}, format="json")
        .status_code
        == 403
    )
    made = planner.post(
        "/api/v1/campaigns/",
        {"name": "x", "hosts": ["kvm-b1", "kvm-b2"], "failback": True, "policy": POLICY},
        format="json",
    )
    assert made.status_code == 201, made.json()
    pk = made.json()["id"]
    assert [s["host_name"] for s in made.json()["steps"]] == ["kvm-b1", "kvm-b2"]
    link_local = planner.post(
        f"/api/v1/campaigns/{pk}/hooks/",
        {"event": "host_action", "kind": "http", "url": "http://169.254.169.254/x"},
        format="json",
    )
    assert link_local.status_code == 400
    settings.FERRY_HOOK_COMMAND_DIR = str(tmp_path)
    (tmp_path / "ok.sh").write_text("#!/bin/sh\nexit 0\n")
    (tmp_path / "ok.sh").chmod(0o755)
    command = {"event": "host_action", "kind": "command", "command": "ok.sh"}
    assert planner.post(f"/api/v1/campaigns/{pk}/hooks/", command, format="json").status_code == 403
    admin = client_of(people["admin"])
    escape = {**command, "command": "../ok.sh"}
    assert admin.post(f"/api/v1/campaigns/{pk}/hooks/", escape, format="json").status_code == 400
    assert admin.post(f"/api/v1/campaigns/{pk}/hooks/", command, format="json").status_code == 201
    assert planner.post(f"/api/v1/campaigns/{pk}/start/").status_code == 403
    assert planner.post(f"/api/v1/campaigns/{pk}/submit/").status_code == 200
    assert planner.post(f"/api/v1/campaigns/{pk}/approve/").status_code == 403
    approver = client_of(people["approver"])
    stale = approver.post(f"/api/v1/campaigns/{pk}/approve/", {"content_hash": "0" * 64})
    assert stale.status_code == 409
    assert approver.post(f"/api/v1/campaigns/{pk}/approve/").status_code == 200
    operator = client_of(people["operator"])
    assert operator.post(f"/api/v1/campaigns/{pk}/resume/").status_code == 409
    assert operator.post(f"/api/v1/campaigns/{pk}/cancel/", {"reason": ""}).status_code == 400
    assert (
        operator.post(f"/api/v1/campaigns/{pk}/cancel/", {"reason": "not today"}).status_code == 200
    )
    assert Campaign.objects.get(pk=pk).status == "cancelled"
