"""A campaign reported like a plan (issue 17): its change record (HTML, PDF, JSON) lists
every step of every host, the step timeline API gives the overhead split, and subscribers
hear of campaign events through the plan notification path (signed webhooks)."""

import json

import pytest
from django.test import Client

from migrations_app.campaigns.services import (
    campaign_approve,
    campaign_create,
    campaign_hook_add,
    campaign_resume,
    campaign_start,
    campaign_submit,
)
from migrations_app.campaigns.timeline import STEPS
from migrations_app.models.notifications import NotificationDelivery
from migrations_app.notifications.services import (
    SIGNATURE_HEADER,
    notification_deliver,
    signature_valid,
    subscription_create,
)
from tests.factories import plan_make
from tests.migrations_app.campaigns.conftest import play
from tests.migrations_app.campaigns.test_campaign_hooks_api import (  # noqa: F401
    _loopback_receivers_allowed,
    client_of,
)
from tests.migrations_app.campaigns.test_campaign_rehearsal import POLICY, free_anti_affinity
from tests.migrations_app.notifications.test_notifications import receiver  # noqa: F401

pytestmark = pytest.mark.django_db(transaction=True)

STEP_NAMES = [name for _, name in STEPS]


def _deliver_all():
    for pk in NotificationDelivery.objects.order_by("pk").values_list("pk", flat=True):
        notification_deliver(pk)


def _hook_script(tmp_path, settings, code: int = 0):
    script = tmp_path / "patch.sh"
    script.write_text(f"#!/bin/sh\ncat >/dev/null\necho secret-detail >&2\nexit {code}\n")
    script.chmod(0o755)
    settings.FERRY_HOOK_COMMAND_DIR = str(tmp_path)


def _campaign(people, hosts, *, failback=True, hook=False):
    campaign = campaign_create(
        actor=people["admin"],
        name="patch site-b",
        hosts=hosts,
        change_ticket="CHG-17",
        policy=POLICY,
        failback=failback,
    )
    if hook:
        campaign_hook_add(
            campaign=campaign,
            actor=people["admin"],
            event="host_action",
            kind="command",
            command="patch.sh",
            timeout_s=10,
        )
    campaign_submit(campaign=campaign, actor=people["admin"])
    return campaign_approve(campaign=campaign, actor=people["approver"], comment="ok")


def test_it_lists_every_step_of_every_host_in_the_change_record_timeline_and_pdf(
    people,
    site_b,
    settings,
    tmp_path,
    receiver,  # noqa: F811
):
    handler, url = receiver
    _hook_script(tmp_path, settings)
    free_anti_affinity()
    everything = subscription_create(actor=people["admin"], kind="webhook", target=url)
    campaign = _campaign(people, ["kvm-b1", "kvm-b2"], hook=True)
    mine = subscription_create(
        actor=people["operator"], kind="webhook", target=url, campaign=campaign
    )
    other_plan = plan_make(people["planner"], items=1)
    plan_only = subscription_create(
        actor=people["planner"], kind="webhook", target=url, plan=other_plan
    )
    campaign_start(campaign=campaign, actor=people["operator"])

    campaign = play(campaign)
    assert campaign.status == "completed", campaign.status_reason

    # -- the timeline API: seven steps per host, each with start/end/duration ----------
    timeline = client_of(people["viewer"]).get(f"/api/v1/campaigns/{campaign.pk}/timeline/")
    assert timeline.status_code == 200
    body = timeline.json()
    assert [h["host"] for h in body["hosts"]] == ["kvm-b1", "kvm-b2"]
    for host in body["hosts"]:
        assert [s["name"] for s in host["steps"]] == STEP_NAMES
        for step in host["steps"]:
            assert step["state"] == "done", (host["host"], step)
            assert step["start"] and step["end"] and step["duration_s"] >= 0, step
        drain = host["steps"][1]
        assert drain["plan"]["vms"] >= 1 and drain["plan"]["vms_moved"] == drain["plan"]["vms"]
        action = host["steps"][3]
        assert action["calls"][0]["ok"] and action["calls"][0]["outcome"] == "exit 0"
        assert "secret-detail" not in json.dumps(action)
        assert host["steps"][6]["plan"]["vms_moved"] >= 1  # failback returned its VMs
    split = body["overhead"]
    assert split["total_s"] > 0 and split["migration_s"] > 0
    assert split["overhead_s"] <= split["total_s"] - split["migration_s"] + 0.01

    # -- the change record: summary first, then every step of every host ---------------
    browser = Client()
    browser.force_login(people["viewer"])
    html = browser.get(f"/plans/campaigns/{campaign.pk}/change-record/").content.decode()
    assert html.index("Summary") < html.index("Hosts, step by step")
    for needle in ("CHG-17", "ada", "drafted", "submitted", "approved", "oli", "started"):
        assert needle in html, needle
    assert "Ferry&#x27;s own overhead" in html or "Ferry's own overhead" in html
    for host in ("kvm-b1", "kvm-b2"):
        start = html.index(f"{host} <span")
        section = html[start : html.find('<section class="host"', start)]
        for name in STEP_NAMES:
            assert f"<td>{name}</td>" in section, (host, name)
    assert "answer ok: exit 0" in html
    assert "audit_verify --expect-head" in html
    record = client_of(people["viewer"]).get(f"/api/v1/campaigns/{campaign.pk}/change-record/")
    summary = record.json()["summary"]
    assert summary["outcome"] == "completed" and summary["hosts_done"] == 2
    assert summary["vms_moved"] >= 2 and summary["vms_returned"] == summary["vms_moved"]
    roles = {p["role"]: p["who"] for p in summary["people"]}
    assert roles["drafted"] == "ada" and roles["approved"] == "ann" and roles["started"] == "oli"
    assert summary["chain_head"]["sequence"] > 0

    pdf = browser.get(f"/plans/campaigns/{campaign.pk}/change-record.pdf")
    assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF")
    api_pdf = client_of(people["viewer"]).get(f"/api/v1/campaigns/{campaign.pk}/change-record/pdf/")
    assert api_pdf.status_code == 200 and api_pdf.content.startswith(b"%PDF")

    # -- notifications: the campaign's events reach the global and its own subscriptions --
    _deliver_all()
    sent = [
        (json.loads(body), headers)
        for headers, body in handler.received
        if json.loads(body)["event"].startswith("campaign.")
    ]
    events = [p["event"] for p, _ in sent]
    for expected in (
        "campaign.submitted",
        "campaign.approved",
        "campaign.started",
        "campaign.host_maintenance",
        "campaign.host_action_done",
        "campaign.failback_done",
        "campaign.finished",
    ):
        assert events.count(expected) >= 1, (expected, events)
    assert events.count("campaign.host_maintenance") == 4  # two hosts × two subscriptions
    for payload, headers in sent:
        assert headers["X-Ferry-Event"] == payload["event"]
        assert payload["campaign"]["id"] == campaign.pk
        assert "secret-detail" not in json.dumps(payload)
    done = [p for p, _ in sent if p["event"] == "campaign.host_action_done"][0]
    assert done["answers"][0]["outcome"] == "exit 0" and "duration_ms" in done
    deliveries = NotificationDelivery.objects.filter(campaign_id=campaign.pk)
    assert set(deliveries.values_list("subscription_id", flat=True)) == {everything.pk, mine.pk}
    assert not NotificationDelivery.objects.filter(subscription=plan_only).exists()
    # Every campaign delivery verifies with its subscription's secret.
    for headers, body in handler.received:
        if json.loads(body)["event"].startswith("campaign."):
            assert signature_valid(everything.secret, body, headers[SIGNATURE_HEADER]) or (
                signature_valid(mine.secret, body, headers[SIGNATURE_HEADER])
            )


def test_it_tells_subscribers_why_a_campaign_paused(people, site_a, settings, tmp_path):
    _hook_script(tmp_path, settings, code=3)
    free_anti_affinity()
    subscription_create(actor=people["admin"], kind="email", target="ops@example.com")
    campaign = _campaign(people, ["kvm-a1"], failback=False, hook=True)
    campaign_start(campaign=campaign, actor=people["operator"])

    assert play(campaign).status == "paused"

    failed = NotificationDelivery.objects.get(event="host_action_failed")
    payload = json.loads(failed.body)
    assert payload["host"] == "kvm-a1" and payload["answers"][0]["outcome"] == "exit 3"
    assert "exit 3" in payload["reason"] and "secret-detail" not in failed.body
    _deliver_all()
    from django.core import mail

    subjects = [m.subject for m in mail.outbox]
    assert "[Ferry] campaign 'patch site-b' host_action_failed" in subjects
    record = client_of(people["auditor"]).get(f"/api/v1/campaigns/{campaign.pk}/change-record/")
    kinds = {d["kind"] for d in record.json()["summary"]["deviations"]}
    assert {"pause", "hook"} <= kinds
    steps = record.json()["hosts"][0]["steps"]
    assert steps[3]["state"] == "failed" and steps[4]["state"] == "pending"
    campaign_resume(campaign=campaign, actor=people["operator"])
    assert NotificationDelivery.objects.filter(event="host_action_failed").count() == 1


def test_it_tells_subscribers_when_the_gate_pauses_a_campaign(people, site_a, monkeypatch):
    from migrations_app.execution.drivers.rehearsal import RehearsalSession

    def refuse(self):
        raise RuntimeError("injected: this VM cannot move")

    monkeypatch.setattr(RehearsalSession, "start", refuse)
    free_anti_affinity()
    subscription_create(actor=people["admin"], kind="email", target="ops@example.com")
    campaign = _campaign(people, ["kvm-a1"], failback=False)
    campaign_start(campaign=campaign, actor=people["operator"])

    assert play(campaign).status == "paused"

    gate = NotificationDelivery.objects.get(event="gate_paused")
    payload = json.loads(gate.body)
    assert payload["event"] == "campaign.gate_paused" and payload["host"] == "kvm-a1"
    assert "Nothing was done" in payload["reason"]
    timeline = client_of(people["viewer"]).get(f"/api/v1/campaigns/{campaign.pk}/timeline/")
    gate_step = timeline.json()["hosts"][0]["steps"][2]
    assert gate_step["name"] == "gate" and gate_step["state"] == "failed"
