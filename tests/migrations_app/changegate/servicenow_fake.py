"""A small HTTP server with the parts of ServiceNow's Table API that Ferry uses.

ServiceNow cannot run on this machine, so this is the one place Ferry's tests talk to a
stand-in. It keeps to what ServiceNow documents for the REST Table API (docs.servicenow.com,
"Table API"), and does nothing else:

- Basic authentication; a wrong or missing one answers 401 with
  `{"error": {"message": "User Not Authenticated", ...}, "status": "failure"}`;
- `GET /api/now/table/change_request` with `sysparm_query=number=<n>` (an encoded query
  of one equality term), `sysparm_fields` (only the listed fields come back),
  `sysparm_limit`, and `sysparm_display_value=false` (raw values: dates as
  "YYYY-MM-DD HH:MM:SS" in UTC, `state` as its number, `approval` as its choice value);
  no match is `200 {"result": []}`;
- `PATCH /api/now/table/change_request/<sys_id>` with a JSON body: fields are updated,
  `work_notes` is a journal field, so a write appends an entry (and reads return ""); the
  answer is `200 {"result": {...}}`, or 404 "No Record found" for an unknown sys_id.
"""

import base64
import json
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

TABLE = "/api/now/table/change_request"


class FakeServiceNow:
    def __init__(self, user: str, password: str):
        self.records: dict[str, dict] = {}
        self.journal: dict[str, list[str]] = {}
        self.requests: list[tuple[str, str]] = []
        self.auth = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def add(self, number, *, approval="approved", state="-2", start="", end=""):
        sys_id = uuid.uuid4().hex
        self.records[sys_id] = {
            "sys_id": sys_id,
            "number": number,
            "approval": approval,
            "state": state,
            "start_date": start,
            "end_date": end,
            "work_notes": "",
        }
        self.journal[sys_id] = []
        return sys_id

    def by_number(self, number):
        return next(r for r in self.records.values() if r["number"] == number)

    def start(self):
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self):
        self.server.shutdown()
        self.server.server_close()

    def _handler(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _send(self, code, payload):
                body = json.dumps(payload).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json;charset=UTF-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _authorized(self):
                fake.requests.append((self.command, self.path))
                if self.headers.get("Authorization") == fake.auth:
                    return True
                self._send(
                    401,
                    {
                        "error": {
                            "message": "User Not Authenticated",
                            "detail": "Required to provide Auth information",
                        },
                        "status": "failure",
                    },
                )
                return False

            def do_GET(self):
                if not self._authorized():
                    return
                parts = urlsplit(self.path)
                if parts.path != TABLE:
                    return self._send(
                        400, {"error": {"message": "Invalid table"}, "status": "failure"}
                    )
                query = parse_qs(parts.query)
                term = query.get("sysparm_query", [""])[0]
                field, _, value = term.partition("=")
                rows = [r for r in fake.records.values() if field and r.get(field) == value]
                rows = rows[: int(query.get("sysparm_limit", ["10000"])[0])]
                fields = query.get("sysparm_fields", [""])[0]
                if fields:
                    wanted = fields.split(",")
                    rows = [{k: r.get(k, "") for k in wanted} for r in rows]
                self._send(200, {"result": rows})

            def do_PATCH(self):
                if not self._authorized():
                    return
                parts = urlsplit(self.path)
                sys_id = parts.path.removeprefix(TABLE + "/")
                record = fake.records.get(sys_id)
                if not parts.path.startswith(TABLE + "/") or record is None:
                    return self._send(
                        404,
                        {
                            "error": {
                                "message": "No Record found",
                                "detail": "Record doesn't exist or ACL restricts the record "
                                "retrieval",
                            },
                            "status": "failure",
                        },
                    )
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                for key, value in body.items():
                    if key == "work_notes":
                        fake.journal[sys_id].append(value)
                    elif key in record:
                        record[key] = value
                self._send(200, {"result": record})

        return Handler
