"""Which libvirt URIs Ferry accepts, in one normal form, and the URI it actually opens.

A libvirt URI is code: its query string picks binaries (`command=`), key files
(`keyfile=`), sockets (`socket=`), a second URI for the daemon to open (`name=`) and turns
certificate checks off (`no_verify=`), and the test driver reads any file it is pointed at.
Ferry therefore accepts only these forms, with no query, no fragment, no percent-encoding:

- `qemu+tls://HOST[:PORT]/system` (the production form);
- `qemu+ssh://[USER@]HOST[:PORT]/system`;
- `qemu:///system` (the local daemon's default socket), only when FERRY_ALLOW_LOCAL_LIBVIRT;
- `qemu+unix://NAME/system`, where NAME is a socket an admin listed in FERRY_LIBVIRT_SOCKETS
  (the URI names the socket, the server's settings say where it is: the libvirt lab);
- `test:///default` or `test:///PATH.xml` with PATH inside a FERRY_DEMO_NODES directory,
  only when FERRY_DEMO is on (`make run`, the test suite); `test://HOST/...` never.

Everything a connection needs besides (client PKI directory, ssh key) is a server-side
setting that `connect_uri` adds when Ferry opens the connection.
"""

import ipaddress
import os
import re
from dataclasses import dataclass
from urllib.parse import quote

from django.conf import settings

from dashboard.errors import InputError

MAX_LENGTH = 500
DEFAULT_PORTS = {"qemu+tls": 16514, "qemu+ssh": 22}
_SHAPE = re.compile(
    r"^(?P<scheme>[^:/?#]*)://"
    r"(?:(?P<user>[^@/]*)@)?"
    r"(?P<host>\[[^\]/]*\]|[^:/]*)"
    r"(?::(?P<port>[^/]*))?"
    r"(?P<path>/.*)?$"
)
_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
_USER = re.compile(r"^[a-z_][a-z0-9_.-]{0,31}$")
_SOCKET_NAME = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
_EXAMPLE = "qemu+tls://kvm1.example.internal/system"


@dataclass(frozen=True)
class LibvirtUri:
    """A URI Ferry accepts: its transport and its normal form (what is stored)."""

    transport: str  # tls, ssh, unix or test
    uri: str
    host: str = ""  # the hostname or address (tls, ssh), the socket name (unix), ""


def _refuse(uri: str, why: str) -> InputError:
    shown = uri if len(uri) <= 120 else uri[:117] + "..."
    return InputError(f"The libvirt URI '{shown}' is refused: {why}")


def uri_parse(uri) -> LibvirtUri:
    """Validate a libvirt URI against Ferry's allowlist; InputError says what is wrong."""
    if not isinstance(uri, str) or not uri.strip():
        raise InputError("The libvirt URI is empty.")
    if len(uri) > MAX_LENGTH:
        raise InputError(f"The libvirt URI must be under {MAX_LENGTH} characters.")
    if not uri.isascii() or any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in uri):
        raise _refuse(uri, "it may only hold printable ASCII without spaces.")
    for ch, what in (("?", "query parameters"), ("#", "a fragment"), ("%", "percent-encoding")):
        if ch in uri:
            raise _refuse(
                uri,
                f"{what} are not allowed (client certificates, ssh keys and sockets are "
                "server settings, never part of a host's URI).",
            )
    if "\\" in uri:
        raise _refuse(uri, "backslashes are not allowed.")
    match = _SHAPE.match(uri)
    if match is None:
        raise _refuse(uri, f"write it as {_EXAMPLE}.")
    scheme, user, host, port, path = match.group("scheme", "user", "host", "port", "path")
    if scheme == "test":
        return _parse_test(uri, user, host, port, path)
    if scheme not in ("qemu+tls", "qemu+ssh", "qemu+unix", "qemu"):
        raise _refuse(
            uri, f"Ferry connects over qemu+tls:// or qemu+ssh:// only (e.g. {_EXAMPLE})."
        )
    if path != "/system":
        raise _refuse(uri, f"the path must be exactly /system (e.g. {_EXAMPLE}).")
    if scheme in ("qemu", "qemu+unix"):
        return _parse_local(uri, scheme, user, host, port)
    if user is not None and scheme != "qemu+ssh":
        raise _refuse(uri, "only qemu+ssh:// URIs may name a user (user@host).")
    if user is not None and not _USER.match(user):
        raise _refuse(uri, "the ssh user must be a plain user name (no password, no ':').")
    name = _host(uri, host)
    port_number = _port(uri, port)
    shown_port = "" if port_number in (None, DEFAULT_PORTS[scheme]) else f":{port_number}"
    userinfo = f"{user}@" if user else ""
    return LibvirtUri(
        transport="tls" if scheme == "qemu+tls" else "ssh",
        uri=f"{scheme}://{userinfo}{name}{shown_port}/system",
        host=name.strip("[]"),
    )


def transport_of(uri: str) -> str:
    """The transport of an accepted URI (InputError, a ValueError, when it is refused)."""
    return uri_parse(uri).transport


def tls_uri_verified(uri: str) -> bool:
    """Whether `uri` is an accepted qemu+tls:// URI: certificate checks cannot be turned off
    by it (no query at all), so the server's certificate is verified."""
    try:
        return uri_parse(uri).transport == "tls"
    except InputError:
        return False


def _host(uri: str, host: str) -> str:
    if not host:
        raise _refuse(uri, f"it names no host; write it as {_EXAMPLE}.")
    if host.startswith("["):
        try:
            address = ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            raise _refuse(uri, f"{host} is not an IPv6 address.") from None
        return f"[{address.compressed}]"
    lowered = host.lower()
    try:
        return str(ipaddress.IPv4Address(lowered))
    except ValueError:
        pass
    if len(lowered) > 253 or lowered.endswith("."):
        raise _refuse(uri, f"'{host}' is not a host name (no trailing dot, at most 253 chars).")
    labels = lowered.split(".")
    if not all(_LABEL.match(label) for label in labels):
        raise _refuse(
            uri,
            f"'{host}' is not a host name: letters, digits, hyphens and dots only "
            "(write internationalised names in their xn-- form).",
        )
    last = labels[-1]
    if last.isdigit() or re.fullmatch(r"0x[0-9a-f]*", last):
        # "127.1", "2130706433" or "0x7f.1" are addresses to the resolver, in disguise.
        raise _refuse(uri, f"'{host}' looks like a number: write an IPv4 address as a.b.c.d.")
    return lowered


def _port(uri: str, port: str | None) -> int | None:
    if port is None:
        return None
    if not port.isdigit() or port.startswith("0") or not 1 <= int(port) <= 65535:
        raise _refuse(uri, f"'{port}' is not a port (1-65535).")
    return int(port)


def _parse_local(uri, scheme, user, host, port) -> LibvirtUri:
    if user is not None or port is not None:
        raise _refuse(uri, "a local socket URI names no user and no port.")
    if host == "":
        if not getattr(settings, "FERRY_ALLOW_LOCAL_LIBVIRT", False):
            raise _refuse(
                uri,
                "the local libvirt daemon is allowed only when an admin sets "
                "FERRY_ALLOW_LOCAL_LIBVIRT=true on the server.",
            )
        return LibvirtUri(transport="unix", uri="qemu:///system")
    if scheme != "qemu+unix":
        raise _refuse(uri, f"write it as {_EXAMPLE}.")
    name = host.lower()
    if not _SOCKET_NAME.match(name) or name not in libvirt_sockets():
        raise _refuse(
            uri,
            f"'{host}' is not a socket listed in the server's FERRY_LIBVIRT_SOCKETS "
            "(an admin names each local libvirt socket there).",
        )
    return LibvirtUri(transport="unix", uri=f"qemu+unix://{name}/system", host=name)


def _parse_test(uri, user, host, port, path) -> LibvirtUri:
    if user is not None or host or port is not None:
        raise _refuse(uri, "a test driver URI names no host (test:///...).")
    if not getattr(settings, "FERRY_DEMO", False):
        raise _refuse(uri, "the test driver is allowed only on a demo server (FERRY_DEMO=true).")
    if path == "/default":
        return LibvirtUri(transport="test", uri="test:///default")
    if not path or not path.endswith(".xml") or "/../" in path or "/./" in path or "//" in path:
        raise _refuse(uri, "a test driver URI is test:///default or test:///PATH/node.xml.")
    real = os.path.realpath(path)
    for directory in demo_node_dirs():
        root = os.path.realpath(directory)
        if os.path.commonpath([root, real]) == root and real != root:
            return LibvirtUri(transport="test", uri=f"test://{real}")
    raise _refuse(uri, "test driver node files must lie in a FERRY_DEMO_NODES directory.")


def demo_node_dirs() -> list[str]:
    """Directories whose node files the test driver may read (FERRY_DEMO_NODES)."""
    return [str(d) for d in getattr(settings, "FERRY_DEMO_NODES", []) if str(d)]


def libvirt_sockets() -> dict[str, str]:
    """{socket name: path} of the local libvirt sockets an admin allowed (FERRY_LIBVIRT_SOCKETS)."""
    return {
        str(k).lower(): str(v) for k, v in getattr(settings, "FERRY_LIBVIRT_SOCKETS", {}).items()
    }


def connect_uri(uri: str) -> str:
    """The URI Ferry hands to libvirt for a stored host URI: validated again (a row written
    before this allowlist existed is refused here), plus the server-side options."""
    parsed = uri_parse(uri)
    if parsed.transport == "unix" and parsed.host:
        path = libvirt_sockets()[parsed.host]
        return f"qemu+unix:///system?socket={quote(path, safe='/-_.~')}"
    if parsed.transport == "tls":
        pki = getattr(settings, "FERRY_LIBVIRT_PKI_DIR", "")
        return f"{parsed.uri}?pkipath={quote(pki, safe='/-_.~')}" if pki else parsed.uri
    if parsed.transport == "ssh":
        keyfile = getattr(settings, "FERRY_LIBVIRT_SSH_KEYFILE", "")
        return f"{parsed.uri}?keyfile={quote(keyfile, safe='/-_.~')}" if keyfile else parsed.uri
    return parsed.uri
