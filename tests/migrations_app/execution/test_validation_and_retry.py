"""Validation after switchover, automatic migrate-back, and retries of transient failures,
on the rehearsal driver (the TCP and HTTP checks are real connections from the worker)."""

import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from dashboard.audit.models import AuditEvent
from migrations_app.execution import errors
from migrations_app.execution.drivers.rehearsal import RehearsalSession
from migrations_app.models import ItemAttempt, PlanItem, RunEvent
from migrations_app.reports.change_record import change_record_build
from migrations_app.reports.outcomes import outcome_q
from migrations_app.reports.summary import vm_rows
from tests.migrations_app.execution.conftest import drain, host

pytestmark = pytest.mark.django_db(transaction=True)


def settle(run, timeout=30.0):
    """drain() until no item waits for a retry's backoff either."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = drain(run)
        if not PlanItem.objects.filter(plan=run.plan, status="queued").exists():
            return run
        time.sleep(0.2)
    raise AssertionError("a retried item never started")


@pytest.fixture
def loopback_allowed(settings):
    """An admin allowlisted loopback for outbound checks (the webhook rules)."""
    settings.FERRY_WEBHOOK_ALLOW_HOSTS = ["127.0.0.1/32"]


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def listener():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(8)
    yield s.getsockname()[1]
    s.close()


@pytest.fixture
def health_server():
    """An HTTP server on loopback: /ok answers 200, anything else 503."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200 if self.path == "/ok" else 503)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


def test_it_migrates_back_when_a_tcp_port_is_closed_after_switchover(
    approved_plan, start, loopback_allowed
):
    a, b = host(), host()
    port = closed_port()
    plan = approved_plan(
        [(a, b)],
        policy={"validation": {"tcp": [{"host": "127.0.0.1", "port": port}], "delay_s": 0}},
    )
    run = drain(start(plan))

    item = PlanItem.objects.get(plan=plan)
    first, back = ItemAttempt.objects.filter(item=item).order_by("number")
    assert item.status == "rolled_back"
    assert "connection refused" in item.status_reason and b.name in item.status_reason
    assert first.kind == "move" and first.status == "completed"
    validation = first.evidence["validation"]
    assert validation["ok"] is False and validation["checks"][0]["tries"] == 3
    assert back.kind == "rollback" and back.status == "completed"
    assert (back.source_host_id, back.destination_host_id) == (b.pk, a.pk)
    assert back.evidence["rollback"]["of_attempt"] == first.pk
    assert "validation" not in back.evidence  # a migrate-back is not validated again
    actions = list(AuditEvent.objects.values_list("action", flat=True))
    assert "attempt.validation_failed" in actions and "item.rollback_started" in actions
    assert RunEvent.objects.filter(run=run, kind="item.validation").exists()
    # A rolled-back item did not complete: the run waits for an operator, and the change
    # record and history say "rolled back", not "completed".
    assert run.status == "paused"
    rows = vm_rows(change_record_build(plan))
    assert [r.outcome for r in rows] == ["rolled_back"]
    assert ItemAttempt.objects.filter(outcome_q("rolled_back")).get() == back
    assert ItemAttempt.objects.filter(outcome_q("completed")).get() == first


def test_it_completes_when_every_check_answers(
    approved_plan, start, loopback_allowed, listener, health_server
):
    a, b = host(), host()
    plan = approved_plan(
        [(a, b)],
        policy={
            "validation": {
                "guest_agent": True,
                "tcp": [{"host": "127.0.0.1", "port": listener}],
                "http": [f"{health_server}/ok"],
            }
        },
    )
    run = drain(start(plan))

    attempt = ItemAttempt.objects.get(run=run)
    assert run.status == "completed" and attempt.item.status == "completed"
    checks = attempt.evidence["validation"]["checks"]
    assert [c["check"] for c in checks] == ["guest_agent", "tcp", "http"]
    assert all(c["ok"] and c["tries"] == 1 for c in checks)
    assert AuditEvent.objects.filter(action="attempt.validated").exists()


def test_it_keeps_the_vm_for_an_operator_when_the_policy_says_keep(
    approved_plan, start, loopback_allowed, health_server
):
    a, b = host(), host()
    plan = approved_plan(
        [(a, b)],
        policy={
            "validation": {"http": [f"{health_server}/down"], "retries": 0, "on_failure": "keep"}
        },
    )
    drain(start(plan))

    item = PlanItem.objects.get(plan=plan)
    assert item.attempts.count() == 1
    assert item.status == "needs_attention"
    assert "answered 503" in item.status_reason and b.name in item.status_reason
    assert AuditEvent.objects.filter(action="item.validation_kept").exists()


def test_it_refuses_loopback_targets_that_the_outbound_rules_do_not_allow(
    approved_plan, start, listener
):
    a, b = host(), host()
    plan = approved_plan(
        [(a, b)], policy={"validation": {"tcp": [{"host": "127.0.0.1", "port": listener}]}}
    )
    drain(start(plan))

    first = ItemAttempt.objects.filter(item__plan=plan).order_by("number").first()
    check = first.evidence["validation"]["checks"][0]
    # Refused by the rules before any connection, and not tried again.
    assert check["ok"] is False and check["tries"] == 1
    assert "not a public address" in check["problem"]
    assert PlanItem.objects.get(plan=plan).status == "rolled_back"


def fail_prepare(monkeypatch, error_class: str, times: int = 1) -> None:
    """The rehearsal's prepare fails `times` times with `error_class`, then works."""
    failures = []
    original = RehearsalSession.prepare

    def flaky(self):
        if len(failures) < times:
            failures.append(1)
            raise errors.ExecutionError(error_class, f"Injected: {error_class}.")
        return original(self)

    monkeypatch.setattr(RehearsalSession, "prepare", flaky)


def test_it_retries_a_transient_failure_after_a_backoff(approved_plan, start, monkeypatch):
    fail_prepare(monkeypatch, errors.CONNECTION_LOST)
    a, b = host(), host()
    plan = approved_plan([(a, b)], policy={"retry_max": 2, "retry_backoff_s": 1})
    run = settle(start(plan))

    first, second = ItemAttempt.objects.filter(run=run).order_by("number")
    assert (first.status, first.kind, first.error_class) == ("failed", "move", "connection_lost")
    assert (second.status, second.kind) == ("completed", "retry")
    assert second.evidence["retry"]["number"] == 1 and second.evidence["retry"]["delay_s"] == 1
    assert run.status == "completed"
    assert AuditEvent.objects.filter(action="item.retry_scheduled").count() == 1


def test_it_stops_retrying_at_the_policy_limit(approved_plan, start, monkeypatch):
    fail_prepare(monkeypatch, errors.CONNECTION_LOST, times=99)
    a, b = host(), host()
    plan = approved_plan([(a, b)], policy={"retry_max": 1, "retry_backoff_s": 1})
    run = settle(start(plan))

    attempts = list(ItemAttempt.objects.filter(run=run).order_by("number"))
    assert [x.kind for x in attempts] == ["move", "retry"]
    assert PlanItem.objects.get(plan=plan).status == "failed"


def test_it_retries_on_another_host_that_placement_picks(approved_plan, start, monkeypatch):
    fail_prepare(monkeypatch, errors.TIMEOUT)
    a, b = host(), host()
    chosen = []
    monkeypatch.setattr(
        "migrations_app.execution.recovery._other_host",
        lambda item, exclude: (chosen.append(exclude) or c.pk, {"chosen": c.pk}),
    )
    c = host()
    plan = approved_plan(
        [(a, b)], policy={"retry_max": 1, "retry_backoff_s": 1, "retry_other_host": True}
    )
    run = settle(start(plan))

    first, second = ItemAttempt.objects.filter(run=run).order_by("number")
    assert chosen == [{b.pk}]
    assert first.destination_host_id == b.pk and second.destination_host_id == c.pk
    assert second.status == "completed"


def test_it_does_not_retry_a_failure_that_is_not_transient(approved_plan, start, monkeypatch):
    fail_prepare(monkeypatch, errors.NO_SPACE)
    a, b = host(), host()
    plan = approved_plan([(a, b)], policy={"retry_max": 3, "retry_backoff_s": 1})
    run = drain(start(plan))

    assert ItemAttempt.objects.filter(run=run).count() == 1
    assert PlanItem.objects.get(plan=plan).status == "failed"


def test_a_bad_validation_spec_is_a_400_that_names_it(api_as):
    planner = api_as("planner", username="pia")
    answer = planner.post(
        "/api/v1/plans/",
        {"name": "p", "policy": {"validation": {"tcp": [{"host": "db", "port": 0}]}}},
        format="json",
    )
    assert answer.status_code == 400
    assert "tcp target 1" in answer.content.decode()
