"""`make run`'s demo: demo_setup leaves a submitted rehearsal campaign a newcomer approves
and starts, and it runs to its end on the demo hosts."""

import pytest
from django.core.management import call_command

from migrations_app.campaigns.services import campaign_approve, campaign_start
from migrations_app.models import Campaign
from tests.migrations_app.campaigns.conftest import play

pytestmark = pytest.mark.django_db(transaction=True)


def test_it_leaves_a_campaign_a_newcomer_can_approve_start_and_follow(people):
    call_command("demo_setup", "--no-admin")
    call_command("demo_setup", "--no-admin")  # safe to run again: still one campaign
    campaign = Campaign.objects.get()
    assert campaign.status == "submitted" and "rehearsal" in campaign.name
    assert [s.host.name for s in campaign.steps.order_by("position")] == ["kvm-b1", "kvm-b2"]

    campaign_approve(campaign=campaign, actor=people["admin"])
    campaign_start(campaign=campaign, actor=people["operator"])
    campaign = play(campaign, timeout=120)

    assert campaign.status == "completed", campaign.status_reason
    assert campaign.plans.get(campaign_role="failback").status == "completed"
