"""The overview and inventory pages in a real browser against a real server."""

import pytest

from inventory.services import host_add
from inventory.sync import host_sync
from tests.browser.conftest import login, screenshot

pytestmark = pytest.mark.browser


def test_it_draws_the_memory_chart_and_host_pages(ferry_server, new_page, make_user, demo_uri):
    for name in ("kvm-a1", "kvm-b1"):
        host_sync(host=host_add(name=name, uri=demo_uri(name), actor=None))
    make_user("viewer1", "viewer")
    page = new_page()
    login(page, ferry_server, "viewer1", "pw-viewer1")
    page.wait_for_selector("[data-chart=host-memory] .main-svg")
    assert page.locator(".tile .num").first.inner_text() == "2"
    screenshot(page, "overview")
    page.click('nav a:text-is("Hosts")')
    page.wait_for_url("**/inventory/hosts/")
    page.click('table a:text-is("kvm-a1")')
    assert page.locator("h1").inner_text().startswith("kvm-a1")
    page.wait_for_selector("[data-chart=host-capacity] .main-svg")
    screenshot(page, "host-detail")
    phone = new_page(viewport=(390, 844))
    login(phone, ferry_server, "viewer1", "pw-viewer1")
    width = phone.evaluate("document.documentElement.scrollWidth")
    assert width <= 400, f"the overview overflows a phone screen ({width}px)"
