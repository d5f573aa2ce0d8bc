"""Where webhooks may go (M2 of the security review): public addresses only, unless an
admin allowlisted the receiver; and the POST goes to the very address that was checked.

A webhook URL is typed by planners and operators and fetched by Ferry's workers, inside the
network Ferry lives in. Without this, a subscription to http://127.0.0.1:6379/ or to the
cloud metadata service turns notifications into a port scanner and a blind POST into
internal services. So:

- the host is resolved, and every address it resolves to must be public (not loopback,
  private, link-local, multicast, reserved, shared, or a metadata service), both when the
  subscription is made and before every delivery (DNS may change in between);
- the connection is made to the address that passed, with the URL's host name kept for the
  Host header and for TLS (SNI and certificate checks), so a second DNS answer cannot
  swap the target after the check;
- an admin may allow internal receivers by name or network (FERRY_WEBHOOK_ALLOW_HOSTS);
  link-local and metadata addresses stay refused even then;
- the error text other roles see is classified; the raw one is for admins.
"""

import http.client
import ipaddress
import socket
import ssl
from urllib.parse import urlsplit

from django.conf import settings

from dashboard.errors import InputError

# Cloud metadata services outside the link-local range (AWS IPv6, Alibaba, Oracle).
METADATA = (
    ipaddress.ip_network("fd00:ec2::254/128"),
    ipaddress.ip_network("100.100.100.200/32"),
    ipaddress.ip_network("192.0.0.192/32"),
)


class WebhookRefused(InputError):
    """The webhook's target is not a place Ferry sends notifications to."""


def _allowlist():
    names, networks = [], []
    for entry in getattr(settings, "FERRY_WEBHOOK_ALLOW_HOSTS", []) or []:
        entry = str(entry).strip().lower()
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            if entry:
                names.append(entry)
    return names, networks


def _name_allowed(host: str, names) -> bool:
    return any(
        host == name.lstrip(".") or (name.startswith(".") and host.endswith(name)) for name in names
    )


def _never(address) -> bool:
    return (
        address.is_link_local
        or address.is_multicast
        or address.is_unspecified
        or any(address in net for net in METADATA)
    )


def _address_refusal(address, allowed_by_name: bool, networks) -> str:
    if _never(address):
        return "a link-local, multicast or metadata address"
    if allowed_by_name or any(address in net for net in networks):
        return ""
    if not address.is_global or address.is_reserved:
        return "not a public address (an admin may allow internal receivers)"
    return ""


def webhook_target_resolve(url: str, *, what: str = "webhook") -> tuple[str, int, list[str]]:
    """(host, port, [checked addresses]) of a webhook URL; WebhookRefused says why not.

    `what` names the URL in messages: validation after switchover checks its health URLs
    under the same rules ("health check")."""
    parts = urlsplit(url or "")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise WebhookRefused(f"A {what} must be an http:// or https:// URL with a host name.")
    if parts.username or parts.password:
        raise WebhookRefused(f"A {what} URL may not carry a user name or password.")
    host = parts.hostname.lower().rstrip(".")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise WebhookRefused(f"The {what} URL's port is not a number from 1 to 65535.") from None
    return host, port, outbound_addresses(host, port, what=what)


def outbound_addresses(host: str, port: int, *, what: str = "webhook") -> list[str]:
    """The addresses `host` resolves to, each one allowed by the outbound rules (public, or
    allowlisted by an admin; never link-local or metadata); WebhookRefused says why not.
    Webhooks and the TCP and HTTP checks of validation after switchover share these rules."""
    host = host.lower().rstrip(".")
    names, networks = _allowlist()
    allowed_by_name = _name_allowed(host, names)
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        raise WebhookRefused(f"The {what} host '{host}' does not resolve.") from None
    addresses = sorted({info[4][0] for info in infos})
    for text in addresses:
        address = ipaddress.ip_address(text.split("%")[0])
        if getattr(address, "ipv4_mapped", None):
            address = address.ipv4_mapped
        why = _address_refusal(address, allowed_by_name, networks)
        if why:
            raise WebhookRefused(
                f"The {what} host '{host}' resolves to {address}: {why}. Ferry does not "
                f"{'send notifications' if what == 'webhook' else 'connect'} there."
            )
    if not addresses:
        raise WebhookRefused(f"The {what} host '{host}' does not resolve.")
    return addresses


class _PinnedHTTPConnection(http.client.HTTPConnection):
    def __init__(self, host, port, address, timeout):
        super().__init__(host, port, timeout=timeout)
        self._address = address

    def connect(self):
        self.sock = socket.create_connection((self._address, self.port), self.timeout)


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    def __init__(self, host, port, address, timeout):
        super().__init__(host, port, timeout=timeout, context=ssl.create_default_context())
        self._address = address

    def connect(self):
        sock = socket.create_connection((self._address, self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)


def outbound_request(
    method: str,
    url: str,
    body: bytes | None = None,
    headers: dict | None = None,
    timeout: float = 10.0,
    *,
    max_bytes: int = 65536,
    what: str = "webhook",
) -> tuple[int, str, bytes]:
    """One HTTP request to the checked address of `url` (no redirects followed); returns
    (status, reason, up to `max_bytes` of the body). Every outbound call Ferry makes to an
    address it was given (webhooks, the change-management gate, health checks after a
    switchover) goes through here; `what` names the URL in refusals. Raises
    WebhookRefused, or OSError/HTTPException on network errors."""
    host, port, addresses = webhook_target_resolve(url, what=what)
    parts = urlsplit(url)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    cls = _PinnedHTTPSConnection if parts.scheme == "https" else _PinnedHTTPConnection
    connection = cls(host, port, addresses[0], timeout)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, response.reason, response.read(max_bytes)
    finally:
        connection.close()


def webhook_post(url: str, body: bytes, headers: dict, timeout: float) -> tuple[int, str]:
    """POST `body` to the checked address of `url` (no redirects followed); returns
    (status, reason). Raises WebhookRefused, or OSError/HTTPException on network errors."""
    status, reason, _ = outbound_request("POST", url, body, headers, timeout)
    return status, reason


def classify_network_error(exc: Exception) -> str:
    """What every role may read about a failed delivery (the raw text is for admins)."""
    if isinstance(exc, WebhookRefused):
        return "refused: the target is not an allowed address"
    if isinstance(exc, ssl.SSLError | ssl.CertificateError):
        return "TLS handshake or certificate refused"
    if isinstance(exc, TimeoutError | socket.timeout):
        return "timed out"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, ConnectionError):
        return "connection failed"
    if isinstance(exc, http.client.HTTPException):
        return "the receiver's answer was not valid HTTP"
    return "network error"
