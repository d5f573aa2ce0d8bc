"""A real lab migration watched in a real browser: the operator starts an approved plan
(validated for real against the lab's hosts) and the page follows the libvirt job live
to completion; the guest keeps its heartbeat and runs on the destination only."""

import pytest

pytest.importorskip("libvirt")

from django.contrib.auth.hashers import PBKDF2PasswordHasher  # noqa: E402

from inventory.models import Host, VirtualMachine  # noqa: E402
from lab.guest import vm  # noqa: E402
from migrations_app.models import ItemAttempt  # noqa: E402
from migrations_app.services.plans import plan_add_vms, plan_create  # noqa: E402
from migrations_app.services.validation import plan_validate  # noqa: E402
from migrations_app.workflow.services import plan_approve, plan_submit  # noqa: E402

# Real-browser fixtures live with the browser tests; this test needs both worlds.
from tests.browser.conftest import (  # noqa: E402,F401
    FerryServer,
    login,
    new_page,
    playwright_browser,
    screenshot,
)
from tests.browser.test_plan_flow import all_completed, drawn, wait_until  # noqa: E402

# The lab execution tests own the fixtures that register the lab hosts in Ferry.
from tests.lab.test_execution_lab import ferry, sync  # noqa: E402,F401,F811

pytestmark = [pytest.mark.browser, pytest.mark.lab, pytest.mark.django_db(transaction=True)]


def test_it_follows_a_real_lab_migration_live_in_the_browser(  # noqa: F811
    ferry, people, guest, new_page, settings
):
    name = guest("lab-a", memory_mib=256, dirty_ws=32, dirty_rate=10)
    before = vm.wait_heartbeat(name, timeout=60, after=1)
    sync(ferry)
    plan = plan_create(
        actor=people["planner"],
        name="move one lab guest",
        change_ticket="CHG-LAB-UI",
        policy={"verify_seconds": 3, "bandwidth_mib_s": 64},
    )
    plan_add_vms(
        plan=plan,
        vms=[VirtualMachine.objects.get(name=name)],
        destination=Host.objects.get(name="lab-b"),
        actor=people["planner"],
    )
    run = plan_validate(plan=plan, actor=people["planner"])
    assert run.blockers == 0, list(
        run.results.filter(severity="blocker").values("check_id", "message")
    )
    plan_submit(plan=plan, actor=people["planner"])
    plan_approve(plan=plan, actor=people["approver"])

    # The lab fixtures hash passwords with MD5 for speed; the server process only knows the
    # default hashers, so give the operator a PBKDF2 password it can check.
    hasher = PBKDF2PasswordHasher()
    operator = people["operator"]
    operator.password = hasher.encode("pw-" + operator.username, hasher.salt())
    operator.save(update_fields=["password"])

    # The server's workers reach the lab's daemons through the same socket map as this
    # process (a host URI never names a socket; see the `ferry` fixture).
    sockets = ",".join(f"{k}={v}" for k, v in settings.FERRY_LIBVIRT_SOCKETS.items())
    server = FerryServer(
        extra_env={
            "FERRY_SAMPLE_SECONDS": "0.5",
            "FERRY_TICK_SECONDS": "3600",
            "FERRY_LIBVIRT_SOCKETS": sockets,
        }
    ).start()
    try:
        page = new_page()
        login(page, server, people["operator"].username, "pw-" + people["operator"].username)
        page.goto(f"{server.url}/plans/{plan.pk}/")
        page.wait_for_selector("[data-live-state].live-live")
        page.click("form[action$='/workflow/start/'] button")
        page.wait_for_selector("[data-live-state].live-live")
        try:
            wait_until(lambda: all_completed(page), 240, "the lab migration to complete")
        except AssertionError:
            attempts = list(
                ItemAttempt.objects.filter(item__plan=plan).values(
                    "status", "phase", "error_class", "error_message"
                )
            )
            raise AssertionError(f"the lab migration did not complete: {attempts}") from None
        assert drawn(page) > 0
        screenshot(page, "lab-plan-completed")
        assert "rehearsal" not in page.locator("[data-plan-live] tbody").inner_text().lower()
    finally:
        server.stop()
    assert vm.where_running(name) == ["lab-b"]
    assert vm.wait_heartbeat(name, timeout=30, after=before) > before
    assert not vm.console_problems(name)
