"""Hostile input on every API write and every form: malformed JSON, oversized bodies, wrong
types and shapes, unknown fields. The answer is a clear 4xx (or, for forms, a redirect with a
message), never a 500, and a refused request writes nothing: no audit event, no row.

Also hostile libvirt XML arriving through a sync (the test driver's node file), and the
login lockout holding per account whatever X-Forwarded-For says.
"""

import json

import pytest
from django.test import Client
from knox.models import AuthToken
from rest_framework.test import APIClient

from dashboard.audit.models import AuditEvent
from inventory.models import Host, VirtualMachine
from migrations_app.models import MigrationPlan, PlanItem
from migrations_app.models.notifications import NotificationSubscription
from migrations_app.models.sharing import ShareLink
from tests.security.test_access_matrix import PAGES, fill, page_url, schema_operations
from tests.security.test_access_matrix import world as world  # noqa: F401 - fixture

pytestmark = pytest.mark.django_db

WATCHED = [AuditEvent, MigrationPlan, PlanItem, Host, VirtualMachine, ShareLink,
           NotificationSubscription, AuthToken]  # fmt: skip

JUNK = [
    "x" * 10_000,
    -(2**63),
    2**64,
    1e308,
    None,
    True,
    [],
    {"$ne": None},
    "'; DROP TABLE migrations_app_migrationplan; --",
    "<script>alert(1)</script>",
    "\u0000\ud7ff\ufffe",
    "../../../../etc/passwd",
]


def counts() -> dict[str, int]:
    return {model.__name__: model.objects.count() for model in WATCHED}


def write_operations(client) -> list[tuple[str, str]]:
    return [(m, p) for m, p in schema_operations(client) if m in ("POST", "PATCH", "PUT")]


def raw(client, method, url, body: bytes, content_type="application/json"):
    return client.generic(method, url, body, content_type=content_type)


def hostile_bodies():
    """(label, body bytes, content type) that no write may accept."""
    yield "not json", b'{"name": "x",', "application/json"
    yield "json array", b"[1, 2, 3]", "application/json"
    yield "json scalar", b'"plan"', "application/json"
    yield "json null", b"null", "application/json"
    yield "bad utf-8", b'{"name": "\xff\xfe"}', "application/json"
    yield "deep nesting", b"[" * 100_000 + b"]" * 100_000, "application/json"
    yield "oversized", b'{"name": "' + b"x" * (3 * 1024 * 1024) + b'"}', "application/json"
    yield "xml", b"<plan><name>x</name></plan>", "application/xml"
    yield "form junk", b"name=%00%ff&items=1&items=2", "application/x-www-form-urlencoded"
    for index, value in enumerate(JUNK):
        body = {
            "name": value,
            "uri": value,
            "reason": value,
            "comment": value,
            "vm": value,
            "vms": value,
            "destination_host": value,
            "destination": value,
            "policy": value,
            "kind": value,
            "target": value,
            "plan": value,
            "events": value,
            "expires_at": value,
            "override_reason": value,
            "group": value,
            "state": value,
            "window_start": value,
            "window_end": value,
        }
        yield f"wrong types #{index}", json.dumps(body).encode(), "application/json"


def test_it_refuses_hostile_bodies_on_every_api_write_and_writes_nothing(world, capsys):
    admin = APIClient()
    admin.force_authenticate(world["users"]["admin"])
    operations = write_operations(admin)
    failures, sent = [], 0
    for method, template in operations:
        url = fill(template, world)
        for label, body, content_type in hostile_bodies():
            before = counts()
            response = raw(admin, method, url, body, content_type)
            sent += 1
            code = response.status_code
            where = f"{method} {template} [{label}] -> {code}"
            if code >= 500:
                failures.append(f"{where}: server error")
                continue
            if code < 400:
                # Some writes take no body at all (pause, sync, token): those may succeed,
                # but nothing they wrote may carry the hostile values.
                continue
            if counts() != before:
                failures.append(f"{where}: refused but wrote {before} -> {counts()}")
            if response.get("Content-Type", "").startswith("application/json"):
                detail = response.json()
                if not detail:
                    failures.append(f"{where}: refusal without an explanation")
    with capsys.disabled():
        print(f"\nhostile input: {sent} hostile bodies on {len(operations)} API writes")
    assert not failures, "\n".join(failures)


def test_it_ignores_or_refuses_unknown_fields_without_writing_them(world):
    """Unknown fields are ignored by the serializers (DRF's contract), never stored."""
    admin = APIClient()
    admin.force_authenticate(world["users"]["admin"])
    marker = "unknown-field-marker-7f3a"
    for method, template in write_operations(admin):
        url = fill(template, world)
        response = admin.generic(
            method,
            url,
            json.dumps({marker: marker, "id": 999999, "author": 1, "status": "approved"}),
            content_type="application/json",
        )
        assert response.status_code < 500, (method, template, response.status_code)
    assert not AuditEvent.objects.filter(after__icontains=marker).exists()
    assert not MigrationPlan.objects.filter(status="approved").exists()


def test_it_answers_hostile_forms_with_4xx_or_a_message_and_no_500(world, capsys):
    client = Client(raise_request_exception=False)
    client.force_login(world["users"]["admin"])
    posts = [(n, m) for n, (m, _) in PAGES.items() if m == "POST"]
    fields = [
        "change_ticket", "description", "destination", "host", "hours", "label", "mode",
        "name", "next", "replace", "show_host_names", "window_end", "window_start", "vms",
        "comment", "content_hash", "override_reason", "reason", "policy_require_tls_off",
    ]  # fmt: skip
    sent, failures = 0, []
    from tests.security.test_access_matrix import page_patterns

    kwargs_of = dict(page_patterns())
    for name, _ in posts:
        url = page_url(name, kwargs_of[name], world)
        for value in JUNK:
            text = json.dumps(value) if not isinstance(value, str) else value
            data = dict.fromkeys(fields, text)
            data["vms"] = [text, "-1", "999999999999999999999"]
            data["next"] = "https://evil.example/steal"
            response = client.post(url, data)
            sent += 1
            code = response.status_code
            if code >= 500:
                failures.append(f"{name} {text[:30]!r} -> {code}")
            location = response.get("Location", "")
            if "evil.example" in location:
                failures.append(f"{name}: open redirect to {location}")
    with capsys.disabled():
        print(f"\nhostile input: {sent} hostile forms on {len(posts)} form endpoints")
    assert not failures, "\n".join(failures)


BILLION_LAUGHS_NODE = """<?xml version="1.0"?>
<!DOCTYPE node [
<!ENTITY a "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa">
<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">
<!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;">
<!ENTITY d "&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;">
<!ENTITY e "&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;">
]>
<node>
  <cpu><mhz>2000</mhz><model>&e;</model></cpu>
  <domain type="test"><name>&e;</name><memory>1024</memory></domain>
</node>
"""

XXE_NODE = """<?xml version="1.0"?>
<!DOCTYPE node [<!ENTITY secret SYSTEM "file://{path}">]>
<node>
  <cpu><mhz>2000</mhz><model>m</model></cpu>
  <domain type="test"><name>&secret;</name><memory>1024</memory><vcpu>1</vcpu>
  <os><type>hvm</type></os></domain>
</node>
"""


@pytest.mark.parametrize("kind", ["billion laughs", "xxe"])
def test_it_syncs_a_host_with_hostile_xml_without_harm(kind, tmp_path, make_user):
    from inventory.services import host_add
    from inventory.sync import host_sync

    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET-CONTENT-1b2c")
    node = tmp_path / "node.xml"
    node.write_text(
        BILLION_LAUGHS_NODE if kind == "billion laughs" else XXE_NODE.format(path=secret)
    )
    admin = make_user("adm", "admin")
    host = host_add(name="hostile", uri=f"test://{node}", actor=admin)
    result = host_sync(host=host, actor=admin)
    host.refresh_from_db()
    if not result.ok:
        assert host.last_sync_error, "a refused sync is recorded on the host"
        assert AuditEvent.objects.filter(action="host.sync_failed").exists()
    for vm_name in VirtualMachine.objects.values_list("name", flat=True):
        assert "TOP-SECRET" not in vm_name and len(vm_name) < 10_000
    for event in AuditEvent.objects.all():
        text = json.dumps([event.before, event.after, event.object_repr], default=str)
        assert "TOP-SECRET" not in text and len(text) < 100_000
    assert "TOP-SECRET" not in (host.cpu_model or "") + (host.last_sync_error or "")


def test_it_locks_an_account_whatever_x_forwarded_for_says(make_user, settings):
    settings.FERRY_LOGIN_MAX_FAILURES = 3
    make_user("target", "viewer")
    client = Client()
    for attempt in range(6):
        client.post(
            "/login/",
            {"username": "target", "password": "wrong"},
            HTTP_X_FORWARDED_FOR=f"10.0.{attempt}.{attempt + 1}",
            HTTP_X_REAL_IP=f"192.0.2.{attempt}",
            REMOTE_ADDR=f"127.0.0.{attempt + 1}",
        )
    # the right password from yet another address is still refused while locked
    response = client.post(
        "/login/",
        {"username": "target", "password": "pw-target"},
        HTTP_X_FORWARDED_FOR="203.0.113.9",
        REMOTE_ADDR="127.0.0.99",
    )
    assert response.status_code == 200 and "locked" in response.content.decode()
    assert "_auth_user_id" not in client.session
    # and case or whitespace variants of the name share the lock
    response = Client().post("/login/", {"username": " TARGET ", "password": "pw-target"})
    assert "_auth_user_id" not in response.wsgi_request.session
    # the API token path is locked too
    assert AuditEvent.objects.filter(action="auth.login_locked").count() == 1
