"""`ferry plan apply -f plan.yaml` against a real server: applying the same file again
writes nothing; a changed file updates the plan (the server voids its approvals and the
plan is submitted again); with --wait it follows the plan (here through another person's
approval and an operator's `apply --start --wait`) and exits 0 once every item completed."""

import pytest

from dashboard.audit.models import AuditEvent
from migrations_app.models import Approval, MigrationPlan, ValidationRun
from tests.browser.test_plan_flow import wait_until
from tests.cli.conftest import write_plan

pytestmark = pytest.mark.django_db(transaction=True)

PLAN = """\
name: Rebalance site A
key: rebalance-site-a
change_ticket: CHG-2002
window:
  start: 2020-01-01T00:00:00Z
  end: 2100-01-01T00:00:00Z
items:
  - vm: web-a2-06
    destination: kvm-a1
  - vm: 267dcadd-ede9-571c-ac15-ad21c7d27708   # api-a2-07, by uuid
    destination: auto
    policy_overrides: {max_downtime_ms: 800}
"""


def writes() -> tuple[int, int, int]:
    return MigrationPlan.objects.count(), ValidationRun.objects.count(), AuditEvent.objects.count()


def test_it_applies_a_plan_file_idempotently_and_waits_until_every_item_completed(ferry, tmp_path):
    path = write_plan(tmp_path / "plan.yaml", PLAN)
    first = ferry.json("planner1", "plan", "apply", "-f", path)
    plan_id = first["plan"]["id"]
    assert first["created"] is True
    assert first["plan"]["status"] == "submitted"
    assert "submitted for approval" in first["actions"]
    assert first["plan"]["item_count"] == 2

    before = writes()
    version = MigrationPlan.objects.get(pk=plan_id).version
    for person in ("planner1", "operator1"):  # anyone may apply an unchanged file
        again = ferry.json(person, "plan", "apply", "-f", path)
        assert again["created"] is False
        assert again["changed"] == [] and again["actions"] == []
        assert again["plan"]["id"] == plan_id
    assert writes() == before, "an unchanged file wrote to the server"
    assert MigrationPlan.objects.get(pk=plan_id).version == version
    human = ferry("planner1", "plan", "apply", "-f", path)
    assert human.returncode == 0 and "up to date, nothing to change" in human.stdout

    # Approved, then the file changes: the plan is updated in place (found by its key
    # although it was renamed), its approval voided, and it is validated and submitted.
    ferry.json("approver1", "plan", "approve", str(plan_id))
    changed = PLAN.replace("name: Rebalance site A", "name: Rebalance site A (v2)").replace(
        "change_ticket: CHG-2002", "change_ticket: CHG-2002\npolicy: {max_downtime_ms: 400}"
    )
    write_plan(tmp_path / "plan.yaml", changed)
    updated = ferry.json("planner1", "plan", "apply", "-f", path)
    assert updated["plan"]["id"] == plan_id and updated["created"] is False
    assert updated["plan"]["name"] == "Rebalance site A (v2)"
    assert updated["plan"]["policy"] == {"max_downtime_ms": 400}
    assert updated["plan"]["status"] == "submitted"
    assert Approval.objects.get(plan_id=plan_id).voided_at is not None
    assert MigrationPlan.objects.count() == before[0]

    # The planner waits; the approver approves; an operator applies the same file with
    # --start --wait (nothing to change, so nothing written but the start).
    waiting = ferry.background("planner1", "plan", "apply", "-f", path, "--wait", "--json")
    wait_until(
        lambda: "WSCONNECT" in ferry.server.log.read_text(errors="replace"), what="the stream"
    )
    ferry.json("approver1", "plan", "approve", str(plan_id))
    operator = ferry("operator1", "plan", "apply", "-f", path, "--start", "--wait")
    assert operator.returncode == 0, operator.stderr
    assert "every item completed" in operator.stdout
    out, err = waiting.communicate(timeout=120)
    assert waiting.returncode == 0, err
    frames = [line for line in out.splitlines() if line.strip()]
    assert '"type": "apply"' in frames[0]
    assert '"ok": true' in frames[-1]
    assert MigrationPlan.objects.get(pk=plan_id).status == "completed"

    # After the run: the same file is still "nothing to do", and exits 0 (all completed).
    after = writes()
    done = ferry("planner1", "plan", "apply", "-f", path, "--wait")
    assert done.returncode == 0, done.stderr
    assert writes() == after
    # A change to a finished plan is refused with a reason, not applied.
    write_plan(
        tmp_path / "plan.yaml", changed.replace("max_downtime_ms: 400", "max_downtime_ms: 450")
    )
    refused = ferry("planner1", "plan", "apply", "-f", path)
    assert refused.returncode == 1
    assert "completed: its content can no longer change" in refused.stderr
    assert writes() == after


def test_it_exits_3_with_the_blockers_when_validation_refuses_the_plan(ferry, tmp_path):
    # web-a2-06 uses host-passthrough: kvm-a3's CPU differs from kvm-a2's, a blocker.
    path = write_plan(
        tmp_path / "plan.yaml",
        "name: Bad move\nitems:\n  - {vm: web-a2-06, destination: kvm-a3}\n",
    )
    result = ferry("planner1", "plan", "apply", "-f", path)
    assert result.returncode == 3
    assert "[blocker]" in result.stdout and "host-passthrough" in result.stdout
    as_json = ferry.json("planner1", "plan", "apply", "-f", path, expect=3)
    assert as_json["validation"]["blockers"] >= 1
    assert as_json["plan"]["status"] == "draft"
    plan = MigrationPlan.objects.get(name="Bad move")
    assert plan.status == "draft"
    validated = ferry.json("planner1", "plan", "validate", str(plan.pk), expect=3)
    assert validated["blockers"] >= 1


def test_it_exits_3_when_the_plan_is_cancelled_while_it_waits(ferry, tmp_path):
    # A 40 MiB/s cap makes the 8 GiB move last several seconds: time to cancel it.
    path = write_plan(
        tmp_path / "plan.yaml",
        "name: Slow move\npolicy: {bandwidth_mib_s: 40}\n"
        "items:\n  - {vm: api-a2-07, destination: kvm-a1}\n",
    )
    plan_id = ferry.json("planner1", "plan", "apply", "-f", path)["plan"]["id"]
    ferry.json("approver1", "plan", "approve", str(plan_id))
    waiting = ferry.background(
        "operator1", "plan", "apply", "-f", path, "--start", "--wait", "--json"
    )
    wait_until(lambda: MigrationPlan.objects.get(pk=plan_id).status == "running", what="the start")
    ferry.json("operator1", "plan", "cancel", str(plan_id), "--reason", "change freeze")
    out, err = waiting.communicate(timeout=120)
    assert waiting.returncode == 3, err
    result = [line for line in out.splitlines() if line.strip()][-1]
    assert '"ok": false' in result and '"status": "cancelled"' in result
    assert '"status_reason": "An operator cancelled the move' in result
