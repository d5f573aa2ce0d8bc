"""Regression tests for what the security suite found, one per fix."""

import pytest
from rest_framework.test import APIClient

pytestmark = pytest.mark.django_db


def test_it_refuses_the_home_page_to_a_user_without_a_role(client, make_user):
    """Home lists host names and memory: inventory, which a role-less account may not read."""
    client.force_login(make_user("nobody"))
    assert client.get("/").status_code == 403
    client.force_login(make_user("v", "viewer"))
    assert client.get("/").status_code == 200


def test_it_hides_global_webhook_subscriptions_and_secrets_from_non_admins(make_user, settings):
    """A global subscription's HMAC secret signs every plan's notifications; planners and
    operators may manage their plans' subscriptions but must not read (or forge with) it.
    Since L2 no secret is listed at all: it is shown once, in the answer to its creation."""
    from migrations_app.notifications.services import subscription_create
    from tests.factories import plan_make

    settings.FERRY_WEBHOOK_ALLOW_HOSTS = ["127.0.0.1/32"]  # loopback receivers (M2)
    admin = make_user("adm", "admin")
    planner = make_user("pl", "planner")
    plan = plan_make(planner)
    global_sub = subscription_create(actor=admin, kind="webhook", target="http://127.0.0.1:9/")
    own = subscription_create(
        actor=planner, kind="webhook", target="http://127.0.0.1:9/p", plan=plan
    )
    client = APIClient()
    for role in ("planner", "operator"):
        client.force_authenticate(make_user(f"u-{role}", role))
        listing = client.get("/api/v1/notification-subscriptions/")
        assert listing.status_code == 200
        body = listing.content.decode()
        assert global_sub.secret not in body and own.secret not in body
        detail = client.get(f"/api/v1/notification-subscriptions/{global_sub.pk}/")
        assert detail.status_code == 404
        assert (
            client.delete(f"/api/v1/notification-subscriptions/{global_sub.pk}/").status_code == 404
        )
    client.force_authenticate(admin)
    listing = client.get("/api/v1/notification-subscriptions/")
    assert str(global_sub.pk) in listing.content.decode()
    assert global_sub.secret not in listing.content.decode()


@pytest.mark.parametrize(
    "url",
    [
        "/api/v1/attempts/null/",
        "/api/v1/attempts/1.5/samples/",
        "/api/v1/runs/abc/",
        "/api/v1/runs/abc/events/",
    ],
)
def test_it_answers_404_to_a_malformed_run_or_attempt_id(url, make_user):
    """Found by schemathesis: Django's get_object_or_404 raised ValueError (a 500) on 'null'."""
    client = APIClient()
    client.force_authenticate(make_user("v", "viewer"))
    assert client.get(url).status_code == 404


def test_it_answers_404_to_a_malformed_item_id_in_an_item_action(make_user):
    client = APIClient()
    client.force_authenticate(make_user("op", "operator"))
    response = client.post("/api/v1/items/null/cancel/", {}, format="json")
    assert response.status_code == 404


def test_it_documents_the_json_audit_export_as_an_array_of_events(make_user):
    """Found by schemathesis: the schema said binary string, the body is a JSON array."""
    from drf_spectacular.generators import SchemaGenerator

    schema = SchemaGenerator().get_schema(request=None, public=True)
    content = schema["paths"]["/api/v1/audit-events/export/"]["get"]["responses"]["200"]
    assert content["content"]["application/json"]["schema"]["type"] == "array"
    client = APIClient()
    client.force_authenticate(make_user("aud", "auditor"))
    response = client.get("/api/v1/audit-events/export/", {"as": "json"})
    import json

    assert isinstance(json.loads(b"".join(response.streaming_content)), list)


def test_it_answers_400_to_absurdly_nested_json(make_user):
    """Found by the hostile-input suite: json.loads raised RecursionError, a 500."""
    client = APIClient()
    client.force_authenticate(make_user("pl", "planner"))
    body = b"[" * 100_000 + b"]" * 100_000
    response = client.generic("POST", "/api/v1/plans/", body, content_type="application/json")
    assert response.status_code == 400
    assert "nested" in response.json()["detail"]


def test_it_answers_409_when_finishing_a_run_whose_plan_may_not_finish(make_user):
    """Found by the hostile-input suite: a plan that moved on (here: back in draft) while
    its run stayed open made run_finish raise TransitionError, a 500."""
    from migrations_app.models import PlanRun
    from tests.factories import plan_make

    plan = plan_make(make_user("pl", "planner"))
    run = PlanRun.objects.create(plan=plan)
    client = APIClient()
    client.force_authenticate(make_user("op", "operator"))
    response = client.post(f"/api/v1/runs/{run.pk}/finish/")
    assert response.status_code == 409
    assert "draft" in response.json()["detail"]


def test_it_answers_an_unknown_host_to_a_name_with_a_nul_byte(make_user):
    """Found by the hostile-form suite on PostgreSQL: a NUL in the evacuate form's host name
    reached a lookup, which PostgreSQL refuses with DataError (a 500)."""
    from migrations_app.errors import PlanError
    from migrations_app.services.item_input import resolve_host

    with pytest.raises(PlanError, match="Unknown host"):
        resolve_host("kvm\x00-a1")


@pytest.mark.parametrize("value", ["2000-01-01T00:00:00+20:00", "0001-01-01T00:00:00+23:00"])
def test_it_filters_the_audit_trail_by_any_valid_offset_without_a_database_error(make_user, value):
    """Python accepts offsets up to ±23:59, PostgreSQL only ±15:59: the filter works in UTC
    (schemathesis found a 503 'time zone displacement out of range'); out of range is a 400."""
    from dashboard.audit.record import audit_record

    auditor = make_user("aud", "auditor")
    audit_record(actor=auditor, action="test.event", obj=None)
    client = APIClient()
    client.force_authenticate(auditor)
    since = client.get("/api/v1/audit-events/", {"since": value})
    until = client.get("/api/v1/audit-events/", {"until": value})
    if value.startswith("0001"):  # before year 1 in UTC
        assert since.status_code == until.status_code == 400, since.content
        return
    assert since.status_code == 200 and since.json()["count"] >= 1
    assert until.status_code == 200 and until.json()["count"] == 0


def test_a_plan_window_with_a_far_offset_is_stored_in_utc(make_user):
    from django.test import Client

    from migrations_app.models import MigrationPlan

    client = Client()
    client.force_login(make_user("pat", "planner"))
    response = client.post(
        "/plans/new/",
        {"name": "far", "window_start": "2030-01-02T03:00:00+20:00"},
    )
    assert response.status_code == 302, response.content
    plan = MigrationPlan.objects.get(name="far")
    assert plan.window_start.utcoffset().total_seconds() == 0
    assert plan.window_start.isoformat().startswith("2030-01-01T07:00")
