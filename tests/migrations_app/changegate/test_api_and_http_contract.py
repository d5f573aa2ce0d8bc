"""The gate through the REST API (409 with the reason, nothing started) and the generic
HTTP contract of docs/change-gate.md against a small server implementing it."""

import json
import threading
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from dashboard.audit.models import AuditEvent
from migrations_app.changegate.services import ChangeGateRefused, change_gate_write_back
from migrations_app.models import MigrationPlan
from migrations_app.workflow.services import plan_approve, plan_start, plan_submit
from tests.factories import plan_make, plan_validate_stub

pytestmark = pytest.mark.django_db


class ContractServer:
    """GET /changes/<id> and POST /changes/<id>/events, as docs/change-gate.md says."""

    def __init__(self, token):
        self.changes: dict[str, dict] = {}
        self.events: list[tuple[str, dict]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _answer(self, code, payload=None):
                body = json.dumps(payload or {}).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                if self.headers.get("Authorization") != f"Bearer {token}":
                    return self._answer(401)
                change = server.changes.get(self.path.removeprefix("/changes/"))
                self._answer(200, change) if change else self._answer(404)

            def do_POST(self):
                ticket = self.path.removeprefix("/changes/").removesuffix("/events")
                length = int(self.headers.get("Content-Length") or 0)
                server.events.append((ticket, json.loads(self.rfile.read(length))))
                self._answer(204)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def contract(settings):
    server = ContractServer("t0ken")
    settings.FERRY_CHANGE_GATE = "http"
    settings.FERRY_CHANGE_GATE_URL = server.url
    settings.FERRY_CHANGE_GATE_TOKEN = "t0ken"
    settings.FERRY_WEBHOOK_ALLOW_HOSTS = ["127.0.0.1"]
    yield server
    server.stop()


def _approved(people, ticket):
    plan = plan_make(people["planner"])
    MigrationPlan.objects.filter(pk=plan.pk).update(change_ticket=ticket)
    plan.refresh_from_db()
    plan_validate_stub(plan)
    plan_submit(plan=plan, actor=people["planner"])
    plan_approve(plan=plan, actor=people["approver"], comment="ok")
    return plan


def test_it_answers_409_with_the_reason_over_the_api(contract, people):
    contract.changes["CHG-7"] = {"id": "CHG-7", "approved": False}
    plan = _approved(people, "CHG-7")
    client = APIClient()
    client.force_authenticate(people["operator"])
    response = client.post(f"/api/v1/plans/{plan.pk}/start/", {}, format="json")
    assert response.status_code == 409
    assert "CHG-7 is not approved" in response.json()["detail"]
    plan.refresh_from_db()
    assert plan.status == "approved"
    assert AuditEvent.objects.filter(action="plan.change_gate.refuse", object_id=str(plan.pk))


def test_it_starts_and_posts_events_with_the_generic_contract(contract, people, settings):
    now = timezone.now()
    contract.changes["CHG-8"] = {
        "id": "CHG-8",
        "approved": True,
        "window_start": (now - timedelta(minutes=1)).isoformat(),
        "window_end": (now + timedelta(hours=1)).isoformat(),
        "url": "https://changes.example/CHG-8",
    }
    plan = _approved(people, "CHG-8")
    plan_start(plan=plan, actor=people["operator"])
    assert plan.status == "running"
    allow = AuditEvent.objects.get(action="plan.change_gate.allow", object_id=str(plan.pk))
    assert allow.after["record_url"] == "https://changes.example/CHG-8"
    assert change_gate_write_back(plan.pk, "started")["status"] == "written"
    assert contract.events[-1][0] == "CHG-8" and contract.events[-1][1]["event"] == "started"
    assert f"/plans/{plan.pk}/change-record/" in contract.events[-1][1]["note"]


def test_it_refuses_a_gate_target_outside_the_outbound_rules(contract, people, settings):
    settings.FERRY_WEBHOOK_ALLOW_HOSTS = []  # 127.0.0.1 is not a public address
    plan = _approved(people, "CHG-9")
    with pytest.raises(ChangeGateRefused, match="could not be asked \\(refused"):
        plan_start(plan=plan, actor=people["operator"])
