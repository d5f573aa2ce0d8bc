"""The change record's first screen and the report files, against a known run on the
rehearsal driver: four VMs, one completed, one completed after a retry, one cancelled
mid-transfer (rolled back), one refused by preflight (failed); started outside its window
with an override, one warning accepted at approval, finished by hand."""

import csv
import io
import statistics
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from inventory.models import VirtualMachine
from migrations_app.execution import services
from migrations_app.execution.drivers.rehearsal import RehearsalSession
from migrations_app.models import ItemAttempt, ItemCheckResults, PlanItem, ValidationRun
from migrations_app.reports.change_record import change_record_build
from tests.migrations_app.execution.conftest import _fast, approved_plan, drain, host, start  # noqa: F401

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def known_run(approved_plan, start, people, monkeypatch):  # noqa: F811
    """The run described in the module docstring; returns (plan, run, vm names by role)."""
    a, b = host(), host()
    now = timezone.now()
    plan = approved_plan(
        [(a, b)] * 4,
        policy={"max_concurrent": 1},
        window=(now + timedelta(hours=2), now + timedelta(hours=3)),
    )
    items = list(plan.items.order_by("position").select_related("vm"))
    names = {
        role: item.vm.name
        for role, item in zip(("done", "retried", "rolled_back", "refused"), items, strict=True)
    }
    # Long enough (64 GiB simulated) that the cancel lands well before the transfer ends.
    VirtualMachine.objects.filter(name=names["rolled_back"]).update(memory_mib=65536)
    evidence = ValidationRun.objects.get(plan=plan, content_hash=plan.content_hash)
    # One more verdict stored the way validation stores them (CheckResult is a view).
    ItemCheckResults.objects.create(
        run=evidence,
        item=items[1],
        vm_name=names["retried"],
        results=[
            [
                "convergence",
                "warning",
                f"{names['retried']} converges only with auto-converge.",
                "",
                {},
            ]
        ],
    )
    verify_failures = {names["retried"]: 1}

    def verify_once(self):
        if verify_failures.get(self.ctx.vm_name):
            verify_failures[self.ctx.vm_name] -= 1
            return "guest stopped (simulated)"
        return None

    def preflight(self):
        findings = original_preflight(self)
        if self.ctx.vm_name == names["refused"]:
            findings.append(
                {"check_id": "rehearsal.test", "severity": "blocker", "message": "refused"}
            )
        return findings

    original_preflight = RehearsalSession.preflight
    monkeypatch.setattr(RehearsalSession, "verify_once", verify_once)
    monkeypatch.setattr(RehearsalSession, "preflight", preflight)
    original_sample = services.attempt_sample

    def sample_then_cancel(**kw):
        result = original_sample(**kw)
        attempt = ItemAttempt.objects.select_related("item__vm").get(pk=kw["attempt"].pk)
        if attempt.item.vm.name == names["rolled_back"] and not attempt.cancel_requested:
            services.item_cancel(item=attempt.item, actor=people["operator"], reason="owner asked")
        return result

    monkeypatch.setattr(services, "attempt_sample", sample_then_cancel)
    run = drain(start(plan, override_reason="vendor on call tonight only"))
    retried = PlanItem.objects.get(plan=plan, vm__name=names["retried"])
    services.item_retry(item=retried, actor=people["operator"])
    run = drain(run)
    run = services.run_finish(plan=plan, actor=people["operator"])
    plan.refresh_from_db()
    return plan, run, names


def test_it_summarises_a_known_run_with_its_figures_people_and_deviations(known_run, people):
    plan, run, names = known_run
    assert plan.status == "partially_completed"
    record = change_record_build(plan)
    s = record.summary

    assert s.headline == "2 of 4 completed, 1 rolled back, 1 failed"
    assert s.counts["completed"] == 2 and s.counts["rolled_back"] == 1 and s.counts["failed"] == 1
    # Time: the run's own span against the estimate the approvers saw (120 s).
    elapsed = (run.finished_at - run.started_at).total_seconds()
    assert s.elapsed_s == round(elapsed, 1) and s.estimate_s == 120.0
    # A rehearsal runs 400× faster than real time here: no percentage against an estimate
    # made for real hosts (test_it_compares_a_real_run_with_its_estimate has one).
    assert s.rehearsal_speed == 400.0 and s.vs_estimate_pct is None
    # Downtime: the completed VMs' last attempts, against the policy's 300 ms.
    done = {
        a.item.vm.name: a.downtime_ms
        for a in ItemAttempt.objects.filter(run=run, status="completed").select_related("item__vm")
    }
    assert set(done) == {names["done"], names["retried"]}
    worst_vm = max(done, key=lambda name: (done[name], name))
    assert s.downtime["worst_ms"] == done[worst_vm] and s.downtime["worst_vm"] == worst_vm
    assert s.downtime["median_ms"] == statistics.median(done.values())
    assert s.downtime["max_allowed_ms"] == 300
    assert [o["vm"] for o in s.downtime["over_max"]] == sorted(
        n for n, ms in done.items() if ms > 300
    )
    # People, with the times of their acts.
    roles = {(p["role"], p["who"]) for p in s.people}
    assert roles == {
        ("drafted", "pat"),
        ("submitted", "pat"),
        ("approved", "ann"),
        ("started", "oli"),
    }
    started = next(p for p in s.people if p["role"] == "started")
    assert started["at"] == run.started_at
    assert s.change_ticket == "CHG-6"
    # Deviations: the override, the accepted warning, the retry, the operator's acts.
    kinds = {}
    for d in s.deviations:
        kinds.setdefault(d["kind"], []).append(d)
    assert "vendor on call tonight only" in kinds["override"][0]["text"]
    assert kinds["override"][0]["who"] == "oli"
    warning = kinds["warning accepted"][0]
    assert (
        warning["text"].startswith(f"convergence on {names['retried']}:")
        and warning["who"] == "ann"
    )
    retry = kinds["retry"]
    assert len(retry) == 1 and retry[0]["text"].startswith(f"{names['retried']}: 2 attempts")
    assert retry[0]["who"] == "oli"
    actions = [(d["who"], d["text"]) for d in kinds["operator action"]]
    assert ("oli", f"Cancelled an item ({names['rolled_back']}): owner asked") in actions
    assert ("oli", "Finished the run by hand") in actions
    assert s.chain_head == record.chain_head and s.chain_head["sequence"] > 0

    rows = {r.vm: r for r in record.rows}
    assert rows[names["retried"]].attempts == 2 and rows[names["retried"]].outcome == "completed"
    assert rows[names["rolled_back"]].outcome == "rolled_back"
    assert rows[names["rolled_back"]].error_class == "aborted_by_operator"
    assert rows[names["refused"]].outcome == "failed"
    assert rows[names["refused"]].error_class == "preflight_blocked"
    assert rows[names["refused"]].downtime_ms is None


def test_it_puts_the_summary_first_and_the_evidence_in_appendices(known_run, people):
    plan, _run, names = known_run
    client = Client()
    client.force_login(people["auditor"])
    page = client.get(f"/plans/{plan.pk}/change-record/").content.decode()
    summary_at = page.index('id="summary"')
    assert summary_at < page.index("<h2>VMs</h2>") < page.index('id="appendix-checks"')
    assert page.index('id="appendix-checks"') < page.index('id="appendix-audit"')
    first_screen = page[summary_at : page.index("<h2>VMs</h2>")]
    assert "2 of 4 completed, 1 rolled back, 1 failed" in first_screen
    assert "vendor on call tonight only" in first_screen and "CHG-6" in first_screen
    # On screen the appendices are folded; the printable form (the PDF's source) is not.
    assert '<details class="appendix" id="appendix-checks">' in page
    from migrations_app.reports.change_record_pdf import change_record_html

    printable = change_record_html(plan, for_print=True)
    assert '<details class="appendix"' not in printable
    assert '<h2 id="appendix-checks">' in printable and "converges only with" in printable
    pdf = client.get(f"/plans/{plan.pk}/change-record.pdf")
    assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF-")
    body = client.get(f"/api/v1/plans/{plan.pk}/change-record/").json()
    assert body["summary"]["headline"] == "2 of 4 completed, 1 rolled back, 1 failed"
    assert {v["vm"] for v in body["vms"]} == set(names.values())


def test_it_serves_the_report_as_csv_and_json_with_one_row_per_vm(known_run, people):
    plan, run, names = known_run
    client = Client()
    client.force_login(people["auditor"])
    answer = client.get(f"/api/v1/plans/{plan.pk}/report.json")
    assert answer.status_code == 200, answer.content
    report = answer.json()
    assert report["outcome"] == "2 of 4 completed, 1 rolled back, 1 failed"
    rows = {r["vm"]: r for r in report["vms"]}
    assert set(rows) == set(names.values())
    last = {
        a.item.vm.name: a
        for a in ItemAttempt.objects.filter(run=run).select_related("item__vm").order_by("number")
    }
    for name, row in rows.items():
        attempt = last[name]
        assert row["finished_at"] == attempt.finished_at.isoformat()
        assert row["bytes_transferred"] == attempt.bytes_transferred
        assert row["iterations"] == attempt.iterations
        assert row["error_class"] == attempt.error_class
    assert rows[names["done"]]["downtime_ms"] == last[names["done"]].downtime_ms
    assert rows[names["rolled_back"]]["outcome"] == "rolled_back"
    assert rows[names["retried"]]["attempts"] == 2

    sheet = client.get(f"/api/v1/plans/{plan.pk}/report.csv")
    assert sheet.status_code == 200 and sheet["Content-Type"].startswith("text/csv")
    table = list(csv.DictReader(io.StringIO(sheet.content.decode())))
    assert [r["vm"] for r in table] == [r["vm"] for r in report["vms"]]
    by_vm = {r["vm"]: r for r in table}
    assert by_vm[names["refused"]]["outcome"] == "failed"
    assert by_vm[names["refused"]]["error_class"] == "preflight_blocked"
    assert by_vm[names["done"]]["downtime_ms"] == str(last[names["done"]].downtime_ms)

    assert client.get(f"/api/v1/plans/{plan.pk}/report.xml").status_code == 404
    assert client.get("/api/v1/plans/999999/report.csv").status_code == 404
    anonymous = Client().get(f"/api/v1/plans/{plan.pk}/report.json")
    assert anonymous.status_code in (401, 403)


def test_it_defuses_spreadsheet_formulas_in_report_cells(validated_plan, people):
    item = validated_plan.items.select_related("vm").first()
    item.vm.name = "=HYPERLINK(1)"
    item.vm.save(update_fields=["name"])
    client = Client()
    client.force_login(people["viewer"])
    sheet = client.get(f"/api/v1/plans/{validated_plan.pk}/report.csv").content.decode()
    row = list(csv.DictReader(io.StringIO(sheet)))[0]
    assert row["vm"] == "'=HYPERLINK(1)" and row["outcome"] == "not_run"


def test_it_says_nothing_deviated_when_a_plan_went_by_the_book(approved_plan, start, people):  # noqa: F811
    a, b = host(), host()
    plan = approved_plan([(a, b)])
    drain(start(plan))
    plan.refresh_from_db()
    s = change_record_build(plan).summary
    assert s.headline == "1 of 1 completed" and s.deviations == []
    client = Client()
    client.force_login(people["auditor"])
    page = client.get(f"/plans/{plan.pk}/change-record/").content.decode()
    assert 'Deviations</strong>: <span class="ok">none</span>' in page


def test_it_compares_a_real_run_with_its_estimate(validated_plan, people):
    from django.utils import timezone

    from migrations_app.models import PlanRun

    plan = validated_plan
    item = plan.items.first()
    began = timezone.now() - timedelta(minutes=10)
    run = PlanRun.objects.create(plan=plan, started_by_name="oli", status="completed")
    PlanRun.objects.filter(pk=run.pk).update(
        started_at=began, finished_at=began + timedelta(seconds=150)
    )
    ItemAttempt.objects.create(
        run=run,
        item=item,
        driver="libvirt",
        status="completed",
        source_host=item.source_host,
        destination_host=item.destination_host,
        started_at=began,
        finished_at=began + timedelta(seconds=140),
        migrate_called_at=began,
        downtime_ms=420,
        total_time_ms=139_000,
        bytes_transferred=3 << 30,
        iterations=3,
    )
    s = change_record_build(plan).summary
    assert s.elapsed_s == 150.0 and s.estimate_s == 120.0 and s.vs_estimate_pct == 25.0
    assert s.rehearsal_speed is None and s.headline == "1 of 1 completed"
    assert s.downtime["over_max"] == [
        {"vm": item.vm.name, "downtime_ms": 420, "max_allowed_ms": 300}
    ]
    client = Client()
    client.force_login(people["auditor"])
    page = client.get(f"/plans/{plan.pk}/change-record/").content.decode()
    assert "150 s vs 120 s estimated (+25 %)" in page and "1 VM over" in page
