"""The whole four-eyes workflow from the command line against a real server: a planner
creates, validates and submits, the same planner is refused their own approval, an
approver approves, an operator starts and watches it live (websocket, and REST polling
side by side) until every item completed on the rehearsal driver."""

import json
import os
import stat

import pytest

from ferry_cli.client import FerryClient
from ferry_cli.live import Follower
from migrations_app.models import Approval, MigrationPlan
from tests.cli.conftest import write_plan

pytestmark = pytest.mark.django_db(transaction=True)

PLAN = """\
name: Move two site-A VMs
description: Kernel update on kvm-a1
change_ticket: CHG-1001
policy:
  max_downtime_ms: 500
items:
  - vm: cache-a1-03
    destination: kvm-a2
  - api-a1-07          # placed automatically
"""


def lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_it_runs_a_plan_through_four_eyes_when_each_role_acts_in_turn(ferry, tmp_path):
    config = tmp_path / "homes" / "planner1" / "ferry" / "config.json"
    assert stat.S_IMODE(os.stat(config).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(config.parent).st_mode) == 0o700
    assert json.loads(config.read_text())["url"] == ferry.server.url

    hosts = ferry.json("planner1", "hosts")
    assert sorted(h["name"] for h in hosts) == ["kvm-a1", "kvm-a2", "kvm-a3"]

    path = write_plan(tmp_path / "plan.yaml", PLAN)
    created = ferry.json("planner1", "plan", "create", "-f", path)
    plan_id = created["plan"]["id"]
    assert created["created"] is True
    assert created["plan"]["item_count"] == 2
    assert created["plan"]["unplaced_count"] == 0  # api-a1-07 was placed
    # The same file again: `create` refuses (exit 2) and points to `apply`.
    again = ferry("planner1", "plan", "create", "-f", path)
    assert again.returncode == 2
    assert "ferry plan apply" in again.stderr

    shown = ferry.json("planner1", "plan", "show", str(plan_id))
    assert {i["vm_name"] for i in shown["items"]} == {"cache-a1-03", "api-a1-07"}
    assert shown["validation"] is None
    run = ferry.json("planner1", "plan", "validate", "Move two site-A VMs")
    assert run["blockers"] == 0
    submitted = ferry.json("planner1", "plan", "submit", str(plan_id))
    assert submitted["status"] == "submitted"

    own = ferry("planner1", "plan", "approve", str(plan_id))
    assert own.returncode == 1
    assert "Four eyes: you wrote plan 'Move two site-A VMs'" in own.stderr
    assert "Traceback" not in own.stderr
    premature = ferry("operator1", "plan", "start", str(plan_id))
    assert premature.returncode == 1
    assert "Error:" in premature.stderr

    approved = ferry.json(
        "approver1",
        "plan",
        "approve",
        str(plan_id),
        "--comment",
        "checked with the app team",
        "--content-hash",
        submitted["content_hash"],
    )
    assert approved["status"] == "approved"
    assert Approval.objects.get(plan_id=plan_id).comment == "checked with the app team"

    poller = ferry.background("operator1", "plan", "watch", str(plan_id), "--poll", "--json")
    started = ferry.json("operator1", "plan", "start", str(plan_id))
    assert started["status"] == "running"
    watched = ferry("operator1", "plan", "watch", str(plan_id), "--json", "--timeout", "120")
    assert watched.returncode == 0, watched.stderr
    frames = lines(watched.stdout)
    assert frames[0]["type"] == "snapshot"
    result = frames[-1]
    assert result["type"] == "result" and result["ok"] is True
    assert [i["status"] for i in result["items"]] == ["completed", "completed"]
    assert {i["driver"] for i in result["items"]} == {"rehearsal"}
    kinds = {f.get("kind") for f in frames if f["type"] == "event"}
    assert {"item.progress", "item.finished"} <= kinds
    seqs = [f["seq"] for f in frames if f["type"] == "event" and f.get("seq") is not None]
    assert seqs == sorted(set(seqs)), "events out of order or repeated"
    log = ferry.server.log.read_text(errors="replace")
    assert f"WSCONNECT /ws/plans/{plan_id}/" in log

    polled_out, polled_err = poller.communicate(timeout=120)
    assert poller.returncode == 0, polled_err
    assert lines(polled_out)[-1]["ok"] is True
    assert MigrationPlan.objects.get(pk=plan_id).status == "completed"

    # Human output of a finished plan: the table and the verdict, no traceback.
    human = ferry("operator1", "plan", "watch", str(plan_id))
    assert human.returncode == 0
    assert "every item completed" in human.stdout


def test_it_fills_a_gap_in_the_event_numbers_from_the_rest_range(ferry, tmp_path):
    """A follower that missed events 1..n-1 and then hears n fetches the range over REST
    (against the real server's /runs/<id>/events/) and applies every event once, in order."""
    path = write_plan(tmp_path / "plan.yaml", PLAN)
    plan_id = ferry.json("planner1", "plan", "apply", "-f", path)["plan"]["id"]
    ferry.json("approver1", "plan", "approve", str(plan_id))
    assert ferry("operator1", "plan", "apply", "-f", path, "--start", "--wait").returncode == 0

    token = json.loads((tmp_path / "homes" / "operator1" / "ferry" / "config.json").read_text())
    client = FerryClient(ferry.server.url, token["token"])
    seen = []
    follower = Follower(client, plan_id, on_update=lambda view, event: seen.append(event))
    follower.refresh()
    last = follower.view.last_seq
    run_id = follower.view.run_id
    assert last > 5
    follower.view.last_seq = 0  # as if everything after the first snapshot was missed
    seen.clear()
    follower.accept({"run": run_id, "plan": plan_id, "seq": last, "kind": "item.finished"})
    numbers = [e["seq"] for e in seen if e is not None]
    assert numbers == list(range(1, last + 1))
    assert follower.view.last_seq == last
    follower.accept({"run": run_id, "plan": plan_id, "seq": 3, "kind": "item.progress"})
    assert follower.view.last_seq == last  # an old number is a duplicate, dropped
    client.close()
