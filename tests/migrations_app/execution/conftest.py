"""Fixtures for execution tests on the rehearsal driver: fast settings, approved plans
started through the workflow services, and a loop that plays the worker's part."""

import itertools
import threading
import time
import uuid

import pytest
from django.db import close_old_connections, connections
from django.utils import timezone

from inventory.models import Host, VirtualMachine
from migrations_app.models import ItemAttempt, MigrationPlan, PlanItem, PlanRun
from migrations_app.workflow.services import plan_approve, plan_start, plan_submit
from tests.factories import host_make, plan_validate_stub

_counter = itertools.count(1)


@pytest.fixture(autouse=True)
def _fast(settings):
    settings.FERRY_REHEARSAL_SPEED = 400.0  # an 8 GiB VM moves in ~0.2 s
    settings.FERRY_SAMPLE_SECONDS = 0.02
    settings.FERRY_LEASE_SECONDS = 5
    settings.FERRY_TICK_SECONDS = 3600  # tests call tick() themselves


def host(name=None) -> Host:
    """A test-driver host (the rehearsal driver runs between two of them)."""
    return host_make(name or f"sim-{next(_counter)}")


@pytest.fixture
def approved_plan(people):
    """approved_plan(moves=[(src, dst), ...], policy={...}, window=(start, end),
    edit=callable(plan) run before approval) -> plan."""

    def make(moves, policy=None, window=None, memory_mib=2048, edit=None):
        plan = MigrationPlan.objects.create(
            name=f"plan-{next(_counter)}",
            change_ticket="CHG-6",
            author=people["planner"],
            author_name="pat",
            policy={"require_tls": False, "verify_seconds": 2, **(policy or {})},
            window_start=window[0] if window else None,
            window_end=window[1] if window else None,
        )
        for position, (src, dst) in enumerate(moves):
            vm = VirtualMachine.objects.create(
                uuid=uuid.uuid4(), name=f"vm-{next(_counter)}", host=src, memory_mib=memory_mib
            )
            PlanItem.objects.create(
                plan=plan, vm=vm, source_host=src, destination_host=dst, position=position
            )
        if edit is not None:
            edit(plan)
        plan_validate_stub(plan)
        plan_submit(plan=plan, actor=people["planner"])
        plan_approve(plan=plan, actor=people["approver"])
        plan.refresh_from_db()
        return plan

    return make


@pytest.fixture
def start(people):
    def _start(plan, override_reason=""):
        plan_start(plan=plan, actor=people["operator"], override_reason=override_reason)
        return PlanRun.objects.get(plan=plan)

    return _start


def drain(run: PlanRun, *, timeout: float = 30) -> PlanRun:
    """Play one worker: schedule, execute queued attempts one by one, until nothing is left."""
    from migrations_app.execution.runner import execute
    from migrations_app.execution.scheduler import schedule_run

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        schedule_run(run.pk)
        queued = list(
            ItemAttempt.objects.filter(run=run, status="queued").values_list("pk", flat=True)
        )
        for attempt_id in queued:
            execute(attempt_id)
        run.refresh_from_db()
        if not queued and not ItemAttempt.objects.filter(run=run, status="running").exists():
            return run
    raise AssertionError(f"run {run.pk} did not settle: {run.status}")


class WorkerThreads:
    """N database-queue workers in threads (like the embedded server's), for concurrency."""

    def __init__(self, count: int):
        from django_tasks_db.management.commands.db_worker import Worker

        self.workers = [
            Worker(
                queue_names=["*"],
                interval=0.02,
                batch=False,
                backend_name="default",
                startup_delay=False,
                max_tasks=None,
                worker_id=f"test-{i}",
                excluded_queue_names=[],
            )
            for i in range(count)
        ]
        self.threads = [threading.Thread(target=self._run, args=(w,)) for w in self.workers]

    @staticmethod
    def _run(worker):
        try:
            worker.run()
        finally:
            close_old_connections()
            connections.close_all()

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc):
        for w in self.workers:
            w.running = False
        for t in self.threads:
            t.join(timeout=30)


def wait_for(predicate, timeout=30.0, interval=0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    raise AssertionError("condition not reached in time")


def now():
    return timezone.now()
