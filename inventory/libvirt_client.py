"""Opening libvirt connections safely: URI validation, a connect timeout, quiet errors."""

import threading
from urllib.parse import urlsplit

import libvirt

# libvirt prints every error to stderr by default; Ferry reports errors itself.
libvirt.registerErrorHandler(lambda _ctx, _err: None, None)

_TRANSPORTS = {
    "qemu": "unix",
    "qemu+unix": "unix",
    "qemu+tls": "tls",
    "qemu+ssh": "ssh",
    "qemu+tcp": "tcp",
    "qemu+libssh2": "ssh",
    "qemu+libssh": "ssh",
    "test": "test",
}


class HostUnreachable(Exception):
    """libvirt could not be reached (refused, timed out, authentication failed)."""


def transport_of(uri: str) -> str:
    """Validate a libvirt URI and return its transport; ValueError says what is wrong."""
    if not isinstance(uri, str) or not uri.strip():
        raise ValueError("The libvirt URI is empty.")
    if any(ch.isspace() for ch in uri) or len(uri) > 500:
        raise ValueError(
            "The libvirt URI must not contain spaces and must be under 500 characters."
        )
    parts = urlsplit(uri)
    scheme = parts.scheme.lower()
    if scheme not in _TRANSPORTS:
        known = ", ".join(sorted(s + "://" for s in _TRANSPORTS))
        raise ValueError(
            f"'{uri}' is not a libvirt URI Ferry can use; it must start with one of {known}."
        )
    if scheme == "test":
        if not parts.path or parts.path == "/":
            raise ValueError(
                "A test driver URI needs a path: test:///default or test:///path/node.xml."
            )
        return "test"
    if parts.path not in ("/system", "/session"):
        raise ValueError(
            f"'{uri}' must end in /system (or /session), e.g. qemu+tls://host.example/system."
        )
    transport = _TRANSPORTS[scheme]
    if transport in ("tls", "ssh", "tcp") and not parts.hostname:
        raise ValueError(f"'{uri}' names no host; write it as {scheme}://HOSTNAME/system.")
    return transport


def open_connection(uri: str, timeout: float) -> libvirt.virConnect:
    """Open a read-write connection, giving up after `timeout` seconds.

    libvirt's own connect can block on an unresponsive peer for minutes, so the open runs
    in a daemon thread; on timeout the thread is abandoned (it ends when the socket does).
    """
    result: dict = {}

    def _open():
        try:
            result["conn"] = libvirt.open(uri)
        except libvirt.libvirtError as exc:
            result["error"] = exc

    thread = threading.Thread(target=_open, name=f"libvirt-open {uri}", daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        raise HostUnreachable(f"No answer from {uri} within {timeout:g} s.")
    if "error" in result:
        raise HostUnreachable(f"Could not connect to {uri}: {result['error'].get_error_message()}")
    conn = result["conn"]
    if conn is None:
        raise HostUnreachable(f"Could not connect to {uri}.")
    if not uri.startswith("test:"):
        try:
            # Detect a dead peer within ~15 s instead of waiting for TCP to give up.
            conn.setKeepAlive(5, 3)
        except libvirt.libvirtError:
            pass
    return conn
