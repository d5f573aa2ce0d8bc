"""Secrets never land in the database, the logs or the audit trail: representative flows run
with every log record captured, then the logs, every audit event and every text column of
every table are scanned for SECRET_KEY and for PEM private-key material.

The flows include a libvirt TLS host whose client key sits in a pkipath directory (the
connection fails: its address is a closed loopback port).
"""

import logging

import pytest
from django.apps import apps
from django.conf import settings
from django.db import models
from django.test import Client
from rest_framework.test import APIClient

from dashboard.audit.models import AuditEvent

pytestmark = pytest.mark.django_db

PEM_MARKERS = ("PRIVATE KEY-----", "BEGIN RSA PRIVATE", "BEGIN EC PRIVATE", "BEGIN OPENSSH")
FAKE_KEY = (
    "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7fake"
    "fakefakefake0123456789\n-----END PRIVATE KEY-----\n"
)


def run_flows(tmp_path, make_user, demo_uri, django_settings):
    from inventory.services import host_add
    from inventory.sync import host_sync

    pki = tmp_path / "pki"
    (pki / "private").mkdir(parents=True)
    (pki / "clientkey.pem").write_text(FAKE_KEY)
    (pki / "private" / "clientkey.pem").write_text(FAKE_KEY)
    admin = make_user("adm", "admin")
    planner = make_user("pl", "planner")
    # a TLS host whose connection fails (nothing listens on loopback port 1)
    django_settings.FERRY_LIBVIRT_PKI_DIR = str(pki)  # the client PKI is a server setting
    tls = host_add(name="tls-host", uri="qemu+tls://127.0.0.1:1/system", actor=admin)
    host_sync(host=tls, actor=admin)
    demo = host_add(name="kvm-a1", uri=demo_uri("kvm-a1"), actor=admin)
    host_sync(host=demo, actor=admin)
    # logins: a failure, a success, a lockout's worth
    web = Client()
    web.post("/login/", {"username": "pl", "password": "wrong"})
    web.post("/login/", {"username": "pl", "password": "pw-pl"})
    api = APIClient()
    api.force_authenticate(planner)
    plan = api.post("/api/v1/plans/", {"name": "secrets"}, format="json")
    assert plan.status_code in (200, 201), plan.content
    pk = plan.json()["id"]
    api.post(f"/api/v1/plans/{pk}/validate/")
    api.post(f"/api/v1/plans/{pk}/share-links/", {}, format="json")
    api.post(
        "/api/v1/notification-subscriptions/",
        {"kind": "webhook", "target": "http://127.0.0.1:1/hook", "plan": pk},
        format="json",
    )
    api.post("/api/v1/auth/token/")
    # a request that fails loudly
    api.generic("POST", "/api/v1/plans/", b"{bad", content_type="application/json")


def text_values():
    """(table.column, value) of every text column of every row."""
    for model in apps.get_models():
        fields = [
            f.attname
            for f in model._meta.concrete_fields
            if isinstance(f, models.CharField | models.TextField | models.JSONField)
        ]
        if not fields:
            continue
        for row in model.objects.values_list(*fields):
            for name, value in zip(fields, row):
                if value:
                    yield f"{model._meta.db_table}.{name}", str(value)


@pytest.fixture
def settings_override(settings):
    return settings


def test_it_keeps_secret_key_and_tls_keys_out_of_db_logs_and_audit(
    tmp_path, make_user, demo_uri, caplog, settings_override
):
    caplog.set_level(logging.DEBUG)
    run_flows(tmp_path, make_user, demo_uri, settings_override)
    secret = settings.SECRET_KEY
    assert len(secret) >= 20
    needles = [secret, *PEM_MARKERS, "fakefakefake0123456789"]
    logs = "\n".join(
        f"{record.getMessage()} {record.exc_text or ''} {record.args!r}"
        for record in caplog.records
    )
    assert caplog.records, "the flows should have logged something"
    found = [n for n in needles if n in logs]
    assert not found, f"secrets in logs: {found}"
    for event in AuditEvent.objects.all():
        text = " ".join(
            str(v)
            for v in (event.before, event.after, event.reason, event.object_repr, event.user_agent)
        )
        leaked = [n for n in needles if n in text]
        assert not leaked, (event.action, leaked)
    columns = 0
    for where, value in text_values():
        columns += 1
        leaked = [n for n in needles if n in value]
        assert not leaked, (where, leaked)
    assert columns > 50
