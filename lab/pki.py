"""The lab's own certificate authority and certificates (openssl CLI).

One CA; per host a server and a client certificate whose SANs carry both the
host name and its IP, because libvirt and QEMU check the name the peer was
reached by (`qemu+tls://10.77.0.2/system`, QEMU's tls-hostname = the IP).
A client certificate for Ferry itself sits in LAB_DIR/pki/client in the
layout libvirt's `?pkipath=` expects.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

from lab.common import Host, lab_dir, run

DAYS = "3650"


def pki_dir() -> Path:
    return lab_dir() / "pki"


def _key(path: Path) -> None:
    run(
        [
            "openssl",
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
            str(path),
        ]
    )
    os.chmod(path, 0o600)


def _sign(d: Path, cn: str, ext: str, key: Path, cert: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        csr = Path(tmp) / "req.csr"
        extf = Path(tmp) / "ext.cnf"
        extf.write_text(ext)
        run(
            [
                "openssl",
                "req",
                "-new",
                "-key",
                str(key),
                "-subj",
                f"/O=Ferry lab/CN={cn}",
                "-out",
                str(csr),
            ]
        )
        run(
            [
                "openssl",
                "x509",
                "-req",
                "-in",
                str(csr),
                "-CA",
                str(d / "ca-cert.pem"),
                "-CAkey",
                str(d / "ca-key.pem"),
                "-CAcreateserial",
                "-days",
                DAYS,
                "-sha256",
                "-extfile",
                str(extf),
                "-out",
                str(cert),
            ]
        )


def _leaf_ext(usage: str, sans: list[str]) -> str:
    return (
        "basicConstraints=critical,CA:FALSE\n"
        "keyUsage=critical,digitalSignature,keyEncipherment\n"
        f"extendedKeyUsage={usage}\n"
        f"subjectAltName={','.join(sans)}\n"
    )


def ensure_pki(hosts: list[Host]) -> dict:
    """Create whatever is missing; returns paths. Reuses certs across up/down."""
    d = pki_dir()
    d.mkdir(parents=True, exist_ok=True)
    marker = d / "hosts.json"
    wanted = [[h.name, h.ip] for h in hosts]
    if marker.exists() and json.loads(marker.read_text()) != wanted:
        shutil.rmtree(d)  # host set changed: start over, certs are cheap
        d.mkdir(parents=True)
    if not (d / "ca-cert.pem").exists():
        _key(d / "ca-key.pem")
        run(
            [
                "openssl",
                "req",
                "-x509",
                "-new",
                "-key",
                str(d / "ca-key.pem"),
                "-days",
                DAYS,
                "-sha256",
                "-subj",
                "/O=Ferry lab/CN=Ferry lab CA",
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
                "-out",
                str(d / "ca-cert.pem"),
            ]
        )
    for h in hosts:
        sans = [f"DNS:{h.name}", f"IP:{h.ip}"]
        for kind, usage in (("server", "serverAuth"), ("client", "clientAuth")):
            key, cert = d / f"{h.name}-{kind}-key.pem", d / f"{h.name}-{kind}-cert.pem"
            if not cert.exists():
                _key(key)
                _sign(d, h.name, _leaf_ext(usage, sans), key, cert)
    client = d / "client"
    if not (client / "clientcert.pem").exists():
        client.mkdir(exist_ok=True)
        _key(client / "clientkey.pem")
        _sign(
            d,
            "ferry",
            _leaf_ext("clientAuth", ["DNS:ferry"]),
            client / "clientkey.pem",
            client / "clientcert.pem",
        )
        shutil.copy2(d / "ca-cert.pem", client / "cacert.pem")
    marker.write_text(json.dumps(wanted))
    return {
        "dir": str(d),
        "ca_cert": str(d / "ca-cert.pem"),
        "client_pkipath": str(client),
        "client_cert": str(client / "clientcert.pem"),
        "client_key": str(client / "clientkey.pem"),
    }


def install_host_pki(h: Host, etc_upper: Path, qemu_dir: Path) -> None:
    """Place a host's certs where libvirtd (/etc/pki, via the /etc overlay) and QEMU look."""
    d = pki_dir()
    files = {
        etc_upper / "pki/CA/cacert.pem": d / "ca-cert.pem",
        etc_upper / "pki/libvirt/servercert.pem": d / f"{h.name}-server-cert.pem",
        etc_upper / "pki/libvirt/private/serverkey.pem": d / f"{h.name}-server-key.pem",
        etc_upper / "pki/libvirt/clientcert.pem": d / f"{h.name}-client-cert.pem",
        etc_upper / "pki/libvirt/private/clientkey.pem": d / f"{h.name}-client-key.pem",
        # QEMU's migration TLS directory layout
        qemu_dir / "ca-cert.pem": d / "ca-cert.pem",
        qemu_dir / "server-cert.pem": d / f"{h.name}-server-cert.pem",
        qemu_dir / "server-key.pem": d / f"{h.name}-server-key.pem",
        qemu_dir / "client-cert.pem": d / f"{h.name}-client-cert.pem",
        qemu_dir / "client-key.pem": d / f"{h.name}-client-key.pem",
    }
    for dst, src in files.items():
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dst)
