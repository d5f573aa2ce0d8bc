"""Where a move's two connections go: the control connection between the libvirt daemons
(peer-to-peer URI, the management network) and QEMU's data stream (the migration network).

Pure functions of a host's record, shared by the checks (evidence, before the run) and the
libvirt driver (the parameters it passes), so both say the same thing.

Why the TLS name: with VIR_MIGRATE_PARAM_URI the source QEMU checks the destination's
certificate against the host in that URI, an address on the migration network that
certificates rarely name ("Certificate does not match the hostname 10.78.0.2"). libvirt's
VIR_MIGRATE_PARAM_TLS_DESTINATION names the host to check instead: the destination's host
name as its libvirtd reports it (what certificates are issued for), else its peer address.
"""

import ipaddress
from urllib.parse import urlsplit

NETWORKED_SCHEMES = ("qemu+tls", "qemu+ssh", "qemu+tcp")


def peer_address(client_uri: str, migration_address: str) -> str:
    """The address the source libvirtd reaches the destination's on: the host's recorded
    migration (peer) address, else its URI's host when that URI is networked ("": none, a
    unix-socket URI names a socket, not a host)."""
    parts = urlsplit(client_uri)
    networked = parts.scheme in NETWORKED_SCHEMES
    return migration_address or (parts.hostname if networked else "") or ""


def data_uri(address: str) -> str:
    """VIR_MIGRATE_PARAM_URI for QEMU's data stream to `address` ("" when none is set).

    Always tcp://: with VIR_MIGRATE_TLS QEMU runs TLS over that TCP connection (libvirt has
    no tls:// migration URI). No port: the destination picks one from its qemu.conf range."""
    if not address:
        return ""
    try:
        if ipaddress.ip_address(address).version == 6:
            return f"tcp://[{address}]"
    except ValueError:
        pass
    return f"tcp://{address}"


def tls_name(client_uri: str, hostname: str, migration_address: str) -> str:
    """The name the destination's migration certificate is checked against."""
    return hostname or peer_address(client_uri, migration_address)
