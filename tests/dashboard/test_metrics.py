"""/metrics: counts from the database, guarded by a token or an allowed address."""

import pytest
from django.test import override_settings

from migrations_app.models import MigrationPlan

pytestmark = pytest.mark.django_db


def test_it_serves_prometheus_text_to_loopback(client):
    MigrationPlan.objects.create(name="a", status="draft")
    MigrationPlan.objects.create(name="b", status="running")
    body = client.get("/metrics", REMOTE_ADDR="127.0.0.1").content.decode()
    assert 'ferry_plans{status="running"} 1' in body
    assert 'ferry_plans{status="draft"} 1' in body
    assert "ferry_migration_duration_seconds_bucket" in body
    assert "ferry_task_queue_depth" in body and "ferry_websocket_clients" in body


@override_settings(FERRY_METRICS_TOKEN="s3cret-token", FERRY_METRICS_ALLOW=[])
def test_it_refuses_other_addresses_without_the_token(client):
    assert client.get("/metrics", REMOTE_ADDR="127.0.0.1").status_code == 403
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 403
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer s3cret-token").status_code == 200
