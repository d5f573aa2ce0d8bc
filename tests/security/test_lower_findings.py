"""L6-L10 (security review), one regression test (or a few) each.

L6: the OpenAPI schema and Swagger UI need a signed-in user.
L7: behind a proxy, /metrics needs its token (every client looks like the proxy).
L8: the change record shows status-link events only to those who may read them, and its
    PDF is rate-limited.
L9: the transport check does not call a connection "encrypted" when its URI may turn
    certificate checks off.
L10: line breaks are refused in plan names; an old name with one no longer stops email.
"""

import pytest
from django.core import mail
from django.core.cache import cache
from django.test import Client

from inventory.models import Host
from migrations_app.checks.security import check_security_transport
from migrations_app.checks.snapshot import load_hosts
from migrations_app.errors import PlanError
from migrations_app.models import MigrationPlan
from migrations_app.notifications.services import subscription_create
from migrations_app.services.plans import plan_create, plan_update
from migrations_app.sharing.services import share_link_create
from migrations_app.workflow.services import plan_submit
from tests.factories import plan_validate_stub
from tests.migrations_app.snapshots import ctx_of, two_hosts

pytestmark = pytest.mark.django_db


def test_l6_it_serves_the_schema_and_swagger_ui_to_signed_in_people_only(make_user):
    anonymous = Client()
    for url in ("/api/schema/", "/api/docs/"):
        assert anonymous.get(url).status_code in (401, 403), url
    signed_in = Client()
    signed_in.force_login(make_user("vic", "viewer"))
    for url in ("/api/schema/", "/api/docs/"):
        assert signed_in.get(url).status_code == 200, url


def test_l7_it_requires_the_metrics_token_behind_a_proxy(settings):
    settings.FERRY_METRICS_TOKEN = "scrape-token"
    assert Client().get("/metrics", REMOTE_ADDR="127.0.0.1").status_code == 200
    settings.FERRY_BEHIND_PROXY = True
    assert Client().get("/metrics", REMOTE_ADDR="127.0.0.1").status_code == 403
    answer = Client().get(
        "/metrics", REMOTE_ADDR="127.0.0.1", HTTP_AUTHORIZATION="Bearer scrape-token"
    )
    assert answer.status_code == 200


def test_l8_it_keeps_status_link_events_out_of_other_roles_change_records(
    validated_plan, people, api_as
):
    share_link_create(plan=validated_plan, actor=people["operator"], label="for the owners")
    url = f"/api/v1/plans/{validated_plan.pk}/change-record/"
    for role in ("viewer", "planner", "approver"):
        actions = [e["action"] for e in api_as(role).get(url).json()["audit_events"]]
        assert "sharelink.create" not in actions, role
    actions = [e["action"] for e in api_as("auditor").get(url).json()["audit_events"]]
    assert "sharelink.create" in actions
    page = Client()
    page.force_login(people["viewer"])
    assert (
        "sharelink.create"
        not in page.get(f"/plans/{validated_plan.pk}/change-record/").content.decode()
    )


def test_l8_it_rate_limits_change_record_pdfs(validated_plan, api_as, settings):
    cache.clear()
    settings.FERRY_PDF_PER_MINUTE = 1
    client = api_as("viewer")
    url = f"/api/v1/plans/{validated_plan.pk}/change-record/pdf/"
    assert client.get(url).status_code == 200
    refused = client.get(url)
    assert refused.status_code == 429 and "Too many" in refused.json()["detail"]
    page = Client()
    page.force_login(client.user)
    assert page.get(f"/plans/{validated_plan.pk}/change-record.pdf").status_code == 429


def test_l9_it_does_not_call_a_tls_link_without_certificate_checks_encrypted():
    snap, item, dest = two_hosts()
    assert check_security_transport(ctx_of(snap), item, dest).severity == "ok"
    dest.tls_verified = False  # e.g. qemu+tls://kvm2/system?no_verify=1, from before C1
    finding = check_security_transport(ctx_of(snap), item, dest)
    assert finding.blocks and "encrypted" not in finding.message.split(":")[0]
    assert "certificate checks off" in finding.message


def test_l9_it_marks_stored_uris_with_options_as_unverified():
    Host.objects.create(name="old", uri="qemu+tls://kvm2/system?no_verify=1", transport="tls")
    Host.objects.create(name="new", uri="qemu+tls://kvm3/system", transport="tls")
    hosts = {h.name: h for h in load_hosts().values()}
    assert hosts["old"].tls_verified is False and hosts["new"].tls_verified is True


@pytest.mark.parametrize("name", ["two\nlines", "carriage\rreturn", "tab\tname", "nul\x00"])
def test_l10_it_refuses_line_breaks_in_plan_names(people, name, api_as):
    with pytest.raises(PlanError, match="one line"):
        plan_create(actor=people["planner"], name=name)
    plan = plan_create(actor=people["planner"], name="fine")
    with pytest.raises(PlanError, match="one line"):
        plan_update(plan=plan, actor=people["planner"], name=name)
    answer = api_as("planner").post("/api/v1/plans/", {"name": name}, format="json")
    assert answer.status_code == 400


def test_l10_it_still_emails_about_a_plan_whose_old_name_has_a_line_break(validated_plan, people):
    from migrations_app.models.notifications import NotificationDelivery
    from migrations_app.notifications.services import notification_deliver

    MigrationPlan.objects.filter(pk=validated_plan.pk).update(name="old\nname")
    plan_validate_stub(MigrationPlan.objects.get(pk=validated_plan.pk))
    subscription_create(
        actor=people["planner"], kind="email", target="owners@example.org", plan=validated_plan
    )
    plan_submit(plan=MigrationPlan.objects.get(pk=validated_plan.pk), actor=people["planner"])
    delivery = notification_deliver(NotificationDelivery.objects.get().pk)
    assert delivery.status == "delivered", delivery.last_error
    assert mail.outbox and "old name" in mail.outbox[0].subject
