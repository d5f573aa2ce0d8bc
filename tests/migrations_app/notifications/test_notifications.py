"""Notifications: signed webhook deliveries to a real local receiver, retries, email."""

import http.server
import json
import threading

import pytest
from django.core import mail

from migrations_app.models.notifications import NotificationDelivery
from migrations_app.notifications.services import (
    SIGNATURE_HEADER,
    backoff_seconds,
    notification_deliver,
    signature_valid,
    subscription_create,
)
from migrations_app.workflow.services import plan_approve, plan_reject, plan_submit

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _loopback_receivers_allowed(settings):
    # The receivers below listen on loopback, which only an admin's allowlist opens (M2).
    settings.FERRY_WEBHOOK_ALLOW_HOSTS = ["127.0.0.1/32"]


class _Receiver(http.server.BaseHTTPRequestHandler):
    """Records what it receives; answers with the status the test sets."""

    received: list = []
    answer_with = 204

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).received.append((dict(self.headers), body))
        self.send_response(type(self).answer_with)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def receiver():
    handler = type("Receiver", (_Receiver,), {"received": [], "answer_with": 204})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield handler, f"http://127.0.0.1:{server.server_address[1]}/hook"
    server.shutdown()
    server.server_close()


def _deliver_all():
    for delivery_id in NotificationDelivery.objects.order_by("pk").values_list("pk", flat=True):
        notification_deliver(delivery_id)


def test_it_sends_signed_webhooks_that_verify(
    receiver, validated_plan, people, django_capture_on_commit_callbacks
):
    handler, url = receiver
    subscription = subscription_create(actor=people["admin"], kind="webhook", target=url)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        plan_submit(plan=validated_plan, actor=people["planner"])
        plan_approve(plan=validated_plan, actor=people["approver"], comment="fine")
    assert callbacks, "deliveries are enqueued only after commit"
    _deliver_all()
    assert len(handler.received) == 2
    events = []
    for headers, body in handler.received:
        assert signature_valid(subscription.secret, body, headers[SIGNATURE_HEADER])
        assert not signature_valid("wrong-secret", body, headers[SIGNATURE_HEADER])
        payload = json.loads(body)
        assert payload["plan"]["id"] == validated_plan.pk
        events.append(payload["event"])
    assert sorted(events) == ["plan.approved", "plan.submitted"]
    delivery = NotificationDelivery.objects.filter(event="approved").get()
    assert delivery.status == "delivered" and delivery.attempt_log.get().status_code == 204


def test_it_retries_with_backoff_and_logs_every_attempt(receiver, validated_plan, people, settings):
    settings.FERRY_NOTIFY_MAX_ATTEMPTS = 3
    handler, url = receiver
    handler.answer_with = 500
    subscription_create(
        actor=people["planner"],
        kind="webhook",
        target=url,
        plan=validated_plan,
        events=["submitted"],
    )
    plan_submit(plan=validated_plan, actor=people["planner"])
    delivery = NotificationDelivery.objects.get()
    first = notification_deliver(delivery.pk)
    assert first.status == "pending" and first.next_attempt_at is not None
    handler.answer_with = 200
    second = notification_deliver(delivery.pk)
    assert second.status == "delivered"
    log = list(second.attempt_log.values_list("number", "ok", "status_code"))
    assert log == [(1, False, 500), (2, True, 200)]
    assert handler.received[0][1] == handler.received[1][1], "every retry sends the same body"
    assert [backoff_seconds(n) for n in (1, 2, 3)] == [30, 60, 120]


def test_it_gives_up_after_the_last_attempt(validated_plan, people, settings):
    settings.FERRY_NOTIFY_MAX_ATTEMPTS = 2
    # Port 9 on loopback (discard) is closed here: the connection is refused at once.
    subscription_create(actor=people["admin"], kind="webhook", target="http://127.0.0.1:9/x")
    plan_submit(plan=validated_plan, actor=people["planner"])
    delivery = NotificationDelivery.objects.get()
    notification_deliver(delivery.pk)
    final = notification_deliver(delivery.pk)
    assert final.status == "failed" and final.attempt_log.count() == 2
    assert notification_deliver(delivery.pk) is None


def test_it_emails_subscribers_of_the_plan_only(validated_plan, people):
    subscription_create(
        actor=people["planner"], kind="email", target="owners@example.org", plan=validated_plan
    )
    other = validated_plan.__class__.objects.create(name="other", author=people["planner"])
    subscription_create(actor=people["planner"], kind="email", target="x@example.org", plan=other)
    plan_submit(plan=validated_plan, actor=people["planner"])
    plan_reject(plan=validated_plan, actor=people["approver"], reason="window too short")
    _deliver_all()
    assert [m.to for m in mail.outbox] == [["owners@example.org"], ["owners@example.org"]]
    assert "window too short" in mail.outbox[1].body


def test_it_refuses_subscriptions_that_are_not_http_or_email(people):
    from django.core.exceptions import ValidationError

    with pytest.raises(ValidationError):
        subscription_create(actor=people["admin"], kind="webhook", target="file:///etc/passwd")
    with pytest.raises(ValidationError):
        subscription_create(actor=people["admin"], kind="email", target="not-an-address")


def test_it_lets_only_admins_subscribe_to_every_plan_over_the_api(people, validated_plan):
    from rest_framework.test import APIClient

    client = APIClient()
    client.force_authenticate(people["planner"])
    url = "/api/v1/notification-subscriptions/"
    body = {"kind": "email", "target": "a@example.org"}
    assert client.post(url, body, format="json").status_code == 403
    answer = client.post(url, {**body, "plan": validated_plan.pk}, format="json")
    assert answer.status_code == 201, answer.content
    client.force_authenticate(people["admin"])
    assert client.post(url, body, format="json").status_code == 201
    client.force_authenticate(people["viewer"])
    assert client.get(url).status_code == 403
