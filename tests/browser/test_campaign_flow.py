"""A maintenance campaign in a real browser against a real server and workers (rehearsal
driver): a planner drafts and submits it, a second person approves it, an operator starts
it and follows each host's phases live, without a reload, to the end of the failback."""

import re

import pytest

from migrations_app.models import Campaign
from tests.browser.conftest import FerryServer, login, screenshot
from tests.browser.test_plan_flow import small_site, wait_until  # noqa: F401

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def server(transactional_db):
    server = FerryServer(
        extra_env={"FERRY_REHEARSAL_SPEED": "300", "FERRY_CAMPAIGN_POLL_SECONDS": "1"}
    ).start()
    yield server
    server.stop()


def test_a_campaign_is_created_approved_by_a_second_person_started_and_followed_live(
    server,
    small_site,  # noqa: F811
    new_page,
):
    page = new_page(viewport=(1280, 1000))
    login(page, server, "planner1", "pw-planner1")
    page.goto(f"{server.url}/plans/campaigns/")
    form = page.locator("form[aria-label='new campaign']")
    form.locator("input[name=name]").fill("Patch src")
    form.locator("input[name=change_ticket]").fill("CHG-1717")
    form.locator("input[name=hosts]").fill("src")
    form.locator("input[name=failback]").check()
    form.locator("input[name=no_tls]").check()
    form.locator("button[type=submit]").click()
    page.wait_for_url(re.compile(r"/plans/campaigns/\d+/$"))
    campaign_url = page.url
    assert "rehearsal" in page.locator("h1").inner_text()
    page.click("button[data-action=submit]")
    page.wait_for_load_state()
    assert page.locator("button[data-action=approve]").count() == 0  # not their own

    login(page, server, "approver1", "pw-approver1")
    page.goto(campaign_url)
    page.fill("input[name=comment]", "patch window agreed")
    page.click("button[data-action=approve]")
    page.wait_for_load_state()
    assert page.locator("#campaign-status").inner_text() == "approved"

    login(page, server, "operator1", "pw-operator1")
    page.goto(campaign_url)
    page.click("button[data-action=start]")
    page.wait_for_load_state()
    # From here on the page is never reloaded: the table follows the campaign.
    row = page.locator("#campaign-steps tr[data-step]")
    wait_until(
        lambda: row.locator(".phase").inner_text() != "pending", timeout=60, what="drain starts"
    )
    wait_until(
        lambda: page.locator("#campaign-status").inner_text() == "completed",
        timeout=180,
        what="the campaign to complete",
    )
    assert row.locator(".phase").inner_text() == "done"
    for phase in ("drain", "gate", "host_action", "wait_healthy", "exit"):
        assert "→" in row.locator(f".t-{phase}").inner_text(), phase
    screenshot(page, "campaign-completed")
    campaign = Campaign.objects.get()
    assert campaign.approved_by_name == "approver1" and campaign.author_name == "planner1"
    assert campaign.plans.get(campaign_role="failback").status == "completed"
