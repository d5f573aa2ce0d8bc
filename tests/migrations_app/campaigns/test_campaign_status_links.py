"""A campaign's status link (issue 17): the same tokens, roles, expiry and revocation as a
plan's, a public page with the campaign's state, per-host steps and plans at a glance, and
nothing a stakeholder must not see."""

from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from dashboard.accounts.models import RoleGrant
from dashboard.audit.models import AuditEvent
from migrations_app.campaigns.services import campaign_create, campaign_hook_add
from migrations_app.models import Campaign, ShareLink
from migrations_app.sharing.consumers import StatusConsumer
from migrations_app.sharing.services import share_link_create, share_link_revoke
from tests.migrations_app.campaigns.test_campaign_hooks_api import client_of

pytestmark = pytest.mark.django_db

SECRET_REASON = "Gate of kvm-b1: vm-payroll-db still running (libvirt said: internal error 42)"


@pytest.fixture
def campaign(people, site_b, settings):
    settings.FERRY_WEBHOOK_ALLOW_HOSTS = ["127.0.0.1/32"]
    campaign = campaign_create(
        actor=people["planner"], name="patch site-b", hosts=["kvm-b1", "kvm-b2"]
    )
    campaign_hook_add(
        campaign=campaign,
        actor=people["planner"],
        event="host_action",
        kind="http",
        url="http://127.0.0.1:9/ansible-secret-hook",
    )
    now = timezone.now()
    Campaign.objects.filter(pk=campaign.pk).update(
        status="paused", status_reason=SECRET_REASON, started_at=now - timedelta(minutes=5)
    )
    first = campaign.steps.get(position=0)
    first.phase = "gate"
    first.reason = SECRET_REASON
    first.timeline = {
        "maintenance": {"start": (now - timedelta(minutes=5)).isoformat()},
        "drain": {"start": (now - timedelta(minutes=5)).isoformat(), "end": now.isoformat()},
        "gate": {"start": now.isoformat(), "checked": now.isoformat()},
    }
    first.save()
    return Campaign.objects.get(pk=campaign.pk)


def test_planners_and_operators_create_campaign_links_and_others_may_not(people, campaign):
    url = f"/api/v1/campaigns/{campaign.pk}/share-links/"
    for role in ("planner", "operator", "admin"):
        answer = client_of(people[role]).post(url, {"label": role}, format="json")
        assert answer.status_code == 201, (role, answer.content)
        assert answer.json()["campaign"] == campaign.pk and "/status/" in answer.json()["url"]
    for role in ("approver", "viewer", "auditor"):
        assert client_of(people[role]).post(url, {}, format="json").status_code == 403, role
        assert client_of(people[role]).get(url).status_code == 403, role
    listed = client_of(people["operator"]).get(url).json()
    assert len(listed) == 3 and "url" not in listed[0]
    everything = client_of(people["operator"]).get("/api/v1/share-links/").json()
    rows = everything["results"] if isinstance(everything, dict) else everything
    assert {r["campaign"] for r in rows} == {campaign.pk}
    event = AuditEvent.objects.filter(action="sharelink.create").last()
    assert event.after["campaign"] == campaign.pk and "plan" not in event.after


def test_the_public_page_shows_steps_and_plans_but_no_internal_detail(people, campaign):
    _, token = share_link_create(campaign=campaign, actor=people["operator"])
    page = Client().get(f"/status/{token}/")
    assert page.status_code == 200
    assert page["Cache-Control"] == "no-store" and page["Referrer-Policy"] == "no-referrer"
    html = page.content.decode()
    assert "patch site-b" in html and "paused: waiting for an operator" in html
    for name in ("enter maintenance", "drain", "gate", "host action", "wait healthy"):
        assert f"<th>{name}</th>" in html, name
    assert "exit maintenance" in html and "failback" in html
    assert "host 1" in html and "host 2" in html
    for secret in ("kvm-b1", "kvm-b2", "vm-payroll-db", "internal error", "ansible-secret-hook"):
        assert secret not in html, secret
    assert 'data-step="gate">failed' in html
    snapshot = Client().get(f"/status/{token}/snapshot/")
    assert snapshot.status_code == 200
    body = snapshot.json()
    assert body["kind"] == "campaign" and body["campaign"]["status"] == "paused"
    assert [s["key"] for s in body["hosts"][0]["steps"]][:3] == ["maintenance", "drain", "gate"]
    for secret in ("kvm-b1", "vm-payroll-db", "internal error", "ansible-secret-hook"):
        assert secret not in snapshot.content.decode(), secret
    # The link's creator may choose to show host names.
    _, named = share_link_create(campaign=campaign, actor=people["operator"], show_host_names=True)
    html = Client().get(f"/status/{named}/").content.decode()
    assert "kvm-b1" in html and "vm-payroll-db" not in html
    # Nothing but GET/HEAD, no stream for a campaign link (its page polls).
    assert Client().post(f"/status/{token}/").status_code == 405
    assert StatusConsumer()._snapshot(token) is None


def test_a_revoked_or_expired_campaign_link_answers_410(people, campaign):
    link, token = share_link_create(campaign=campaign, actor=people["planner"])
    answer = client_of(people["operator"]).post(f"/api/v1/share-links/{link.pk}/revoke/")
    assert answer.status_code == 200 and answer.json()["state"] == "revoked"
    assert Client().get(f"/status/{token}/").status_code == 410
    assert Client().get(f"/status/{token}/snapshot/").status_code == 410
    revoke = AuditEvent.objects.get(action="sharelink.revoke")
    assert revoke.after == {"state": "revoked", "campaign": campaign.pk}
    # Revoking twice changes nothing more.
    share_link_revoke(link=link, actor=people["planner"])
    assert AuditEvent.objects.filter(action="sharelink.revoke").count() == 1

    soon = timezone.now() + timedelta(hours=1)
    link, token = share_link_create(campaign=campaign, actor=people["planner"], expires_at=soon)
    assert Client().get(f"/status/{token}/").status_code == 200
    ShareLink.objects.filter(pk=link.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    gone = Client().get(f"/status/{token}/")
    assert gone.status_code == 410 and b"expired" in gone.content
    assert Client().get("/status/not-a-token/").status_code == 404


def test_a_link_shows_one_plan_or_one_campaign(people, campaign, validated_plan):
    from dashboard.errors import InputError

    with pytest.raises(InputError):
        share_link_create(actor=people["planner"], plan=validated_plan, campaign=campaign)
    with pytest.raises(InputError):
        share_link_create(actor=people["planner"])
    assert not ShareLink.objects.exists()


def test_the_campaign_page_creates_and_revokes_links(people, campaign):
    browser = Client()
    browser.force_login(people["operator"])
    detail = f"/plans/campaigns/{campaign.pk}/"
    page = browser.get(detail).content.decode()
    assert "Status links" in page and f"/plans/campaigns/{campaign.pk}/share-links/" in page
    answer = browser.post(
        f"/plans/campaigns/{campaign.pk}/share-links/", {"label": "owners", "hours": "24"}
    )
    assert answer.status_code == 302 and answer["Location"] == detail
    link = ShareLink.objects.get(campaign=campaign)
    assert link.label == "owners" and link.expires_at > timezone.now() + timedelta(hours=23)
    page = browser.get(detail).content.decode()
    assert "copy it now" in page and "/status/" in page
    bad = browser.post(f"/plans/campaigns/{campaign.pk}/share-links/", {"hours": "lots"})
    assert bad.status_code == 302 and ShareLink.objects.count() == 1
    assert "whole number of hours" in browser.get(detail).content.decode()
    revoked = browser.post(f"/share-links/{link.pk}/revoke/")
    assert revoked.status_code == 302 and revoked["Location"] == detail
    link.refresh_from_db()
    assert link.state() == "revoked"
    viewer = Client()
    viewer.force_login(people["viewer"])
    assert viewer.post(f"/plans/campaigns/{campaign.pk}/share-links/").status_code == 403


def test_a_planner_scoped_elsewhere_finds_no_campaign_to_share(make_user, people, campaign):
    for host in [s.host for s in campaign.steps.all()]:
        host.group = "site-b"
        host.save(update_fields=["group"])
    outsider = make_user("pa-elsewhere")
    RoleGrant.objects.create(user=outsider, role="planner", host_group="site-a")
    insider = make_user("pb-inside")
    RoleGrant.objects.create(user=insider, role="planner", host_group="site-b")
    url = f"/api/v1/campaigns/{campaign.pk}/share-links/"
    assert client_of(outsider).post(url, {}, format="json").status_code == 404
    assert client_of(outsider).get(f"/api/v1/campaigns/{campaign.pk}/timeline/").status_code == 404
    assert client_of(insider).post(url, {}, format="json").status_code == 201
    browser = Client()
    browser.force_login(outsider)
    assert browser.post(f"/plans/campaigns/{campaign.pk}/share-links/").status_code == 404
    assert browser.get(f"/plans/campaigns/{campaign.pk}/change-record/").status_code == 404
    assert ShareLink.objects.count() == 1
