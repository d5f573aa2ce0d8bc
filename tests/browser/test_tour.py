"""README's tour, in a real browser against a real server and workers: the change record
of an evacuation carried out on the rehearsal driver opens with its summary on the first
screen, and a planner builds a "balance site-a" plan from the plans page and reads why
each move was chosen. The screenshots go to test-artifacts/, and to docs/screenshots/
when FERRY_TOUR_SCREENSHOTS=1 (how README's pictures are made)."""

import os
import shutil
from datetime import timedelta

import pytest
from django.utils import timezone

from inventory.models import Host
from inventory.services import host_add
from inventory.sync import host_sync
from migrations_app.models import MigrationPlan, PlanItem
from migrations_app.services.plans import plan_create, plan_evacuate_host, plan_item_remove
from migrations_app.services.validation import plan_validate
from migrations_app.workflow.services import (
    plan_approve,
    plan_pause,
    plan_resume,
    plan_start,
    plan_submit,
)
from tests.browser.conftest import ARTIFACTS, FerryServer, login, screenshot
from tests.browser.test_plan_flow import wait_until
from tests.conftest import REPO
from tests.migrations_app.conftest import DEMO_HOSTS

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
DOCS = REPO / "docs" / "screenshots"


def tour_picture(page, name: str, *, clip: dict | None = None) -> None:
    """Save one of README's pictures (test-artifacts/, and docs/ when asked to); `clip`
    is a region of the whole page."""
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=clip is not None, clip=clip)
    if os.environ.get("FERRY_TOUR_SCREENSHOTS") == "1":
        shutil.copyfile(path, DOCS / f"{name}.png")


@pytest.fixture
def demo_site(demo_uri):
    for name, group in DEMO_HOSTS.items():
        host_sync(host=host_add(name=name, uri=demo_uri(name), actor=None, group=group))


@pytest.fixture
def server(transactional_db):
    # Fast enough for a test, slow enough that the 64 GiB VM's move shows its passes.
    server = FerryServer(extra_env={"FERRY_REHEARSAL_SPEED": "300"}).start()
    yield server
    server.stop()


def _evacuation_run(people) -> MigrationPlan:
    """kvm-b1 evacuated (its anti-affinity VM left out), started outside its window with
    an override, paused and resumed once; the server's workers carry it out."""
    now = timezone.now()
    plan = plan_create(
        actor=people["planner"],
        name="Evacuate kvm-b1 for firmware",
        change_ticket="CHG-4711",
        window_start=now + timedelta(hours=6),
        window_end=now + timedelta(hours=8),
        policy={"require_tls": False, "verify_seconds": 2},
    )
    plan_evacuate_host(plan=plan, host="kvm-b1", actor=people["planner"])
    for item in PlanItem.objects.filter(plan=plan, destination_host__isnull=True):
        plan_item_remove(item=item, actor=people["planner"])
    run = plan_validate(plan=plan, actor=people["planner"])
    assert run.blockers == 0
    plan_submit(plan=plan, actor=people["planner"])
    plan_approve(plan=plan, actor=people["approver"], comment="firmware window agreed")
    plan_start(plan=plan, actor=people["operator"], override_reason="vendor engineer on site today")
    plan_pause(plan=plan, actor=people["operator"], reason="storage team asked for a minute")
    plan_resume(plan=plan, actor=people["operator"])
    return plan


def test_the_change_record_opens_with_its_summary(server, demo_site, people, new_page):
    plan = _evacuation_run(people)
    wait_until(
        lambda: MigrationPlan.objects.get(pk=plan.pk).status == "completed",
        timeout=120,
        what="the evacuation to complete",
    )
    page = new_page(viewport=(1280, 1000))
    login(page, server, "aud", "pw-aud")
    page.goto(f"{server.url}/plans/{plan.pk}/change-record/")
    summary = page.locator("#summary")
    assert "6 of 6 completed" in summary.locator(".outcome").inner_text()
    text = summary.inner_text()
    for expected in ("CHG-4711", "vendor engineer on site today", "oli", "ann", "pat"):
        assert expected in text, expected
    box = summary.bounding_box()
    assert box["y"] + box["height"] <= 1000, "the summary fits the first screen"
    tour_picture(page, "change-record")
    screenshot(page, "change-record-full")


def test_a_planner_builds_a_balance_plan_and_reads_why(server, demo_site, people, new_page):
    page = new_page(viewport=(1280, 1200))
    login(page, server, "pat", "pw-pat")
    page.goto(f"{server.url}/plans/")
    form = page.locator("#balance form")
    form.locator("select[name=group]").select_option("site-a")
    form.locator("input[name=name]").fill("Balance site-a")
    form.locator("input[name=change_ticket]").fill("CHG-4712")
    form.locator("button[type=submit]").click()
    page.wait_for_url("**/plans/*/")
    card = page.locator("#balance")
    assert "target reached" in card.inner_text()
    reasons = page.locator("table.items td.note")
    assert reasons.count() >= 1 and "into the band" in reasons.first.inner_text()
    plan = MigrationPlan.objects.get(name="Balance site-a")
    assert plan.items.count() == reasons.count()
    assert all(h.group == "site-a" for h in Host.objects.filter(inbound_items__plan=plan))
    card.locator("details").first.evaluate("(details) => { details.open = true; }")
    page.wait_for_timeout(300)
    items = page.locator("section.card:has(table.items)")
    top, bottom = card.bounding_box(), items.bounding_box()
    clip = {
        "x": 0,
        "y": top["y"] - 12,
        "width": 1280,
        "height": bottom["y"] + bottom["height"] - top["y"] + 24,
    }
    tour_picture(page, "balance-plan", clip=clip)
