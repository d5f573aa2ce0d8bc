"""Campaign events through the plan notification path: who hears what, subscribing to one
campaign over the API (roles and host-group scope), and the event vocabulary."""

import json

import pytest
from rest_framework.test import APIClient

from dashboard.accounts.models import RoleGrant
from migrations_app.campaigns.services import (
    campaign_approve,
    campaign_cancel,
    campaign_create,
    campaign_reject,
    campaign_submit,
)
from migrations_app.models.notifications import (
    CAMPAIGN_NOTIFY_EVENTS,
    NOTIFY_EVENTS,
    NotificationDelivery,
)
from migrations_app.notifications.services import notify_campaign_event, subscription_create
from tests.factories import host_make

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _loopback_receivers_allowed(settings):
    settings.FERRY_WEBHOOK_ALLOW_HOSTS = ["127.0.0.1/32"]


def client_of(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


@pytest.fixture
def campaign(people):
    host = host_make("notify-h1")
    host.group = "site-a"
    host.save(update_fields=["group"])
    return campaign_create(actor=people["planner"], name="rolling a", hosts=[host.name])


def test_every_campaign_event_is_one_a_subscription_may_ask_for():
    assert set(CAMPAIGN_NOTIFY_EVENTS) <= set(NOTIFY_EVENTS)
    assert all(len(event) <= 20 for event in NOTIFY_EVENTS)  # NotificationDelivery.event


def test_it_tells_global_and_campaign_subscribers_but_not_plan_subscribers(
    people, campaign, validated_plan
):
    everything = subscription_create(actor=people["admin"], kind="email", target="all@x.org")
    mine = subscription_create(
        actor=people["planner"], kind="email", target="c@x.org", campaign=campaign
    )
    only_rejections = subscription_create(
        actor=people["admin"], kind="email", target="r@x.org", events=["rejected"]
    )
    plan_only = subscription_create(
        actor=people["planner"], kind="email", target="p@x.org", plan=validated_plan
    )
    other = campaign_create(actor=people["planner"], name="other", hosts=["notify-h1"])
    elsewhere = subscription_create(
        actor=people["planner"], kind="email", target="o@x.org", campaign=other
    )

    campaign_submit(campaign=campaign, actor=people["planner"])
    campaign_reject(campaign=campaign, actor=people["approver"], reason="wrong window")

    sent = NotificationDelivery.objects.filter(campaign_id=campaign.pk)
    by_event = {}
    for d in sent:
        by_event.setdefault(d.event, set()).add(d.subscription_id)
    assert by_event == {
        "submitted": {everything.pk, mine.pk},
        "rejected": {everything.pk, mine.pk, only_rejections.pk},
    }
    assert not NotificationDelivery.objects.filter(subscription__in=[plan_only, elsewhere])
    rejected = json.loads(sent.filter(event="rejected").first().body)
    assert rejected["event"] == "campaign.rejected" and rejected["reason"] == "wrong window"
    assert rejected["campaign"]["url"].endswith(f"/plans/campaigns/{campaign.pk}/")
    assert rejected["actor"] == "ann"


def test_a_rolled_back_change_tells_nobody(people, campaign, django_capture_on_commit_callbacks):
    subscription_create(actor=people["admin"], kind="email", target="all@x.org")
    campaign_submit(campaign=campaign, actor=people["planner"])
    with pytest.raises(Exception, match="changed since you looked"):
        campaign_approve(campaign=campaign, actor=people["approver"], expected_hash="stale")
    assert not NotificationDelivery.objects.filter(event="approved").exists()
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        campaign_cancel(campaign=campaign, actor=people["admin"], reason="not needed")
    # The delivery is stored in the transaction and enqueued after its commit only.
    assert NotificationDelivery.objects.filter(event="cancelled").count() == 1
    assert any("_deliveries" in getattr(c, "__qualname__", "") for c in callbacks)
    with pytest.raises(ValueError):
        notify_campaign_event(campaign, "attention", actor=people["admin"])


def test_people_subscribe_to_a_campaign_they_may_see_over_the_api(people, make_user, campaign):
    url = "/api/v1/notification-subscriptions/"
    answer = client_of(people["operator"]).post(
        url,
        {"kind": "webhook", "target": "http://127.0.0.1:9/c", "campaign": campaign.pk},
        format="json",
    )
    assert answer.status_code == 201, answer.content
    assert answer.json()["campaign"] == campaign.pk and answer.json()["secret"]
    listed = client_of(people["operator"]).get(url).json()
    rows = listed["results"] if isinstance(listed, dict) else listed
    assert [r["campaign"] for r in rows] == [campaign.pk] and not rows[0]["secret"]
    both = client_of(people["operator"]).post(
        url,
        {
            "kind": "email",
            "target": "a@x.org",
            "campaign": campaign.pk,
            "plan": None,
            "events": ["no_such_event"],
        },
        format="json",
    )
    assert both.status_code == 400
    outsider = make_user("op-elsewhere")
    RoleGrant.objects.create(user=outsider, role="operator", host_group="site-b")
    refused = client_of(outsider).post(
        url, {"kind": "email", "target": "a@x.org", "campaign": campaign.pk}, format="json"
    )
    assert refused.status_code == 404
    global_try = client_of(people["operator"]).post(
        url, {"kind": "email", "target": "a@x.org"}, format="json"
    )
    assert global_try.status_code == 403 and "campaign" in global_try.json()["detail"]
    assert client_of(people["viewer"]).post(url, {}, format="json").status_code == 403
    sub = rows[0]["id"]
    assert client_of(people["operator"]).delete(f"{url}{sub}/").status_code == 204


def test_it_refuses_a_subscription_to_a_plan_and_a_campaign_at_once(
    people, campaign, validated_plan
):
    from django.core.exceptions import ValidationError

    with pytest.raises(ValidationError, match="not both"):
        subscription_create(
            actor=people["admin"],
            kind="email",
            target="a@x.org",
            plan=validated_plan,
            campaign=campaign,
        )
    answer = client_of(people["admin"]).post(
        "/api/v1/notification-subscriptions/",
        {"kind": "email", "target": "a@x.org", "plan": validated_plan.pk, "campaign": campaign.pk},
        format="json",
    )
    assert answer.status_code == 400 and "not both" in answer.content.decode()
