"""Migration history: every filter, the totals, pagination with pinned query counts, bad
input as a 400, the page; and the retention of progress samples (never attempts, items or
audit events)."""

import datetime as dt
import uuid

import pytest
from django.core.management import CommandError, call_command
from django.test import Client

from dashboard.audit.models import AuditEvent
from inventory.models import Host, VirtualMachine
from migrations_app.models import (
    Approval,
    ItemAttempt,
    MigrationPlan,
    PlanItem,
    PlanRun,
    ProgressSample,
)
from migrations_app.reports.history import history_attempts, history_filters, history_totals
from migrations_app.services.retention import progress_samples_prune

pytestmark = pytest.mark.django_db
DAY = dt.datetime(2025, 3, 1, 12, 0, tzinfo=dt.UTC)


class World:
    """Three hosts in two groups, two plans by different people, attempts of every outcome."""

    def __init__(self):
        self.h1 = Host.objects.create(name="h1", uri="test:///h1", transport="test", group="g1")
        self.h2 = Host.objects.create(name="h2", uri="test:///h2", transport="test", group="g1")
        self.h3 = Host.objects.create(name="h3", uri="test:///h3", transport="test", group="g2")
        self.p1 = self.plan("p1", author="pat", starter="oli", approver="ann")
        self.p2 = self.plan("p2", author="pia", starter="olga", approver="abe")
        self.vms = {}
        self.rows = {}
        add = self.attempt
        add("a-done", self.p1, "vmA", self.h1, self.h2, "completed", day=0, downtime=100)
        add("b-rolled", self.p1, "vmB", self.h1, self.h3, "failed", day=1, called=True)
        add("c-failed", self.p2, "vmC", self.h2, self.h1, "failed", day=2)
        add("c-done", self.p2, "vmC", self.h2, self.h1, "completed", day=2, downtime=300, number=2)
        add("d-stuck", self.p2, "vmD", self.h3, self.h2, "needs_attention", day=3, called=True)
        add("e-cancel", self.p2, "vmE", self.h3, self.h2, "cancelled", day=4)
        add("f-done", self.p1, "vmF", self.h3, self.h1, "completed", day=4, downtime=200)
        add("running", self.p1, "vmG", self.h1, self.h2, "running", day=None)

    @staticmethod
    def plan(name, *, author, starter, approver):
        plan = MigrationPlan.objects.create(name=name, author_name=author, status="running")
        plan.test_run = PlanRun.objects.create(plan=plan, started_by_name=starter)
        Approval.objects.create(
            plan=plan, approver_name=approver, decision="approved", content_hash="x"
        )
        return plan

    def attempt(
        self, key, plan, vm_name, src, dst, status, *, day, downtime=None, called=False, number=1
    ):
        vm = self.vms.get(vm_name) or VirtualMachine.objects.create(
            uuid=uuid.uuid4(), name=vm_name, host=src, memory_mib=1024
        )
        self.vms[vm_name] = vm
        item, _ = PlanItem.objects.get_or_create(
            plan=plan, vm=vm, defaults={"source_host": src, "destination_host": dst}
        )
        finished = DAY + dt.timedelta(days=day) if day is not None else None
        self.rows[key] = ItemAttempt.objects.create(
            run=plan.test_run,
            item=item,
            number=number,
            driver="rehearsal",
            status=status,
            source_host=src,
            destination_host=dst,
            started_at=finished - dt.timedelta(minutes=1) if finished else DAY,
            finished_at=finished,
            migrate_called_at=(finished - dt.timedelta(seconds=30))
            if (called or status == "completed") and finished
            else None,
            downtime_ms=downtime,
            total_time_ms=60_000 if finished else None,
            bytes_transferred=1 << 30 if status == "completed" else None,
        )


@pytest.fixture
def world():
    return World()


def keys(world, qs):
    names = {a.pk: k for k, a in world.rows.items()}
    return {names[a.pk] for a in qs}


def pick(world, **params):
    return keys(world, history_attempts(history_filters(params)))


def test_it_lists_finished_attempts_only(world):
    assert pick(world) == set(world.rows) - {"running"}


def test_it_filters_by_host_name_or_id_on_either_end(world):
    assert pick(world, host="h3") == {"b-rolled", "d-stuck", "e-cancel", "f-done"}
    assert pick(world, host=str(world.h1.pk)) == {
        "a-done",
        "b-rolled",
        "c-failed",
        "c-done",
        "f-done",
    }
    assert pick(world, host="nowhere") == set()


def test_it_filters_by_vm_name_id_or_uuid(world):
    vm = world.vms["vmC"]
    assert pick(world, vm="vmC") == {"c-failed", "c-done"}
    assert pick(world, vm=str(vm.pk)) == {"c-failed", "c-done"}
    assert pick(world, vm=str(vm.uuid)) == {"c-failed", "c-done"}


def test_it_takes_a_digit_string_too_long_for_an_id_as_a_name(world, api_as):
    answer = api_as("viewer").get("/api/v1/history/", {"vm": "9" * 30, "host": "8" * 25})
    assert answer.status_code == 200 and answer.json()["count"] == 0


def test_it_filters_by_host_group(world):
    assert pick(world, group="g2") == {"b-rolled", "d-stuck", "e-cancel", "f-done"}
    assert pick(world, group="g1") == set(world.rows) - {"running"}


def test_it_filters_by_the_person_who_drafted_approved_or_started(world):
    p1 = {"a-done", "b-rolled", "f-done"}
    p2 = {"c-failed", "c-done", "d-stuck", "e-cancel"}
    assert pick(world, person="pat") == p1  # author
    assert pick(world, person="olga") == p2  # started the run
    assert pick(world, person="ann") == p1  # approved
    assert pick(world, person="nobody") == set()


def test_it_filters_by_date_range_with_whole_days(world):
    assert pick(world, since="2025-03-03") == {
        "c-failed",
        "c-done",
        "d-stuck",
        "e-cancel",
        "f-done",
    }
    assert pick(world, until="2025-03-02") == {"a-done", "b-rolled"}
    assert pick(world, since="2025-03-02", until="2025-03-03") == {"b-rolled", "c-failed", "c-done"}
    assert pick(world, since="2025-03-05T12:00:00+00:00") == {"e-cancel", "f-done"}
    assert pick(world, until="2025-03-05T11:59:59Z") == set(world.rows) - {
        "running",
        "e-cancel",
        "f-done",
    }


def test_it_filters_by_outcome(world):
    assert pick(world, outcome="completed") == {"a-done", "c-done", "f-done"}
    assert pick(world, outcome="rolled_back") == {"b-rolled"}
    assert pick(world, outcome="failed") == {"c-failed"}
    assert pick(world, outcome="cancelled") == {"e-cancel"}
    assert pick(world, outcome="needs_attention") == {"d-stuck"}
    assert pick(world, outcome="failed,rolled_back") == {"c-failed", "b-rolled"}


def test_it_combines_filters(world):
    assert pick(world, group="g1", outcome="completed", person="pat") == {"a-done", "f-done"}


def test_it_counts_vms_moved_and_downtime_percentiles(world):
    totals = history_totals(history_attempts({}))
    assert totals["attempts"] == 7
    assert totals["vms_moved"] == 3  # vmA, vmC (after its retry), vmF
    assert totals["outcomes"] == {
        "completed": 3,
        "rolled_back": 1,
        "failed": 1,
        "cancelled": 1,
        "needs_attention": 1,
    }
    assert totals["downtime_ms"] == {"measured": 3, "p50": 200, "p95": 300, "p99": 300, "max": 300}
    only_g2 = history_totals(history_attempts(history_filters({"group": "g2"})))
    assert only_g2["vms_moved"] == 1 and only_g2["downtime_ms"]["p50"] == 200


@pytest.mark.parametrize(
    "params, message",
    [
        ({"since": "yesterday"}, "since: 'yesterday' is not a date"),
        ({"until": "2025-13-40"}, "until: '2025-13-40' is not a date"),
        ({"since": "2025-03-05", "until": "2025-03-01"}, "until is before since"),
        ({"outcome": "exploded"}, "outcome: 'exploded' is not one of"),
        ({"vm": "x" * 201}, "vm: at most 200 characters"),
    ],
)
def test_it_answers_400_with_the_reason_for_bad_filters(world, api_as, params, message):
    client = api_as("viewer")
    answer = client.get("/api/v1/history/", params)
    assert answer.status_code == 400 and message in answer.json()["detail"]


def test_it_pages_the_api_with_totals_and_a_pinned_number_of_queries(
    world, api_as, django_assert_max_num_queries
):
    client = api_as("viewer")
    client.get("/api/v1/history/")  # warm the session and role caches
    with django_assert_max_num_queries(5):
        first = client.get("/api/v1/history/", {"page_size": 3})
    body = first.json()
    assert body["count"] == 7 and len(body["results"]) == 3 and body["next"]
    assert body["totals"]["vms_moved"] == 3
    assert [r["finished_at"] for r in body["results"]] == sorted(
        (r["finished_at"] for r in body["results"]), reverse=True
    )
    seen = [r["attempt"] for r in body["results"]]
    with django_assert_max_num_queries(5):
        rest = client.get(body["next"]).json()
    seen += [r["attempt"] for r in rest["results"]]
    seen += [r["attempt"] for r in client.get(rest["next"]).json()["results"]]
    assert sorted(seen) == sorted(a.pk for k, a in world.rows.items() if k != "running")
    row = next(r for r in body["results"] if r["attempt"] == world.rows["f-done"].pk)
    assert row["outcome"] == "completed" and row["vm"] == "vmF" and row["groups"] == ["g1", "g2"]
    assert row["started_by"] == "oli" and row["downtime_ms"] == 200


def test_it_keeps_the_query_count_flat_as_history_grows(
    world, api_as, django_assert_max_num_queries
):
    for day in range(30):
        world.attempt(
            f"more-{day}",
            world.p1,
            f"vm-more-{day}",
            world.h1,
            world.h2,
            "completed",
            day=5 + day,
            downtime=50,
        )
    client = api_as("viewer")
    client.get("/api/v1/history/")
    with django_assert_max_num_queries(5):
        body = client.get("/api/v1/history/", {"page_size": 25}).json()
    assert len(body["results"]) == 25 and body["totals"]["vms_moved"] == 33


def test_it_shows_the_history_page_with_filters_and_totals(world, people):
    client = Client()
    client.force_login(people["viewer"])
    page = client.get("/plans/history/", {"group": "g2", "outcome": "completed"}).content.decode()
    assert "vmF" in page and "vmA" not in page
    assert "VMs moved" in page and "200 ms" in page
    bad = client.get("/plans/history/", {"since": "soon"})
    assert bad.status_code == 200 and "is not a date" in bad.content.decode()
    assert Client().get("/plans/history/").status_code == 302  # sign in first


def _sample(attempt, at):
    return ProgressSample.objects.create(attempt=attempt, at=at, elapsed_ms=1000, phase="transfer")


def test_it_prunes_old_progress_samples_of_finished_attempts_only(world, settings):
    settings.FERRY_SAMPLE_RETENTION_DAYS = 30
    now = DAY + dt.timedelta(days=100)
    old_done = _sample(world.rows["a-done"], DAY)
    fresh_done = _sample(world.rows["f-done"], now - dt.timedelta(days=1))
    old_running = _sample(world.rows["running"], DAY)
    attempts_before = ItemAttempt.objects.count()
    items_before = PlanItem.objects.count()

    assert progress_samples_prune(now=now) == 1
    remaining = set(ProgressSample.objects.values_list("pk", flat=True))
    assert remaining == {fresh_done.pk, old_running.pk} and old_done.pk not in remaining
    assert (
        ItemAttempt.objects.count() == attempts_before and PlanItem.objects.count() == items_before
    )
    event = AuditEvent.objects.get(action="samples.pruned")
    assert event.after["deleted"] == 1 and event.after["retention_days"] == 30
    assert progress_samples_prune(now=now) == 0  # nothing left: nothing audited
    assert AuditEvent.objects.filter(action="samples.pruned").count() == 1


def test_it_keeps_samples_forever_with_a_retention_of_zero(world, settings):
    settings.FERRY_SAMPLE_RETENTION_DAYS = 0
    _sample(world.rows["a-done"], DAY - dt.timedelta(days=3650))
    assert progress_samples_prune() == 0 and ProgressSample.objects.count() == 1


def test_it_prunes_from_the_management_command(world, settings):
    settings.FERRY_SAMPLE_RETENTION_DAYS = 30
    _sample(world.rows["a-done"], DAY)
    call_command("prune_samples")
    assert ProgressSample.objects.count() == 0
    with pytest.raises(CommandError, match="at least 1"):
        call_command("prune_samples", "--days", "0")
