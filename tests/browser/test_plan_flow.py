"""The whole flow in a real browser against a real server and workers (rehearsal driver):
a planner drafts an evacuation, an approver approves, an operator starts it, progress
advances without a reload; a stakeholder watches a status link until it is revoked; a
server restart shows "reconnecting" and the page catches up without gaps or duplicates."""

import json
import re
import time

import pytest

from inventory.services import host_add
from inventory.sync import host_sync
from tests.browser.conftest import ARTIFACTS, FerryServer, login, screenshot

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

POOL = (
    "<pool type='netfs'><name>nfs</name><uuid>5b1c0e8e-7d2e-4f37-9a51-7c1d2b3e4f50</uuid>"
    "<capacity unit='GiB'>2000</capacity><allocation unit='GiB'>0</allocation>"
    "<available unit='GiB'>2000</available><source><host name='nfs.lab.internal'/>"
    "<dir path='/export'/><format type='nfs'/></source><target><path>/srv/nfs</path></target>{vols}</pool>"
)
VOL = (
    "<volume type='file'><name>{n}.qcow2</name><capacity unit='GiB'>10</capacity>"
    "<allocation unit='GiB'>1</allocation><target><path>/srv/nfs/{n}.qcow2</path>"
    "<format type='qcow2'/></target></volume>"
)
DOMAIN = (
    "<domain type='test'><name>{n}</name><uuid>{u}</uuid><memory unit='MiB'>{mem}</memory>"
    "<vcpu>1</vcpu><os><type arch='x86_64' machine='pc-q35-8.2'>hvm</type></os>"
    "<cpu mode='host-model'/><devices><disk type='file' device='disk'>"
    "<driver name='qemu' type='qcow2'/><source file='/srv/nfs/{n}.qcow2'/>"
    "<target dev='vda' bus='virtio'/></disk><interface type='network'>"
    "<mac address='52:54:00:aa:00:{m:02x}'/><source network='prod'/><model type='virtio'/>"
    "</interface></devices></domain>"
)
NET = "<network><name>prod</name><forward mode='bridge'/><bridge name='br-prod'/></network>"


def wait_until(check, timeout=60.0, what="condition"):
    """Poll from Python (page.evaluate would be refused by the pages' strict CSP)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.25)
    raise AssertionError(f"timed out waiting for {what}")


def drawn(page) -> int:
    return int(page.get_attribute("[data-plan-live]", "data-events-drawn") or 0)


def all_completed(page, selector="[data-plan-live] tr[data-item-id]") -> bool:
    rows = page.locator(selector)
    statuses = [rows.nth(i).get_attribute("data-status") for i in range(rows.count())]
    return bool(statuses) and all(s == "completed" for s in statuses)


def record_draw_delays(page):
    """Sample stored → drawn in the browser: print and keep the figures (closing notes)."""
    raw = page.get_attribute("[data-plan-live]", "data-draw-delays-ms") or ""
    delays = sorted(int(x) for x in raw.split(",") if x.strip().lstrip("-").isdigit())
    assert delays, "no progress sample was drawn"
    median = delays[len(delays) // 2]
    p95 = delays[min(len(delays) - 1, int(len(delays) * 0.95))]
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "draw-delay.json").write_text(
        json.dumps({"samples": len(delays), "median_ms": median, "p95_ms": p95})
    )
    print(f"sample stored → drawn: {len(delays)} samples, median {median} ms, p95 {p95} ms")


def node(vms, mem=2048):
    cpu = (
        "<cpu><mhz>2600</mhz><model>Skylake-Server</model><active>16</active><total>16</total>"
        "<nodes>1</nodes><sockets>1</sockets><cores>8</cores><threads>2</threads></cpu>"
        "<memory>67108864</memory>"
    )
    domains = "".join(
        DOMAIN.format(n=n, u=f"00000000-0000-4000-8000-{i:012d}", mem=mem, m=i) for i, n in vms
    )
    vols = "".join(VOL.format(n=n) for _, n in vms)
    return f"<node>{cpu}{domains}{POOL.format(vols=vols)}{NET}</node>"


@pytest.fixture
def small_site(tmp_path, make_user):
    """Two rehearsal hosts on one NFS pool; src carries three 2 GiB VMs."""
    (tmp_path / "src.xml").write_text(node([(1, "app-1"), (2, "app-2"), (3, "app-3")]))
    (tmp_path / "dst.xml").write_text(node([]))
    for name in ("src", "dst"):
        assert host_sync(
            host=host_add(name=name, uri=f"test://{tmp_path / (name + '.xml')}", actor=None)
        ).ok
    make_user("planner1", "planner")
    make_user("approver1", "approver")
    make_user("operator1", "operator")


def draft_evacuation(page, server):
    login(page, server, "planner1", "pw-planner1")
    page.goto(f"{server.url}/plans/")
    page.fill("input[name=name]", "Evacuate src")
    page.fill("input[name=change_ticket]", "CHG-1001")
    page.click("button:has-text('Create plan')")
    page.wait_for_url(re.compile(r"/plans/\d+/$"))
    plan_url = page.url
    select = page.locator("form[action$='/evacuate/'] select[name=host]")
    label = next(t for t in select.locator("option").all_inner_texts() if t.startswith("src"))
    select.select_option(label=label)
    page.click("form[action$='/evacuate/'] button")
    page.click("button:has-text('Validate')")
    page.wait_for_selector("[data-chart=plan-gantt] .main-svg")
    assert (
        "0 blockers" in page.content()
        or "blocker" not in page.locator(".sev-blocker").all_inner_texts()
    )
    screenshot(page, "plan-validated")
    page.click("form[action$='/workflow/submit/'] button")
    page.wait_for_load_state()
    return plan_url


def approve(page, server, plan_url):
    login(page, server, "approver1", "pw-approver1")
    page.goto(plan_url)
    page.fill("form[action$='/workflow/approve/'] input[name=comment]", "fine for tonight")
    page.click("form[action$='/workflow/approve/'] button")
    page.wait_for_load_state()
    assert "approved" in page.locator("h1").inner_text().lower()


def test_it_runs_an_evacuation_from_draft_to_done_live(small_site, new_page):
    server = FerryServer(extra_env={"FERRY_REHEARSAL_SPEED": "4"}).start()
    try:
        planner = new_page()
        plan_url = draft_evacuation(planner, server)
        approve(new_page(), server, plan_url)

        operator = new_page()
        login(operator, server, "operator1", "pw-operator1")
        operator.goto(plan_url)
        operator.wait_for_selector("[data-live-state].live-live")
        # a stakeholder link, opened before the start, in a fresh browser context
        operator.click("button:has-text('Create status link')")
        operator.wait_for_load_state()
        status_url = re.search(r"https?://\S+/status/[\w-]+/", operator.content()).group(0)
        stakeholder = new_page(viewport=(390, 844))
        stakeholder.goto(status_url)
        stakeholder.wait_for_selector("[data-live-state].live-live")
        assert "src" not in stakeholder.locator("table").inner_text()  # host names redacted

        operator.click("form[action$='/workflow/start/'] button")
        operator.wait_for_url(plan_url)
        widget = operator.locator("[data-plan-live]")
        widget.locator("tr[data-status=running]").first.wait_for(timeout=60000)
        wait_until(lambda: drawn(operator) > 3, what="progress events drawn")
        operator.wait_for_selector("[data-item-chart] .main-svg .scatterlayer .trace")
        screenshot(operator, "plan-running")
        wait_until(lambda: all_completed(operator), 120, "every item completed")
        screenshot(operator, "plan-completed")
        record_draw_delays(operator)
        # after a reload the estimate timeline carries what really happened
        operator.reload()
        operator.wait_for_selector("[data-chart=plan-gantt] .legendtext:text-is('actual')")
        # the page agrees with the API
        plan_id = int(re.search(r"/plans/(\d+)/", plan_url).group(1))
        api = operator.request.get(f"{server.url}/api/v1/live/plans/{plan_id}/").json()
        assert {i["status"] for i in api["items"]} == {"completed"}
        assert widget.get_attribute("data-last-seq") == str(api["last_seq"])

        # the stakeholder saw it finish without reloading, then loses access on revocation
        wait_until(lambda: all_completed(stakeholder, "tr[data-item-id]"), 30, "status page done")
        screenshot(stakeholder, "status-page-phone")
        operator.click("form[action*='/share-links/'][action$='/revoke/'] button")
        stakeholder.wait_for_selector("[data-closed]:not([hidden])", timeout=10000)
        stakeholder.reload()
        assert "revoked" in stakeholder.content().lower()
    finally:
        server.stop()


def test_it_reconnects_after_a_server_restart_and_misses_no_event(small_site, new_page):
    # Workers run as their own processes over Redis, so restarting the web server does
    # not stop the migrations; only the browser's websocket drops.
    server = FerryServer(redis=True, extra_env={"FERRY_REHEARSAL_SPEED": "1"}).start()
    try:
        plan_url = draft_evacuation(new_page(), server)
        approve(new_page(), server, plan_url)
        operator = new_page()
        console = []
        operator.on("console", lambda msg: console.append(msg.text))
        operator.on("websocket", lambda ws: console.append(f"ws {ws.url}"))
        login(operator, server, "operator1", "pw-operator1")
        operator.goto(plan_url)
        operator.click("form[action$='/workflow/start/'] button")
        operator.wait_for_url(plan_url)
        try:
            operator.wait_for_selector("[data-live-state].live-live")
        except Exception:
            print("CONSOLE", console)
            raise
        wait_until(lambda: drawn(operator) > 2, what="progress events drawn")
        sockets_before = sum(1 for line in console if line.startswith("ws "))
        server.restart_web()
        # The page notices the drop and opens a new websocket to the restarted server. The
        # "reconnecting" state can be over before this line runs (the page may reconnect
        # the moment the server answers), so the proof is the new socket, then "live".
        deadline = time.monotonic() + 60
        while sum(1 for line in console if line.startswith("ws ")) <= sockets_before:
            assert time.monotonic() < deadline, "no new websocket after the restart"
            operator.wait_for_timeout(250)  # lets Playwright deliver the page's events
        operator.wait_for_selector("[data-live-state].live-live", timeout=60000)
        wait_until(lambda: all_completed(operator), 180, "every item completed")
        operator.wait_for_timeout(1500)
        raw = operator.get_attribute("[data-plan-live]", "data-seqs") or ""
        seqs = [int(x) for x in raw.split(",") if x]
        last = int(operator.get_attribute("[data-plan-live]", "data-last-seq"))
        # Every event after the first one drawn, in order, once each, up to the last.
        assert seqs and seqs == list(range(seqs[0], last + 1)), f"missing or repeated: {seqs}"
    finally:
        server.stop()
