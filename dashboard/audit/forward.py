"""Audit forwarding: every audit event also leaves as an RFC 5424 syslog message.

Durable and in order, without loss across a receiver restart:

- `outbox_add` runs inside `audit_record`'s transaction: the event and its outbox row
  (the finished syslog message) commit or roll back together, so a crash can neither
  forward an event that did not happen nor forget one that did;
- one forwarder per deployment drains the outbox from the lowest sequence (a session
  advisory lock on PostgreSQL, a file lock beside an SQLite database); it runs as a thread
  of every worker (`manage.py ferry_worker`, and the embedded workers of `manage.py
  serve`), and the others wait as stand-bys;
- a row is deleted only after the receiver's TCP stack acknowledged every byte of it and
  the connection still stands; on any failure the connection is dropped and the same rows
  are sent again, from the first unsent one, after a short back-off.

Framing is octet counting (RFC 6587 section 3.4.1, "LEN SP MSG") on TCP and TLS; UDP sends
one message per datagram (RFC 5426) and cannot know whether it arrived (a local relay only).

What plain syslog cannot give: an application-level acknowledgement. A receiver killed
with bytes in its socket buffer that it had not yet read loses them although its kernel
acknowledged them; RELP would close that gap (docs/deployment.md).
"""

import contextlib
import datetime as dt
import fcntl
import json
import logging
import select
import socket
import ssl
import struct
import termios
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

from django.conf import settings
from django.contrib.auth.models import Group
from django.core.serializers.json import DjangoJSONEncoder
from django.db import close_old_connections, connection, connections, transaction
from django.db.models import F
from django.utils import timezone

from dashboard.audit.models import AuditOutbox
from dashboard.permissions import ROLES

logger = logging.getLogger("ferry.audit.forward")

# Facility 13 (log audit), severity 5 (notice): PRI = 13 * 8 + 5.
PRI = 109
# The structured-data id: IANA's documentation enterprise number until Ferry has its own.
SD_ID = "ferry@32473"
# rsyslog's default maximum message size is 8 KiB: longer before/after are left out.
MAX_MESSAGE_BYTES = 8000
NOTIFY_CHANNEL = "ferry_audit_outbox"
_LOCK_KEY = 7_270_302
BATCH = 200
ACK_TIMEOUT_S = 5.0
BACKOFF_S = (0.1, 0.2, 0.5, 1.0)

_wake = threading.Event()
# This process's forwarder figures (tests and bench read them; /metrics counts the outbox).
stats = {"connects": 0, "sent": 0, "failures": 0, "last_latency_s": None, "max_latency_s": 0.0}


def forwarding_enabled() -> bool:
    return bool(getattr(settings, "FERRY_AUDIT_SYSLOG_URL", ""))


def _sd_escape(value) -> str:
    text = "" if value is None else str(value)
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("]", "\\]")


def _roles_of(event) -> str:
    if event.actor_user_id is None:
        return event.actor_type
    from django.contrib.auth import get_user_model

    user = get_user_model().objects.filter(pk=event.actor_user_id).first()
    if user is None:
        return ""
    if user.is_superuser:
        return "superuser"
    names = Group.objects.filter(user__pk=user.pk, name__in=ROLES).values_list("name", flat=True)
    return ",".join(sorted(names))


def _scope_of(event) -> str:
    # Scoped roles record the scope an action used (on the event, or in its after-state).
    scope = getattr(event, "scope", None)
    if scope is None and isinstance(event.after, dict):
        scope = event.after.get("scope")
    if isinstance(scope, list | tuple):
        return ",".join(str(part) for part in scope)
    return "" if scope is None else str(scope)


def _printable(text: str, limit: int) -> str:
    cleaned = "".join(ch for ch in text if 33 <= ord(ch) <= 126)[:limit]
    return cleaned or "-"


def syslog_message(event, *, role: str | None = None, scope: str | None = None) -> str:
    """The RFC 5424 message of one audit event (without the octet-count frame)."""
    hostname = settings.FERRY_AUDIT_SYSLOG_HOSTNAME or socket.gethostname()
    stamp = event.created_at.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    params = {
        "seq": event.sequence,
        "actor": event.actor_name,
        "actorType": event.actor_type,
        "role": _roles_of(event) if role is None else role,
        "scope": _scope_of(event) if scope is None else scope,
        "action": event.action,
        "object": f"{event.object_type}:{event.object_id}",
        "objectRepr": event.object_repr,
        "hash": event.hash,
        "prevHash": event.prev_hash,
        "requestId": event.request_id,
        "source": event.source_address,
    }
    sd = "[" + SD_ID + "".join(f' {k}="{_sd_escape(v)}"' for k, v in params.items()) + "]"
    header = f"<{PRI}>1 {stamp} {_printable(hostname, 255)} ferry - {_printable(event.action, 32)}"
    body = {"reason": event.reason, "before": event.before, "after": event.after}
    msg = json.dumps(body, cls=DjangoJSONEncoder, sort_keys=True, ensure_ascii=False)
    line = f"{header} {sd} {msg}"
    if len(line.encode("utf-8")) > MAX_MESSAGE_BYTES:
        msg = json.dumps({"reason": event.reason[:1000], "truncated": True}, ensure_ascii=False)
        line = f"{header} {sd} {msg}"
    return line


def outbox_add(event) -> None:
    """Queue `event` for forwarding, in the caller's (the audit record's) transaction."""
    AuditOutbox.objects.create(
        sequence=event.sequence, message=syslog_message(event), created_at=event.created_at
    )
    if connection.vendor == "postgresql":
        # Delivered at commit: a forwarder in another process wakes at once.
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_notify(%s, '')", [NOTIFY_CHANNEL])
    transaction.on_commit(_wake.set)


def outbox_add_many(events) -> None:
    """`outbox_add` for a bulk append (one insert)."""
    AuditOutbox.objects.bulk_create(
        AuditOutbox(sequence=e.sequence, message=syslog_message(e), created_at=e.created_at)
        for e in events
    )
    transaction.on_commit(_wake.set)


def frame(message: str) -> bytes:
    """Octet-counting framing (RFC 6587 3.4.1): the byte length, a space, the message."""
    data = message.encode("utf-8")
    return str(len(data)).encode("ascii") + b" " + data


# ---------------------------------------------------------------------------------------
# transport


class SyslogTransport:
    """One connection to the receiver named by FERRY_AUDIT_SYSLOG_URL."""

    def __init__(self, url: str, *, timeout: float = ACK_TIMEOUT_S):
        parts = urlsplit(url)
        if parts.scheme not in ("tls", "tcp", "udp") or not parts.hostname:
            raise ValueError("FERRY_AUDIT_SYSLOG_URL must be tls://, tcp:// or udp://host:port")
        self.scheme = parts.scheme
        self.host = parts.hostname
        self.port = parts.port or (6514 if parts.scheme == "tls" else 514)
        self.timeout = timeout
        self.sock = None

    def _context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=settings.FERRY_AUDIT_SYSLOG_CA_FILE or None)
        if settings.FERRY_AUDIT_SYSLOG_CERT_FILE:
            context.load_cert_chain(
                settings.FERRY_AUDIT_SYSLOG_CERT_FILE, settings.FERRY_AUDIT_SYSLOG_KEY_FILE or None
            )
        return context

    def connect(self) -> None:
        stats["connects"] += 1
        if self.scheme == "udp":
            self.sock = socket.socket(
                socket.AF_INET6 if ":" in self.host else socket.AF_INET, socket.SOCK_DGRAM
            )
            self.sock.connect((self.host, self.port))
            return
        raw = socket.create_connection((self.host, self.port), timeout=self.timeout)
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.scheme == "tls":
            raw = self._context().wrap_socket(raw, server_hostname=self.host)
        self.sock = raw

    def _peer_closed(self) -> bool:
        """Whether the receiver closed or reset the connection (without blocking)."""
        readable, _, errored = select.select([self.sock], [], [self.sock], 0)
        if errored:
            return True
        if not readable:
            return False
        # A syslog receiver sends no data; what is readable is a close, a reset, or (TLS
        # 1.3) a session ticket, which reading consumes without returning data.
        self.sock.setblocking(False)
        try:
            if isinstance(self.sock, ssl.SSLSocket):
                return self.sock.recv(1) == b""
            return self.sock.recv(1, socket.MSG_PEEK) == b""
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError, BlockingIOError):
            return False
        except OSError:
            return True
        finally:
            self.sock.settimeout(self.timeout)

    def _unacked_bytes(self) -> int:
        buf = fcntl.ioctl(self.sock.fileno(), termios.TIOCOUTQ, struct.pack("i", 0))
        return struct.unpack("i", buf)[0]

    def send(self, messages: list[str]) -> None:
        """Send in order; return only once the receiver's kernel acknowledged every byte
        (TCP/TLS) and the connection still stands. Raises OSError otherwise."""
        if self.sock is None:
            self.connect()
        elif self.scheme != "udp" and self._peer_closed():
            self.close()
            self.connect()
        if self.scheme == "udp":
            for message in messages:
                self.sock.send(message.encode("utf-8"))
            return
        self.sock.sendall(b"".join(frame(m) for m in messages))
        deadline = time.monotonic() + self.timeout
        while self._unacked_bytes() > 0:
            if self._peer_closed():
                raise ConnectionResetError("the receiver closed the connection")
            if time.monotonic() > deadline:
                raise TimeoutError("the receiver did not acknowledge in time")
            time.sleep(0.001)
        if self._peer_closed():
            raise ConnectionResetError("the receiver closed the connection")

    def close(self) -> None:
        if self.sock is not None:
            with contextlib.suppress(OSError):
                self.sock.close()
            self.sock = None


# ---------------------------------------------------------------------------------------
# the drain loop


def outbox_drain(transport: SyslogTransport, *, batch: int = BATCH) -> int:
    """Send the oldest waiting events in order and delete what the receiver has; returns
    how many were sent. Raises OSError (nothing deleted) when the receiver failed."""
    rows = list(
        AuditOutbox.objects.order_by("sequence").values_list("sequence", "message", "created_at")[
            :batch
        ]
    )
    if not rows:
        return 0
    try:
        transport.send([message for _, message, _ in rows])
    except (OSError, ssl.SSLError) as exc:
        transport.close()
        stats["failures"] += 1
        AuditOutbox.objects.filter(sequence=rows[0][0]).update(
            attempts=F("attempts") + 1, last_error=f"{type(exc).__name__}: {exc}"[:300]
        )
        raise
    AuditOutbox.objects.filter(sequence__in=[seq for seq, _, _ in rows]).delete()
    latency = (timezone.now() - rows[0][2]).total_seconds()
    stats["sent"] += len(rows)
    stats["last_latency_s"] = latency
    stats["max_latency_s"] = max(stats["max_latency_s"], latency)
    return len(rows)


class _Leadership:
    """Only one forwarder sends at a time (order across processes)."""

    def __init__(self):
        self._pg = None
        self._file = None

    def acquire(self) -> bool:
        if connection.vendor == "postgresql":
            if self._pg is None:
                import psycopg

                params = connection.get_connection_params()
                params.pop("cursor_factory", None)
                params.pop("context", None)
                self._pg = psycopg.connect(**params, autocommit=True)
            row = self._pg.execute("SELECT pg_try_advisory_lock(%s)", [_LOCK_KEY]).fetchone()
            if row[0]:
                self._pg.execute(f"LISTEN {NOTIFY_CHANNEL}")
            return bool(row[0])
        name = str(connection.settings_dict.get("NAME") or "")
        if not name or name == ":memory:" or name.startswith("file:") or "mode=memory" in name:
            return True  # an in-memory database has one process
        self._file = open(Path(name).with_name(Path(name).name + ".forward-lock"), "a")  # noqa: SIM115
        try:
            fcntl.flock(self._file, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except OSError:
            self._file.close()
            self._file = None
            return False

    def wait(self, timeout: float) -> None:
        if _wake.wait(0):
            _wake.clear()
            return
        if self._pg is not None:
            # A broken lock connection raises here: the lock is gone, so this forwarder
            # steps down (AuditForwarder.run) instead of sending beside a new leader.
            for _ in self._pg.notifies(timeout=timeout, stop_after=1):
                break
            _wake.clear()
            return
        _wake.wait(timeout)
        _wake.clear()

    def release(self) -> None:
        for handle in (self._pg, self._file):
            if handle is not None:
                with contextlib.suppress(Exception):
                    handle.close()
        self._pg = self._file = None


class AuditForwarder:
    """The forwarding thread: stand by until leader, then drain on every wake-up."""

    def __init__(self):
        self._stop = threading.Event()
        self._thread = None

    def start(self) -> "AuditForwarder":
        self._thread = threading.Thread(target=self.run, name="ferry-audit-forward", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        _wake.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def run(self) -> None:
        poll = float(settings.FERRY_AUDIT_SYSLOG_POLL_SECONDS)
        leader = _Leadership()
        transport = SyslogTransport(settings.FERRY_AUDIT_SYSLOG_URL)
        failures = 0
        try:
            while not self._stop.is_set():
                close_old_connections()
                try:
                    if not leader.acquire():
                        leader.release()
                        self._stop.wait(poll * 5)
                        continue
                    while not self._stop.is_set():
                        try:
                            sent = outbox_drain(transport)
                            failures = 0
                        except (OSError, ssl.SSLError) as exc:
                            delay = BACKOFF_S[min(failures, len(BACKOFF_S) - 1)]
                            failures += 1
                            logger.warning("audit forwarding failed (%s); retrying", exc)
                            self._stop.wait(delay)
                            continue
                        if sent < BATCH:
                            leader.wait(poll)
                            close_old_connections()
                except Exception:  # the database went away: start over as a stand-by
                    logger.exception("audit forwarder error; restarting")
                    leader.release()
                    self._stop.wait(1.0)
        finally:
            transport.close()
            leader.release()
            connections.close_all()  # this thread's own connections


_started: AuditForwarder | None = None
_start_lock = threading.Lock()


def audit_forwarder_start() -> AuditForwarder | None:
    """Start this process's forwarder thread once, when forwarding is configured."""
    global _started
    if not forwarding_enabled():
        return None
    with _start_lock:
        if _started is None:
            _started = AuditForwarder().start()
            logger.info("audit forwarding to %s", settings.FERRY_AUDIT_SYSLOG_URL)
        return _started
