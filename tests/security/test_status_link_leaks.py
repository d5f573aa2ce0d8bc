"""M4 (security review): a status link (no login) showed error text with host names, URIs
and worker names, joined the signed-in viewers' event group, and never expired by default.
Now its stream has its own group with redacted copies of events, its snapshot replaces
every free text with a classified phrase, and links expire after 7 days unless their
creator explicitly chose "never" (which the page warns about).
"""

from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from migrations_app.live import events
from migrations_app.live.redaction import status_event, status_group
from migrations_app.models import ItemAttempt, MigrationPlan, PlanItem, PlanRun
from migrations_app.sharing.consumers import StatusConsumer
from migrations_app.sharing.services import share_link_create

pytestmark = pytest.mark.django_db

SECRET_TEXT = "Source host kvm1: Could not connect to qemu+tls://kvm1.corp.internal:16514/system"
WORKER = "worker-17.corp.internal:4242:Thread-3:ab12"


def _failed_run(plan, people):
    item = PlanItem.objects.get(plan=plan)
    run = PlanRun.objects.create(plan=plan, started_by=people["operator"])
    ItemAttempt.objects.create(
        run=run,
        item=item,
        driver=ItemAttempt.Driver.LIBVIRT,
        source_host=item.source_host,
        destination_host=item.destination_host,
        status="failed",
        error_class="connection_lost",
        error_message=SECRET_TEXT,
    )
    PlanItem.objects.filter(pk=item.pk).update(status="failed", status_reason=SECRET_TEXT)
    MigrationPlan.objects.filter(pk=plan.pk).update(status="failed", status_reason=SECRET_TEXT)
    return run


def test_it_keeps_error_text_out_of_the_status_page_and_its_snapshot(validated_plan, people):
    _failed_run(validated_plan, people)
    for show in (False, True):
        _, token = share_link_create(
            plan=validated_plan, actor=people["operator"], show_host_names=show
        )
        for url in (f"/status/{token}/", f"/status/{token}/snapshot/"):
            body = Client().get(url).content.decode()
            assert "corp.internal" not in body and "qemu+tls" not in body, (show, url)
            assert "16514" not in body
        snapshot = Client().get(f"/status/{token}/snapshot/").json()
        attempt = snapshot["items"][0]["attempt"]
        assert attempt["error_class"] == "connection_lost"
        assert attempt["error_message"] == "A host could not be reached during the move."


def test_it_streams_status_links_on_their_own_group(validated_plan, people):
    link, token = share_link_create(plan=validated_plan, actor=people["operator"])
    consumer = StatusConsumer()
    consumer.scope = {"url_route": {"kwargs": {"token": token}}}
    snapshot = consumer._snapshot(token)
    assert snapshot is not None
    assert consumer.groups_to_join[0] == status_group(validated_plan.pk)
    assert events.plan_group(validated_plan.pk) not in consumer.groups_to_join


def test_it_publishes_a_redacted_copy_of_each_event_to_the_status_group(
    validated_plan, people, monkeypatch, django_capture_on_commit_callbacks
):
    sent = []
    monkeypatch.setattr(events, "publish", lambda groups, message: sent.append((groups, message)))
    run = PlanRun.objects.create(plan=validated_plan, started_by=people["operator"])
    with django_capture_on_commit_callbacks(execute=True):
        events.run_event(
            run=run,
            kind="item.started",
            payload={"attempt": 1, "worker": WORKER, "phase": "preflight"},
        )
        events.run_event(
            run=run,
            kind="item.finished",
            payload={
                "status": "failed",
                "error_class": "connection_lost",
                "error_message": SECRET_TEXT,
                "reason": SECRET_TEXT,
                "total_time_ms": 1200,
            },
        )
    public = [m for groups, m in sent if groups == [status_group(validated_plan.pk)]]
    private = [m for groups, m in sent if events.plan_group(validated_plan.pk) in groups]
    assert len(public) == 2 and len(private) == 2
    assert private[0]["payload"]["worker"] == WORKER  # signed-in viewers keep the details
    text = str(public)
    assert "corp.internal" not in text and "qemu" not in text and "Thread" not in text
    assert public[0]["payload"] == {"attempt": 1, "phase": "preflight"}
    assert public[1]["payload"]["explanation"].startswith("A host could not be reached")
    assert public[1]["payload"]["total_time_ms"] == 1200


def test_it_drops_unknown_and_non_word_values_from_status_events():
    message = {
        "run": 1,
        "plan": 2,
        "seq": 3,
        "kind": "run.paused",
        "item": None,
        "at": "now",
        "payload": {"status": "paused by kvm1!", "reason": "window on kvm1", "iteration": 4},
    }
    assert status_event(message)["payload"] == {"iteration": 4}


def test_it_expires_links_after_seven_days_unless_never_is_chosen(validated_plan, people, api_as):
    link, _ = share_link_create(plan=validated_plan, actor=people["operator"])
    assert timedelta(days=6, hours=23) < link.expires_at - timezone.now() <= timedelta(days=7)
    forever, _ = share_link_create(
        plan=validated_plan, actor=people["operator"], never_expires=True
    )
    assert forever.expires_at is None
    client = api_as("operator")
    made = client.post(f"/api/v1/plans/{validated_plan.pk}/share-links/", {}, format="json")
    assert made.status_code == 201 and made.json()["expires_at"] is not None
    both = client.post(
        f"/api/v1/plans/{validated_plan.pk}/share-links/",
        {"never_expires": True, "expires_at": "2099-01-01T00:00:00Z"},
        format="json",
    )
    assert both.status_code == 400
    page = Client()
    page.force_login(people["operator"])
    answer = page.post(
        f"/plans/{validated_plan.pk}/share-links/", {"never_expires": "on"}, follow=True
    )
    assert "never expires" in answer.content.decode()
    assert "until someone revokes it" in answer.content.decode()
