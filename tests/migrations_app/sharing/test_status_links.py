"""Status links: read-only pages, redaction, revocation and expiry."""

from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from dashboard.audit.models import AuditEvent
from migrations_app.models import MigrationPlan
from migrations_app.models.sharing import ShareLink
from migrations_app.sharing.services import (
    share_link_active,
    share_link_create,
    share_link_revoke,
    token_hash,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def link(validated_plan, people):
    return share_link_create(plan=validated_plan, actor=people["operator"], label="owners")


def test_it_stores_only_the_hash_of_the_token_and_audits_creation(link):
    created, token = link
    assert created.token_hash == token_hash(token) and token not in created.token_hash
    event = AuditEvent.objects.get(action="sharelink.create")
    assert token not in str(event.after) and event.after["token_prefix"] == token[:6]


def test_it_shows_progress_without_login_and_redacts_host_names(link, validated_plan):
    _, token = link
    host_name = validated_plan.items.first().source_host.name
    answer = Client().get(f"/status/{token}/")
    assert answer.status_code == 200
    body = answer.content.decode()
    assert validated_plan.name in body and "0 of 1 VMs finished" in body
    assert host_name not in body and "(source host)" in body
    assert answer["Cache-Control"] == "no-store" and answer["Referrer-Policy"] == "no-referrer"


def test_it_shows_host_names_when_the_creator_allowed_it(validated_plan, people):
    _, token = share_link_create(
        plan=validated_plan, actor=people["operator"], show_host_names=True
    )
    host_name = validated_plan.items.first().source_host.name
    assert host_name in Client().get(f"/status/{token}/").content.decode()


@pytest.mark.parametrize("method", ["post", "put", "patch", "delete"])
def test_it_refuses_every_unsafe_method_and_changes_nothing(link, validated_plan, method):
    _, token = link
    before = AuditEvent.objects.count()
    client = Client(enforce_csrf_checks=True)
    answer = getattr(client, method)(f"/status/{token}/", data={"status": "cancelled"})
    assert answer.status_code == 405
    validated_plan.refresh_from_db()
    assert validated_plan.status == "draft" and AuditEvent.objects.count() == before


def test_it_gives_a_share_link_no_access_to_the_api(link, validated_plan):
    _, token = link
    client = Client()
    for path in (
        f"/api/v1/plans/{validated_plan.pk}/",
        f"/api/v1/plans/{validated_plan.pk}/start/",
    ):
        answer = client.post(path, HTTP_AUTHORIZATION=f"Token {token}")
        assert answer.status_code in (401, 403, 404)
    assert MigrationPlan.objects.get(pk=validated_plan.pk).status == "draft"


def test_it_stops_working_when_revoked(link, people):
    created, token = link
    assert share_link_active(token).plan == created.plan
    share_link_revoke(link=created, actor=people["operator"])
    answer = Client().get(f"/status/{token}/")
    assert answer.status_code == 410 and "revoked" in answer.content.decode()
    assert share_link_active(token) is None
    assert AuditEvent.objects.filter(action="sharelink.revoke").count() == 1


def test_it_stops_working_when_expired(validated_plan, people):
    created, token = share_link_create(
        plan=validated_plan,
        actor=people["operator"],
        expires_at=timezone.now() + timedelta(hours=1),
    )
    assert share_link_active(token) is not None
    ShareLink.objects.filter(pk=created.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    answer = Client().get(f"/status/{token}/")
    assert answer.status_code == 410 and "expired" in answer.content.decode()
    assert share_link_active(token) is None


def test_it_answers_404_with_an_explanation_for_an_unknown_token(db):
    answer = Client().get("/status/not-a-real-token/")
    assert answer.status_code == 404 and "Unknown status link" in answer.content.decode()


def test_it_lets_operators_create_and_revoke_links_over_the_api(validated_plan, people):
    from rest_framework.test import APIClient

    client = APIClient()
    client.force_authenticate(people["operator"])
    answer = client.post(
        f"/api/v1/plans/{validated_plan.pk}/share-links/", {"label": "ops"}, format="json"
    )
    assert answer.status_code == 201, answer.content
    url = answer.json()["url"]
    assert Client().get(url).status_code == 200
    link_id = answer.json()["id"]
    assert client.post(f"/api/v1/share-links/{link_id}/revoke/").status_code == 200
    assert Client().get(url).status_code == 410
    viewer = APIClient()
    viewer.force_authenticate(people["viewer"])
    answer = viewer.post(f"/api/v1/plans/{validated_plan.pk}/share-links/", {}, format="json")
    assert answer.status_code == 403


def test_it_lists_links_with_revoke_forms_in_the_plan_page_include(link, validated_plan, people):
    client = Client()
    client.force_login(people["operator"])
    from django.template import Context, Template
    from django.test import RequestFactory

    request = RequestFactory().get("/plans/1/")
    request.user = people["operator"]
    html = Template("{% load plan_workflow %}{% plan_share_links plan %}").render(
        Context({"plan": validated_plan, "request": request})
    )
    assert link[0].token_prefix in html and "Revoke" in html and "Create status link" in html
    answer = client.post(f"/share-links/{link[0].pk}/revoke/", {"next": "/audit/"})
    assert answer.status_code == 302 and answer["Location"] == "/audit/"
    assert share_link_active(link[1]) is None


def test_it_tells_open_streams_to_close_when_revoked(
    link, people, django_capture_on_commit_callbacks
):
    from asgiref.sync import async_to_sync
    from channels.layers import get_channel_layer

    from migrations_app.sharing.services import share_link_active, share_link_group

    created, token = link
    assert share_link_active(token) == created
    layer = get_channel_layer()
    channel = async_to_sync(layer.new_channel)()
    async_to_sync(layer.group_add)(share_link_group(created.pk), channel)
    with django_capture_on_commit_callbacks(execute=True):
        share_link_revoke(link=created, actor=people["operator"])
    message = async_to_sync(layer.receive)(channel)
    assert message["type"] == "live.close" and "revoked" in message["detail"]


def test_it_builds_link_urls_on_the_public_base_url(settings, rf):
    from migrations_app.sharing.services import share_link_url

    request = rf.get("/", HTTP_HOST="127.0.0.1")
    assert share_link_url(request, "abc") == "http://127.0.0.1/status/abc/"
    settings.FERRY_BASE_URL = "https://ferry.example.internal/"
    assert share_link_url(request, "abc") == "https://ferry.example.internal/status/abc/"
