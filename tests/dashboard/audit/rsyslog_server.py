"""A real rsyslogd (Debian's) for the forwarding tests: its own config, pid file, work
directory and ports on 127.0.0.1, run as `nobody` when the tests run as root; TLS through
rsyslog's gtls driver with a certificate from a CA made for the test."""

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

RSYSLOGD = shutil.which("rsyslogd") or "/usr/sbin/rsyslogd"

CONFIG = """
global(workDirectory="{work}" maxMessageSize="64k"
       defaultNetstreamDriverCAFile="{tls}/ca.pem"
       defaultNetstreamDriverCertFile="{tls}/server.pem"
       defaultNetstreamDriverKeyFile="{tls}/server-key.pem")
module(load="imtcp" maxSessions="50")
module(load="imudp")
input(type="imtcp" name="tls" address="127.0.0.1" port="{tls_port}"
      streamDriver.name="gtls" streamDriver.mode="1" streamDriver.authMode="anon")
input(type="imtcp" name="tcp" address="127.0.0.1" port="{tcp_port}")
input(type="imudp" name="udp" address="127.0.0.1" port="{udp_port}")
template(name="ferry" type="string"
         string="%timegenerated:::date-rfc3339% %inputname% %msgid% %structured-data%\\n")
action(type="omfile" file="{out}" template="ferry")
"""


def free_port(kind=socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def make_ca(directory: Path) -> None:
    """A test CA and a server certificate for 127.0.0.1 / localhost, with openssl."""
    directory.mkdir(parents=True, exist_ok=True)

    def run(*args):
        subprocess.run(["openssl", *args], cwd=directory, check=True, capture_output=True)

    run(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca-key.pem",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=Ferry test CA",
    )
    run(
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "server-key.pem",
        "-out",
        "server.csr",
        "-subj",
        "/CN=localhost",
    )
    (directory / "ext.cnf").write_text(
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n"
        "keyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n"
    )
    run(
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca-key.pem",
        "-CAcreateserial",
        "-out",
        "server.pem",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
    )


class Rsyslog:
    """rsyslogd in the foreground with its own files; restartable on the same ports."""

    def __init__(self, base: Path):
        self.base = base
        self.tls_dir = base / "tls"
        self.work = base / "work"
        self.out = base / "received.log"
        self.conf = base / "rsyslog.conf"
        self.pid_file = base / "rsyslogd.pid"
        self.log = base / "rsyslogd.log"
        self.tls_port, self.tcp_port = free_port(), free_port()
        self.udp_port = free_port(socket.SOCK_DGRAM)
        self.proc = None
        make_ca(self.tls_dir)
        self.work.mkdir(parents=True, exist_ok=True)
        self.conf.write_text(
            CONFIG.format(
                work=self.work,
                tls=self.tls_dir,
                out=self.out,
                tls_port=self.tls_port,
                tcp_port=self.tcp_port,
                udp_port=self.udp_port,
            )
        )
        if os.geteuid() == 0:  # run unprivileged: nobody must read its files and write out
            for path in [base, *base.rglob("*")]:
                path.chmod(0o777 if path.is_dir() else 0o644)
            base.chmod(0o777)

    def start(self) -> "Rsyslog":
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
        extra = {"user": "nobody", "group": "nogroup"} if os.geteuid() == 0 else {}
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [RSYSLOGD, "-n", "-f", str(self.conf), "-i", str(self.pid_file)],
                stdout=log,
                stderr=log,
                env=env,
                **extra,
            )
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"rsyslogd exited: {self.log.read_text()[-2000:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.tls_port), timeout=0.2):
                    pass
                with socket.create_connection(("127.0.0.1", self.tcp_port), timeout=0.2):
                    return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"rsyslogd did not listen: {self.log.read_text()[-2000:]}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def lines(self) -> list[str]:
        return self.out.read_text().splitlines() if self.out.exists() else []
