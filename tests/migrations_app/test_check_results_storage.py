"""A validation run stores its verdicts as one ItemCheckResults row per item; CheckResult
reads them back one verdict per row (a database view), in the order they were stored, and
results written by the previous schema (one table row per verdict) survive the move both
ways."""

import gc

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from migrations_app.checks import CHECK_IDS
from migrations_app.models import CheckResult, ItemCheckResults, PlanItem, ValidationRun
from migrations_app.services.bulk_rows import check_results_insert, collector_paused
from migrations_app.services.validation import plan_validate
from tests.factories import plan_make

BEFORE = [("migrations_app", "0011_campaigns_models")]


@pytest.mark.django_db
def test_it_stores_one_row_per_item_and_reads_every_verdict_back_in_order():
    plan = plan_make(None, items=3)
    run = plan_validate(plan=plan, actor=None)
    items = list(plan.items.order_by("position", "id"))
    assert ItemCheckResults.objects.filter(run=run).count() == len(items)
    rows = list(run.results.all())
    assert len(rows) == len(items) * len(CHECK_IDS)
    assert [r.id for r in rows] == sorted(r.id for r in rows)
    # In plan order, each item's verdicts in the order the checks ran.
    stored = [(r.item_id, r.check_id) for r in rows]
    checks_ran = [c.check_id for c in rows[: len(CHECK_IDS)]]
    assert stored == [(item.pk, cid) for item in items for cid in checks_ran]
    assert sorted(checks_ran) == sorted(CHECK_IDS)
    first = run.results.select_related("item").get(item=items[0], check_id="host.distinct")
    assert first.item == items[0] and first.vm_name == items[0].vm.name
    assert first.severity == "ok" and isinstance(first.evidence, dict) and first.message
    by_severity = run.results.filter(severity__in=["blocker", "warning", "info"]).count()
    assert by_severity == run.blockers + run.warnings + run.infos

    # Deleting an item keeps its verdicts without it; deleting the run removes them.
    results_of_gone = items[2].check_results.count()
    PlanItem.objects.filter(pk=items[2].pk).delete()
    assert run.results.filter(item__isnull=True).count() == results_of_gone
    ValidationRun.objects.filter(pk=run.pk).delete()
    assert not ItemCheckResults.objects.filter(run_id=run.pk).exists()
    assert not CheckResult.objects.filter(run_id=run.pk).exists()


@pytest.mark.django_db
def test_it_splits_an_item_with_more_verdicts_than_a_row_holds_and_keeps_their_order():
    plan = plan_make(None)
    item = plan.items.get()
    run = ValidationRun.objects.create(plan=plan, plan_version=1, content_hash="x" * 64)
    many = ItemCheckResults.RESULTS_PER_ROW + 5
    verdicts = [(f"c{n}", "ok", f"verdict {n}", "", {"n": n}) for n in range(many)]
    assert check_results_insert(run.pk, [(item.pk, "vm", verdicts), (None, "", [])]) == many
    assert ItemCheckResults.objects.filter(run=run).count() == 2
    assert [r.evidence["n"] for r in run.results.all()] == list(range(many))


def test_the_collector_is_back_as_it_was_after_a_pause_even_on_error():
    assert gc.isenabled()
    with pytest.raises(RuntimeError), collector_paused():
        assert not gc.isenabled()
        raise RuntimeError("boom")
    assert gc.isenabled()
    gc.disable()
    try:
        with collector_paused():
            pass
        assert not gc.isenabled()  # not switched on by a pause that found it off
    finally:
        gc.enable()


@pytest.mark.django_db(transaction=True)
def test_it_keeps_check_results_made_by_the_previous_schema_both_ways():
    executor = MigrationExecutor(connection)
    executor.migrate(BEFORE)
    old = executor.loader.project_state(BEFORE).apps
    plan = old.get_model("migrations_app", "MigrationPlan").objects.create(name="made before")
    Run = old.get_model("migrations_app", "ValidationRun")
    runs = [Run.objects.create(plan_id=plan.pk, plan_version=1, content_hash="h") for _ in "ab"]
    OldResult = old.get_model("migrations_app", "CheckResult")
    made = []
    for run, vm, check, severity in [
        (runs[0], "vm-1", "vm.state", "ok"),
        (runs[0], "vm-1", "cpu.compat", "blocker"),
        (runs[0], "vm-2", "vm.state", "warning"),
        (runs[1], "vm-1", "vm.state", "info"),
        (runs[0], "vm-1", "window", "ok"),  # the same item again, after another one
    ]:
        made.append(
            OldResult.objects.create(
                run_id=run.pk,
                vm_name=vm,
                check_id=check,
                severity=severity,
                message=f"{check} of {vm}",
                remedy="fix it" if severity == "blocker" else "",
                evidence={"vm": vm, "nested": {"list": [1, 2]}},
            )
        )
    fields = ("run_id", "vm_name", "check_id", "severity", "message", "remedy", "evidence")
    before = [tuple(getattr(r, f) for f in fields) for r in made]

    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(executor.loader.graph.leaf_nodes())
    after = list(CheckResult.objects.order_by("id").values_list(*fields))
    assert after == before
    assert ItemCheckResults.objects.count() == 4  # vm-1, vm-2 and run b, then vm-1 again
    assert list(CheckResult.objects.filter(run_id=runs[1].pk).values_list("severity")) == [
        ("info",)
    ]

    executor = MigrationExecutor(connection)
    executor.migrate(BEFORE)
    back = executor.loader.project_state(BEFORE).apps.get_model("migrations_app", "CheckResult")
    assert list(back.objects.order_by("id").values_list(*fields)) == before

    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(executor.loader.graph.leaf_nodes())
    assert list(CheckResult.objects.order_by("id").values_list(*fields)) == before
