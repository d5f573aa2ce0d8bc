"""Runs API: the events range live clients use to fill gaps, samples, item actions."""

import pytest

from migrations_app.models import ItemAttempt, RunEvent
from tests.migrations_app.execution.conftest import drain, host

pytestmark = pytest.mark.django_db(transaction=True)


def test_it_returns_the_events_after_a_sequence_number_in_order(approved_plan, start, api_as):
    a, b = host(), host()
    run = drain(start(approved_plan([(a, b)])))
    client = api_as("viewer")
    total = RunEvent.objects.filter(run=run).count()

    body = client.get(f"/api/v1/runs/{run.pk}/events/?after=3&limit=5").json()
    assert [e["seq"] for e in body["events"]] == [4, 5, 6, 7, 8]
    assert body["last_seq"] == total and body["more"] is True
    assert {"run", "plan", "seq", "kind", "item", "at", "payload"} <= set(body["events"][0])
    rest = client.get(f"/api/v1/runs/{run.pk}/events/?after=8").json()
    assert [e["seq"] for e in rest["events"]] == list(range(9, total + 1))
    assert rest["more"] is False
    assert client.get(f"/api/v1/runs/{run.pk}/events/?after=x").status_code == 400

    detail = client.get(f"/api/v1/runs/{run.pk}/").json()
    assert detail["status"] == "completed" and detail["attempts"][0]["rehearsal"] is True
    attempt = detail["attempts"][0]["id"]
    samples = client.get(f"/api/v1/attempts/{attempt}/samples/").json()["samples"]
    assert samples and samples[0]["elapsed_ms"] <= samples[-1]["elapsed_ms"]
    assert client.get(f"/api/v1/runs/?plan={run.plan_id}").status_code == 200


def test_it_lets_only_operators_cancel_and_retry_items(approved_plan, start, api_as):
    a, b = host(), host()
    run = start(approved_plan([(a, b), (a, b)], policy={"max_concurrent": 1}))
    item = run.plan.items.order_by("position").last()
    viewer, operator = api_as("viewer"), api_as("operator", username="op2")

    assert viewer.post(f"/api/v1/items/{item.pk}/cancel/", {"reason": "x"}).status_code == 403
    answer = operator.post(f"/api/v1/items/{item.pk}/cancel/", {"reason": "not tonight"})
    assert answer.status_code == 202
    item.refresh_from_db()
    assert item.status == "cancelled"
    run = drain(run)
    assert run.status == "paused"  # one item did not complete: the operator decides
    assert operator.post(f"/api/v1/items/{item.pk}/retry/").status_code == 202
    run = drain(run)
    assert run.status == "completed"
    assert ItemAttempt.objects.filter(item=item, status="completed").exists()
    assert operator.post(f"/api/v1/items/{item.pk}/retry/").status_code == 409
