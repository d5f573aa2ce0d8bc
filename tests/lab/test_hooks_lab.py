"""A pre_migration hook that fails for one VM, on the real lab: that VM is never touched
(no migrate call, it runs on its source with its heartbeat counting on), the other VM of
the plan moves, and both calls are recorded and audited.

The hook is a signed HTTP POST to a receiver on loopback (allowlisted as an admin would)
that answers 503 for one VM, as a load balancer refusing to drain it would.
"""

from __future__ import annotations

import http.server
import json
import threading

import pytest

libvirt = pytest.importorskip("libvirt")
from dashboard.audit.models import AuditEvent  # noqa: E402
from inventory.models import VirtualMachine  # noqa: E402
from lab.guest import vm  # noqa: E402
from migrations_app.models import HookCall, ItemAttempt, PlanItem  # noqa: E402
from migrations_app.notifications.services import (  # noqa: E402
    SIGNATURE_HEADER,
    signature_valid,
)
from tests.lab.test_execution_lab import (  # noqa: E402,F401 - ferry is a fixture
    ferry,
    lab_plan,
    only_on,
    run_settled,
    start_plan,
    sync,
)
from tests.migrations_app.execution.conftest import WorkerThreads, wait_for  # noqa: E402

pytestmark = [pytest.mark.lab, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def balancer():
    """A loopback HTTP receiver: refuses (503) the VMs named in `refuse`, 200 otherwise."""

    class Handler(http.server.BaseHTTPRequestHandler):
        received: list = []
        refuse: set = set()

        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))
            type(self).received.append((dict(self.headers), body))
            self.send_response(503 if json.loads(body)["vm"] in self.refuse else 200)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield Handler, f"http://127.0.0.1:{server.server_address[1]}/drain"
    server.shutdown()
    server.server_close()


def test_a_failed_pre_migration_hook_leaves_its_vm_on_the_source_and_the_rest_move(
    ferry, guest, people, conns, settings, balancer
):
    settings.FERRY_WEBHOOK_ALLOW_HOSTS = ["127.0.0.1/32"]
    handler, url = balancer
    kept, moved = guest("lab-a", memory_mib=256), guest("lab-a", memory_mib=256)
    handler.refuse = {kept}
    beats = {name: vm.wait_heartbeat(name, timeout=60, after=1) for name in (kept, moved)}
    sync(ferry)
    plan = lab_plan(
        people,
        [(kept, "lab-a", "lab-b", "live", None), (moved, "lab-a", "lab-b", "live", None)],
        {"bandwidth_mib_s": 200},
        hooks=[{"event": "pre_migration", "kind": "http", "url": url, "timeout_s": 10}],
    )
    with WorkerThreads(2):
        run = start_plan(plan, people)
        wait_for(lambda: run_settled(run.pk), timeout=240, interval=0.5)

    items = {i.vm.name: i for i in PlanItem.objects.filter(plan=plan).select_related("vm")}
    refused = ItemAttempt.objects.get(item=items[kept])
    assert refused.error_class == "hook_failed", (refused.status, refused.error_class)
    assert refused.migrate_called_at is None
    assert items[kept].status != "completed"
    assert items[moved].status == "completed", (items[moved].status, items[moved].status_reason)
    # The refused VM was never touched: it runs on lab-a only, its heartbeat never reset,
    # and lab-b holds no definition of it. The other one runs on lab-b only.
    only_on(kept, "lab-a", beats[kept])
    with pytest.raises(libvirt.libvirtError):
        conns["lab-b"].lookupByName(kept)
    only_on(moved, "lab-b", beats[moved])
    assert VirtualMachine.objects.get(name=kept).host.name == "lab-a"
    assert VirtualMachine.objects.get(name=moved).host.name == "lab-b"
    # Both calls were signed with the hook's secret, recorded and audited (the classified
    # outcome, never the remote text).
    hook = plan.hooks.get()
    assert sorted(json.loads(body)["vm"] for _, body in handler.received) == sorted([kept, moved])
    assert all(
        signature_valid(hook.secret, body, headers[SIGNATURE_HEADER])
        for headers, body in handler.received
    )
    calls = HookCall.objects.filter(hook=hook)
    assert sorted(calls.values_list("ok", flat=True)) == [False, True]
    assert calls.get(ok=False).code == 503
    audited = AuditEvent.objects.filter(action__in=("hook.called", "hook.failed"))
    assert sorted(audited.values_list("action", flat=True)) == ["hook.called", "hook.failed"]
    failed = audited.get(action="hook.failed").after
    assert failed["vm"] == kept and failed["code"] == 503 and failed["duration_ms"] >= 0
