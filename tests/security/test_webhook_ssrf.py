"""M2 and L2 (security review): webhooks go to public addresses only (or receivers an admin
allowed), checked when subscribing and again before each delivery, sent to the address
that was checked; raw network errors reach admins only. Secrets are shown once; each
person sees and deletes only their own subscriptions and deliveries.

No traffic leaves the machine: the only receiver is a loopback server this test starts,
and the "public" host is a name this test resolves to it.
"""

import http.server
import socket
import threading

import pytest
from django.core.exceptions import ValidationError

from dashboard.errors import InputError
from migrations_app.models.notifications import NotificationDelivery, NotificationSubscription
from migrations_app.notifications import webhook_guard
from migrations_app.notifications.services import notification_deliver, subscription_create
from migrations_app.workflow.services import plan_submit

pytestmark = pytest.mark.django_db

INTERNAL = [
    "http://127.0.0.1:6379/",
    "http://127.1/",
    "http://localhost:8000/admin/",
    "http://[::1]:5432/",
    "http://[::ffff:127.0.0.1]/",
    "http://169.254.169.254/latest/meta-data/",
    "http://10.0.0.5:2375/containers/create",
    "http://192.168.1.1/",
    "http://172.16.0.1/",
    "http://100.100.100.200/",
    "http://[fd00:ec2::254]/",
    "http://224.0.0.1/",
    "http://0.0.0.0/",
    "http://2130706433/",
]


class _Receiver(http.server.BaseHTTPRequestHandler):
    hits: list = []

    def do_POST(self):
        self.rfile.read(int(self.headers["Content-Length"]))
        type(self).hits.append(self.headers["Host"])
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def loopback_receiver():
    handler = type("R", (_Receiver,), {"hits": []})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield handler, server.server_address[1]
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("url", INTERNAL)
def test_it_refuses_internal_and_metadata_targets_at_subscription(people, url):
    with pytest.raises((InputError, ValidationError)):
        subscription_create(actor=people["admin"], kind="webhook", target=url)
    assert NotificationSubscription.objects.count() == 0


def test_it_refuses_them_over_the_api_with_400(api_as):
    client = api_as("planner")
    plan = client.post("/api/v1/plans/", {"name": "p"}, format="json").json()["id"]
    for url in ("http://127.0.0.1:6379/", "http://169.254.169.254/", "http://[::1]:5432/"):
        answer = client.post(
            "/api/v1/notification-subscriptions/",
            {"kind": "webhook", "target": url, "plan": plan},
            format="json",
        )
        assert answer.status_code == 400, answer.content


def test_it_allows_internal_receivers_an_admin_listed_but_never_metadata(people, settings):
    settings.FERRY_WEBHOOK_ALLOW_HOSTS = ["127.0.0.1/32", ".hooks.internal", "169.254.0.0/16"]
    subscription_create(actor=people["admin"], kind="webhook", target="http://127.0.0.1:1/x")
    with pytest.raises(InputError, match="link-local"):
        subscription_create(actor=people["admin"], kind="webhook", target="http://169.254.169.254/")
    assert webhook_guard._name_allowed("ci.hooks.internal", [".hooks.internal"])
    assert not webhook_guard._name_allowed("evilhooks.internal", [".hooks.internal"])


def test_it_checks_again_at_send_time_and_connects_to_the_checked_address(
    people, validated_plan, loopback_receiver, monkeypatch, settings
):
    handler, port = loopback_receiver
    answers = {"hooks.example": "93.184.216.34"}  # a public address, at subscription time
    real = socket.getaddrinfo

    def fake_getaddrinfo(host, *args, **kwargs):
        if host in answers:
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (answers[host], port))]
        return real(host, *args, **kwargs)

    monkeypatch.setattr(webhook_guard.socket, "getaddrinfo", fake_getaddrinfo)
    url = f"http://hooks.example:{port}/hook"
    subscription_create(actor=people["admin"], kind="webhook", target=url)
    # DNS rebinding: by send time the name points at loopback. The delivery is refused.
    answers["hooks.example"] = "127.0.0.1"
    plan_submit(plan=validated_plan, actor=people["planner"])
    delivery = notification_deliver(NotificationDelivery.objects.get().pk)
    attempt = delivery.attempt_log.get()
    assert not attempt.ok and handler.hits == []
    assert attempt.error == "refused: the target is not an allowed address"
    assert "127.0.0.1" in attempt.error_detail
    # An admin allows the name: Ferry connects to the address it checked, keeping the name
    # for the Host header.
    settings.FERRY_WEBHOOK_ALLOW_HOSTS = ["hooks.example"]
    NotificationDelivery.objects.filter(pk=delivery.pk).update(status="pending")
    notification_deliver(delivery.pk)
    assert handler.hits == [f"hooks.example:{port}"]


def test_it_shows_raw_network_errors_to_admins_only(people, validated_plan, api_as, settings):
    settings.FERRY_WEBHOOK_ALLOW_HOSTS = ["127.0.0.1/32"]
    planner = api_as("planner", username="pl-own")
    planner.post(
        "/api/v1/notification-subscriptions/",
        {"kind": "webhook", "target": "http://127.0.0.1:9/x", "plan": validated_plan.pk},
        format="json",
    )
    plan_submit(plan=validated_plan, actor=people["planner"])
    notification_deliver(NotificationDelivery.objects.get().pk)
    mine = planner.get("/api/v1/notification-deliveries/").json()["results"][0]
    assert mine["attempt_log"][0]["error"] == "connection refused"
    assert mine["attempt_log"][0]["error_detail"] == ""
    admin = api_as("admin").get("/api/v1/notification-deliveries/").json()["results"][0]
    assert "Connection refused" in admin["attempt_log"][0]["error_detail"]


def test_it_shows_a_secret_once_and_scopes_subscriptions_to_their_creator(
    api_as, validated_plan, settings
):
    settings.FERRY_WEBHOOK_ALLOW_HOSTS = ["127.0.0.1/32"]
    alice, bob = api_as("planner", username="alice"), api_as("operator", username="bob")
    body = {"kind": "webhook", "target": "http://127.0.0.1:9/x", "plan": validated_plan.pk}
    created = alice.post("/api/v1/notification-subscriptions/", body, format="json").json()
    assert len(created["secret"]) > 20
    again = alice.get(f"/api/v1/notification-subscriptions/{created['id']}/").json()
    assert again["secret"] == ""
    assert bob.get("/api/v1/notification-subscriptions/").json()["results"] == []
    assert bob.get(f"/api/v1/notification-subscriptions/{created['id']}/").status_code == 404
    assert bob.delete(f"/api/v1/notification-subscriptions/{created['id']}/").status_code == 404
    assert NotificationSubscription.objects.filter(pk=created["id"]).exists()
    admin = api_as("admin")
    assert admin.get(f"/api/v1/notification-subscriptions/{created['id']}/").status_code == 200
    assert alice.delete(f"/api/v1/notification-subscriptions/{created['id']}/").status_code == 204
