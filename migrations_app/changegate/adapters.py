"""Talking to a change-management system: ServiceNow's Table API, or Ferry's generic HTTP
contract (docs/change-gate.md). Both answer `lookup(ticket)` with a ChangeRecord (or None
when the ticket does not exist) and take `write_back(record, event, note)`.

Every call goes through the webhook outbound rules (notifications.webhook_guard: allowed
addresses only, the checked address is the one connected to, no redirects). A failure
raises GateUnavailable with a classified text anyone may read and the raw one for admins.
"""

import base64
import datetime as dt
import http.client
import json
from dataclasses import dataclass
from urllib.parse import quote, urlencode

from django.conf import settings
from django.utils.dateparse import parse_datetime

from migrations_app.notifications.webhook_guard import classify_network_error, outbound_request

# ServiceNow change_request.state values (the default state model).
SN_STATE_IMPLEMENT = "-1"
SN_STATE_REVIEW = "0"
SN_CLOSED_STATES = {"3": "closed", "4": "canceled"}
# What Ferry sets when it writes back; completed and failed both go to Review, where the
# change manager closes the record with the outcome Ferry noted.
SN_STATE_AFTER = {
    "started": SN_STATE_IMPLEMENT,
    "completed": SN_STATE_REVIEW,
    "failed": SN_STATE_REVIEW,
    "cancelled": SN_STATE_REVIEW,
}


class GateUnavailable(Exception):
    """The change-management system could not answer."""

    def __init__(self, public: str, detail: str):
        super().__init__(public)
        self.public = public
        self.detail = detail


@dataclass(frozen=True)
class ChangeRecord:
    """What Ferry needs to know of one change ticket."""

    ticket: str
    record_id: str
    approved: bool
    approval: str
    state: str
    closed: bool
    window_start: dt.datetime | None
    window_end: dt.datetime | None
    url: str


def _auth_headers() -> dict:
    headers = {"Accept": "application/json", "User-Agent": "Ferry-ChangeGate/1"}
    if settings.FERRY_CHANGE_GATE_TOKEN:
        headers["Authorization"] = f"Bearer {settings.FERRY_CHANGE_GATE_TOKEN}"
    elif settings.FERRY_CHANGE_GATE_USER:
        pair = f"{settings.FERRY_CHANGE_GATE_USER}:{settings.FERRY_CHANGE_GATE_PASSWORD}"
        headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode("ascii")
    return headers


def _call(method: str, url: str, payload: dict | None = None) -> tuple[int, object]:
    headers = _auth_headers()
    body = None
    if payload is not None:
        body = json.dumps(payload).encode("utf-8")
        headers["Content-Type"] = "application/json"
    try:
        status, reason, raw = outbound_request(
            method, url, body, headers, settings.FERRY_CHANGE_GATE_TIMEOUT, max_bytes=1 << 20
        )
    except (OSError, ValueError, http.client.HTTPException) as exc:
        raise GateUnavailable(
            classify_network_error(exc), f"{type(exc).__name__}: {exc}"[:1000]
        ) from exc
    if status == 404 and method == "GET":
        return status, None
    if not 200 <= status < 300:
        raise GateUnavailable(f"HTTP {status}", f"HTTP {status} {reason}: {raw[:500]!r}")
    try:
        return status, json.loads(raw or b"null")
    except ValueError as exc:
        raise GateUnavailable("the answer was not JSON", f"{raw[:500]!r}") from exc


def _utc(value) -> dt.datetime | None:
    """ServiceNow's 'YYYY-MM-DD HH:MM:SS' (UTC in the Table API's raw values) or ISO 8601."""
    if not value:
        return None
    parsed = parse_datetime(str(value).replace(" ", "T", 1))
    if parsed is None:
        raise GateUnavailable("the change window is not a date", f"unparsable date {value!r}")
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


class ServiceNowAdapter:
    """The Table API on `change_request` (GET by number, PATCH work_notes and state)."""

    FIELDS = "sys_id,number,approval,state,start_date,end_date"

    def __init__(self, base: str):
        self.base = base.rstrip("/")

    def record_url(self, sys_id: str) -> str:
        return f"{self.base}/change_request.do?sys_id={quote(sys_id)}"

    def lookup(self, ticket: str) -> ChangeRecord | None:
        query = urlencode(
            {
                "sysparm_query": f"number={ticket}",
                "sysparm_fields": self.FIELDS,
                "sysparm_limit": "1",
                "sysparm_display_value": "false",
            }
        )
        _, data = _call("GET", f"{self.base}/api/now/table/change_request?{query}")
        rows = (data or {}).get("result") if isinstance(data, dict) else None
        if not rows:
            return None
        row = rows[0]
        state = str(row.get("state", ""))
        return ChangeRecord(
            ticket=str(row.get("number") or ticket),
            record_id=str(row.get("sys_id", "")),
            approved=row.get("approval") == "approved",
            approval=str(row.get("approval", "")),
            state=state,
            closed=state in SN_CLOSED_STATES,
            window_start=_utc(row.get("start_date")),
            window_end=_utc(row.get("end_date")),
            url=self.record_url(str(row.get("sys_id", ""))),
        )

    def write_back(self, record: ChangeRecord, event: str, note: str) -> None:
        url = f"{self.base}/api/now/table/change_request/{quote(record.record_id)}"
        _call("PATCH", url, {"work_notes": note, "state": SN_STATE_AFTER[event]})


class HttpContractAdapter:
    """Ferry's generic contract: GET {base}/changes/{ticket}, POST {base}/changes/{ticket}/events."""

    def __init__(self, base: str):
        self.base = base.rstrip("/")

    def lookup(self, ticket: str) -> ChangeRecord | None:
        _, data = _call("GET", f"{self.base}/changes/{quote(ticket, safe='')}")
        if not isinstance(data, dict):
            return None
        return ChangeRecord(
            ticket=str(data.get("id") or ticket),
            record_id=str(data.get("id") or ticket),
            approved=data.get("approved") is True,
            approval="approved" if data.get("approved") is True else "not approved",
            state=str(data.get("state", "")),
            closed=bool(data.get("closed")),
            window_start=_utc(data.get("window_start")),
            window_end=_utc(data.get("window_end")),
            url=str(data.get("url") or ""),
        )

    def write_back(self, record: ChangeRecord, event: str, note: str) -> None:
        url = f"{self.base}/changes/{quote(record.record_id, safe='')}/events"
        _call("POST", url, {"event": event, "note": note})


def change_adapter():
    """The configured adapter, or None when the gate is off."""
    kind = settings.FERRY_CHANGE_GATE
    if kind == "servicenow":
        return ServiceNowAdapter(settings.FERRY_CHANGE_GATE_URL)
    if kind == "http":
        return HttpContractAdapter(settings.FERRY_CHANGE_GATE_URL)
    return None
