"""Opening libvirt connections safely: URI validation (inventory.libvirt_uri), a connect
timeout, classified errors, the process's event loop, and a cache of idle connections that
the next session reuses."""

import threading
import time

import libvirt

from dashboard.errors import InputError
from inventory.libvirt_uri import LibvirtUri, connect_uri, transport_of, uri_parse

__all__ = ["LibvirtUri", "transport_of", "uri_parse"]

# libvirt prints every error to stderr by default; Ferry reports errors itself.
libvirt.registerErrorHandler(lambda _ctx, _err: None, None)


class HostUnreachable(Exception):
    """libvirt could not be reached (refused, timed out, authentication failed).

    `reason` is a classified message safe for every role (no URI, no host name, none of
    libvirt's text); `detail` is libvirt's own message, for admins and the server log.
    """

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(reason)
        self.reason = reason
        self.detail = detail


# libvirt's message (lower case) -> the classified reason, most specific first.
_REASONS = (
    (
        ("cannot read ca certificate", "cannot read certificate", "cannot read private key"),
        "client certificates missing on the Ferry server",
    ),
    (
        ("connection refused", "no route to host", "network is unreachable", "timed out"),
        "host unreachable",
    ),
    (("certificate", "x509", "gnutls", "tls ", "tls:", "pkipath"), "certificate refused"),
    (
        ("authentication", "auth failed", "permission denied", "access denied", "polkit"),
        "authentication failed",
    ),
    (
        (
            "name or service not known",
            "unable to resolve",
            "no address associated",
            "temporary failure in name resolution",
            "nodename nor servname",
        ),
        "host name does not resolve",
    ),
    (
        (
            "connection refused",
            "no route to host",
            "network is unreachable",
            "timed out",
            "connection reset",
            "no such file",
            "end of file",
            "cannot recv",
            "broken pipe",
        ),
        "host unreachable",
    ),
)


def classify_connect_error(message: str) -> str:
    """A classified reason for a failed connection, from libvirt's message."""
    lowered = (message or "").lower()
    for needles, reason in _REASONS:
        if any(needle in lowered for needle in needles):
            return reason
    return "libvirt refused the connection"


def open_connection(uri: str, timeout: float) -> libvirt.virConnect:
    """Open a read-write connection, giving up after `timeout` seconds.

    libvirt's own connect can block on an unresponsive peer for minutes, so the open runs
    in a daemon thread; on timeout the thread is abandoned (it ends when the socket does).
    """
    try:
        target = connect_uri(uri)
    except InputError as exc:
        raise HostUnreachable("URI not allowed", str(exc)) from None
    result: dict = {}

    def _open():
        try:
            result["conn"] = libvirt.open(target)
        except libvirt.libvirtError as exc:
            result["error"] = exc

    thread = threading.Thread(target=_open, name="libvirt-open", daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        raise HostUnreachable("no answer in time", f"No answer from {uri} within {timeout:g} s.")
    if "error" in result:
        raw = result["error"].get_error_message() or str(result["error"])
        raise HostUnreachable(classify_connect_error(raw), f"Could not connect to {uri}: {raw}")
    conn = result["conn"]
    if conn is None:
        raise HostUnreachable("host unreachable", f"Could not connect to {uri}.")
    if not uri.startswith("test:"):
        try:
            # Detect a dead peer within ~15 s instead of waiting for TCP to give up.
            conn.setKeepAlive(5, 3)
        except libvirt.libvirtError:
            pass
    return conn


_event_loop_lock = threading.Lock()
_event_loop_started = False


def ensure_event_loop() -> None:
    """Start libvirt's default event loop once per process (before connections open)."""
    global _event_loop_started
    with _event_loop_lock:
        if _event_loop_started:
            return
        libvirt.virEventRegisterDefaultImpl()

        def run():
            while True:
                libvirt.virEventRunDefaultImpl()

        threading.Thread(target=run, name="libvirt-events", daemon=True).start()
        _event_loop_started = True


class ConnectionCache:
    """Idle libvirt connections of this process, per URI, reused by the next session.

    A worker opens two connections per attempt; on real hosts each is a TLS handshake and
    an authentication, a good part of the time before the migrate call. A connection goes
    back here when its session closes and is handed out again only if libvirt still sees
    it alive and it answers one cheap call (a restarted daemon or a dead peer, which the
    keepalive detects, is closed and replaced by a fresh open). Connections idle longer
    than IDLE_SECONDS are closed; at most MAX_IDLE are kept per URI. The test driver is
    never cached (each open of a test URI may be meant to be fresh).
    """

    IDLE_SECONDS = 120.0
    MAX_IDLE = 2

    def __init__(self):
        self._idle: dict[str, list[tuple]] = {}
        self._lock = threading.Lock()

    def _pop(self, uri: str):
        now = time.monotonic()
        stale = []
        found = None
        with self._lock:
            entries = self._idle.get(uri, [])
            while entries:
                conn, since = entries.pop()
                if now - since > self.IDLE_SECONDS:
                    stale.append(conn)
                    continue
                found = conn
                break
        for conn in stale:
            _close_quietly(conn)
        return found

    def take(self, uri: str, timeout: float):
        """A live connection to `uri`: an idle one of this process, else a new one."""
        while True:
            conn = self._pop(uri)
            if conn is None:
                return open_connection(uri, timeout)
            try:
                if conn.isAlive() == 1:
                    conn.getLibVersion()
                    return conn
            except libvirt.libvirtError:
                pass
            _close_quietly(conn)

    def take_many(self, uris: list[str], timeout: float) -> list:
        """`take` for several URIs at once (in threads); a failure is returned, not raised."""
        out: list = [None] * len(uris)

        def one(index: int, uri: str) -> None:
            try:
                out[index] = self.take(uri, timeout)
            except HostUnreachable as exc:
                out[index] = exc

        threads = [
            threading.Thread(target=one, args=(i, u), name=f"libvirt-take {u}", daemon=True)
            for i, u in enumerate(uris[1:], start=1)
        ]
        for thread in threads:
            thread.start()
        one(0, uris[0])
        for thread in threads:
            thread.join()
        return out

    def give_back(self, uri: str, conn) -> None:
        """Keep `conn` for the next session (or close it when it is not worth keeping)."""
        if conn is None:
            return
        if uri.startswith("test:"):
            _close_quietly(conn)
            return
        with self._lock:
            entries = self._idle.setdefault(uri, [])
            if len(entries) < self.MAX_IDLE:
                entries.append((conn, time.monotonic()))
                return
        _close_quietly(conn)

    def clear(self) -> None:
        """Close every idle connection (tests; a worker that stops)."""
        with self._lock:
            idle, self._idle = self._idle, {}
        for entries in idle.values():
            for conn, _since in entries:
                _close_quietly(conn)


def _close_quietly(conn) -> None:
    try:
        conn.close()
    except libvirt.libvirtError:
        pass


CONNECTIONS = ConnectionCache()
