"""Validation after switchover on the real lab: a check that fails sends the VM back.

The plan moves a guest from lab-a to lab-b and validates it there: the guest agent must
answer guest-ping through lab-b's libvirt (it does) and a TCP port must be reachable from
the worker (it is closed). The policy says migrate back: Ferry moves the guest back to
lab-a as a rollback attempt under the same rules, and the guest ends running on lab-a only,
with no definition left on lab-b, its heartbeat counting on without a gap.
"""

from __future__ import annotations

import socket
import time

import pytest

libvirt = pytest.importorskip("libvirt")
from dashboard.audit.models import AuditEvent  # noqa: E402
from inventory.models import VirtualMachine  # noqa: E402
from lab.guest import vm  # noqa: E402
from migrations_app.models import ItemAttempt, PlanItem  # noqa: E402
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


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_it_migrates_the_vm_back_when_validation_fails_after_switchover(
    ferry, guest, people, conns, settings
):
    # Loopback is allowed only because an admin allowlisted it (the webhook rules).
    settings.FERRY_WEBHOOK_ALLOW_HOSTS = ["127.0.0.1/32"]
    name = guest("lab-a", memory_mib=256)
    vm.wait_agent(name, timeout=90)
    before = vm.wait_heartbeat(name, timeout=60, after=1)
    sync(ferry)
    port = closed_port()
    plan = lab_plan(
        people,
        [(name, "lab-a", "lab-b", "live", None)],
        {
            "bandwidth_mib_s": 200,
            "validation": {
                "guest_agent": True,
                "tcp": [{"host": "127.0.0.1", "port": port}],
                "retries": 1,
                "delay_s": 1,
            },
        },
    )
    t0 = time.monotonic()
    with WorkerThreads(2):
        run = start_plan(plan, people)
        wait_for(lambda: run_settled(run.pk), timeout=240, interval=0.5)
    wall = time.monotonic() - t0

    item = PlanItem.objects.get(plan=plan)
    move, back = ItemAttempt.objects.filter(item=item).order_by("number")
    print(
        f"\n[ferry-lab] validation-rollback: move {move.total_time_ms} ms "
        f"(downtime {move.downtime_ms} ms), back {back.total_time_ms} ms "
        f"(downtime {back.downtime_ms} ms), wall {wall:.1f} s"
    )
    assert item.status == "rolled_back", (item.status, item.status_reason)
    assert (move.kind, move.status) == ("move", "completed")
    assert (back.kind, back.status) == ("rollback", "completed")
    checks = {c["check"]: c for c in move.evidence["validation"]["checks"]}
    assert checks["guest_agent"]["ok"] is True  # guest-ping through lab-b's connection
    assert checks["tcp"]["ok"] is False and checks["tcp"]["tries"] == 2
    assert "connection refused" in item.status_reason
    # The guest runs on its source only, no definition is left on lab-b, and its
    # heartbeat never reset or skipped.
    only_on(name, "lab-a", before)
    with pytest.raises(libvirt.libvirtError):
        conns["lab-b"].lookupByName(name)
    assert conns["lab-a"].lookupByName(name).isActive()
    assert VirtualMachine.objects.get(name=name).host.name == "lab-a"
    actions = set(AuditEvent.objects.values_list("action", flat=True))
    assert {"attempt.validation_failed", "item.rollback_started", "attempt.completed"} <= actions
