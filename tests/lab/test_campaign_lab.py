"""A maintenance campaign over the real lab: lab-a is drained onto lab-b, the host action
(a command hook from the allowlisted directory) restarts lab-a's libvirtd, Ferry waits
until lab-a is healthy, takes it out of maintenance, and the failback plan returns every
VM to lab-a. The guests' heartbeats never reset or stop. The per-host timeline and Ferry's
own overhead (time in neither a migration nor the host action) are printed and appended
to the lab's measurements file."""

from __future__ import annotations

import json
import os
import sys
import time
from datetime import datetime

import pytest
from django.test import Client
from django.urls import reverse

libvirt = pytest.importorskip("libvirt")
from dashboard.audit.models import AuditEvent  # noqa: E402
from inventory.models import Host, VirtualMachine  # noqa: E402
from lab.guest import vm  # noqa: E402
from migrations_app.campaigns.services import (  # noqa: E402
    campaign_approve,
    campaign_create,
    campaign_hook_add,
    campaign_start,
    campaign_submit,
    campaign_transport_override_set,
)
from migrations_app.campaigns.timeline import (  # noqa: E402
    STEPS,
    campaign_overhead,
    campaign_timeline,
)
from migrations_app.models import HookCall, ItemAttempt  # noqa: E402
from tests.lab.test_execution_lab import REPO, ferry, only_on, sync  # noqa: E402,F401
from tests.migrations_app.campaigns.conftest import play  # noqa: E402

pytestmark = [pytest.mark.lab, pytest.mark.django_db(transaction=True)]


def restart_script(directory) -> str:
    """The host action: restart lab-a's libvirtd through labctl (a file in the hook dir)."""
    lab_env = "".join(
        f"export {k}={json.dumps(v)}\n" for k, v in os.environ.items() if k.startswith("LAB_")
    )
    path = directory / "restart-libvirtd.sh"
    path.write_text(
        "#!/bin/sh\nset -e\n"
        # Ferry runs hooks with a minimal PATH; labctl needs ip, nsenter and friends.
        + "export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n"
        + lab_env
        + f'cd {REPO}\nexec {sys.executable} lab/labctl.py daemon restart "$FERRY_HOST"\n'
    )
    path.chmod(0o755)
    return path.name


def seconds(span: dict) -> float | None:
    if not span or "start" not in span or "end" not in span:
        return None
    start, end = (datetime.fromisoformat(span[k]) for k in ("start", "end"))
    return round((end - start).total_seconds(), 2)


def test_it_drains_restarts_waits_exits_and_fails_back_with_heartbeats_intact(
    ferry,
    guest,
    people,
    lab_env,
    settings,
    tmp_path,  # noqa: F811
):
    settings.FERRY_HOOK_COMMAND_DIR = str(tmp_path)
    names = [guest("lab-a", memory_mib=256), guest("lab-a", memory_mib=256)]
    before = {n: vm.wait_heartbeat(n, timeout=60, after=1) for n in names}
    sync(ferry)
    lab_a = Host.objects.get(name="lab-a")

    campaign = campaign_create(
        actor=people["planner"],
        name="lab rolling restart",
        hosts=["lab-a"],
        change_ticket="CHG-LAB-17",
        failback=True,
        policy={"require_tls": False, "verify_seconds": 3},
        healthy_timeout_s=120,
    )
    campaign_transport_override_set(
        campaign=campaign, actor=people["admin"], reason="lab: namespaces, no TLS"
    )
    campaign_hook_add(
        campaign=campaign,
        actor=people["admin"],
        event="host_action",
        kind="command",
        command=restart_script(tmp_path),
        timeout_s=90,
    )
    campaign_submit(campaign=campaign, actor=people["planner"])
    campaign_approve(campaign=campaign, actor=people["approver"])
    t0 = time.monotonic()
    campaign_start(campaign=campaign, actor=people["operator"])
    campaign = play(campaign, timeout=600)
    wall = time.monotonic() - t0

    calls = list(HookCall.objects.values_list("outcome", "detail"))
    assert campaign.status == "completed", (campaign.status_reason, calls)
    for name in names:
        only_on(name, "lab-a", before[name])
        assert VirtualMachine.objects.get(name=name).host == lab_a
    lab_a.refresh_from_db()
    assert lab_a.state == "active"
    action = HookCall.objects.get(event="host_action")
    assert action.ok, action.detail
    assert "new_pid" in action.detail
    step = campaign.steps.get()
    drained = step.plan.items.all()
    assert {i.destination_host.name for i in drained} == {"lab-b"}
    assert all(i.status == "completed" for i in drained)
    failback = campaign.plans.get(campaign_role="failback")
    assert failback.status == "completed" and failback.items.count() == len(names)
    actions = set(AuditEvent.objects.values_list("action", flat=True))
    assert {"host.maintenance_entered", "campaign.gate_passed", "hook.called"} <= actions
    assert {"host.maintenance_exited", "campaign.completed"} <= actions

    # The timeline, and Ferry's own overhead: the campaign's wall time less the moves'
    # own time (libvirt's total per attempt, in sequence here) and the host action's.
    moves_s = (
        sum(
            (a.total_time_ms or 0)
            for a in ItemAttempt.objects.filter(item__plan__campaign=campaign)
        )
        / 1000
    )
    phases = {k: seconds(v) for k, v in step.timeline.items()}
    fb = campaign.plans.get(campaign_role="failback").runs.get()
    phases["failback"] = round((fb.finished_at - fb.started_at).total_seconds(), 2)
    overhead = round(wall - moves_s - action.duration_ms / 1000, 2)
    row = {
        "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "case": "ferry-campaign-lab-a",
        "wall_s": round(wall, 2),
        "phases_s": phases,
        "moves_s": round(moves_s, 2),
        "host_action_s": action.duration_ms / 1000,
        "ferry_overhead_s": overhead,
        "vms": len(names),
    }
    # The campaign's own timeline and change record list every step of lab-a, done.
    (host,) = campaign_timeline(campaign)
    assert [(s.name, s.state) for s in host.steps] == [(name, "done") for _k, name in STEPS]
    page = Client()
    page.force_login(people["viewer"])
    record = page.get(reverse("plans:campaign-change-record", args=[campaign.pk]))
    assert record.status_code == 200
    text = record.content.decode()
    assert all(name in text for _k, name in STEPS), text[:3000]
    split = campaign_overhead(campaign, [host])
    row["steps_s"] = {s.key: s.duration_s for s in host.steps}
    row["timeline_split_s"] = split
    print("\n[ferry-lab] campaign timeline:", json.dumps(row))
    with open(lab_env["measurements"], "a") as f:
        f.write(json.dumps(row) + "\n")
