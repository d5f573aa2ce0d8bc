"""Campaign pages: list and create form, detail with its step table, workflow buttons that
honour roles and four eyes."""

import pytest

from migrations_app.models import Campaign

pytestmark = pytest.mark.django_db


def signed_in(client, user):
    client.force_login(user)
    return client


def test_it_creates_submits_and_approves_a_campaign_through_the_pages(
    client, people, site_b, django_capture_on_commit_callbacks
):
    page = signed_in(client, people["planner"])
    assert "New campaign" in page.get("/plans/campaigns/").content.decode()
    answer = page.post(
        "/plans/campaigns/new/",
        {"name": "patch b", "hosts": "kvm-b1 kvm-b2", "change_ticket": "CHG-9", "no_tls": "on"},
    )
    campaign = Campaign.objects.get()
    assert answer.status_code == 302 and answer.url == f"/plans/campaigns/{campaign.pk}/"
    body = page.get(answer.url).content.decode()
    assert "kvm-b1" in body and "kvm-b2" in body and 'data-action="submit"' in body
    assert "rehearsal" in body
    page.post(f"/plans/campaigns/{campaign.pk}/submit/")
    # The author's approval is refused with the four-eyes message.
    page.post(f"/plans/campaigns/{campaign.pk}/approve/")
    campaign.refresh_from_db()
    assert campaign.status == "submitted"
    page = signed_in(client, people["approver"])
    page.post(f"/plans/campaigns/{campaign.pk}/approve/", {"content_hash": campaign.content_hash})
    campaign.refresh_from_db()
    assert campaign.status == "approved" and campaign.approved_by_name == "ann"
    viewer = signed_in(client, people["viewer"])
    body = viewer.get(f"/plans/campaigns/{campaign.pk}/").content.decode()
    assert "data-action=" not in body
    viewer.post(f"/plans/campaigns/{campaign.pk}/start/")
    campaign.refresh_from_db()
    assert campaign.status == "approved"


def test_it_says_what_is_wrong_with_a_bad_campaign_form(client, people, site_b):
    page = signed_in(client, people["planner"])
    answer = page.post("/plans/campaigns/new/", {"name": "x", "hosts": "nope"}, follow=True)
    assert "Unknown host(s): nope." in answer.content.decode()
    assert not Campaign.objects.exists()
