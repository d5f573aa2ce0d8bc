"""Real identity servers for the single sign-on tests, each its own process on loopback:
django-oidc-provider (a second Django process with tests.sso.provider.settings) and
Debian's OpenLDAP `slapd` with its own configuration directory and port."""

import os
import shutil
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

# The browser fixtures, for the single sign-on browser test.
from tests.browser.conftest import free_port, new_page, playwright_browser  # noqa: F401
from tests.conftest import REPO, skip_or_fail


def _wait_for_port(port: int, proc: subprocess.Popen, log: Path, what: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            if proc.poll() is not None:
                break
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError(f"{what} did not start:\n{log.read_text()[-3000:]}")


class OpenIDProvider:
    """django-oidc-provider serving /openid/ on a free port, with its own SQLite database."""

    def __init__(self, data: Path):
        self.data = data
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = data / "op.log"
        self.proc: subprocess.Popen | None = None

    def env(self) -> dict:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("FERRY_", "DATABASE"))}
        env.update(DJANGO_SETTINGS_MODULE="tests.sso.provider.settings", OP_DATA_DIR=str(self.data))
        return env

    def manage(self, *args: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "django", *args],
            cwd=REPO,
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=120,
        )
        if done.returncode != 0:
            raise RuntimeError(f"provider {args[0]} failed:\n{done.stdout}\n{done.stderr}")
        return done.stdout

    def run(self, code: str) -> str:
        """Run Python inside the provider's Django (users, groups, clients)."""
        return self.manage("shell", "-c", textwrap.dedent(code))

    def start(self) -> "OpenIDProvider":
        self.manage("migrate", "--noinput", "-v0")
        self.manage("creatersakey")
        log = open(self.log, "ab")  # noqa: SIM115 - kept open for the child's lifetime
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "django", "runserver", "--noreload", f"127.0.0.1:{self.port}"],
            cwd=REPO,
            env=self.env(),
            stdout=log,
            stderr=log,
        )
        _wait_for_port(self.port, self.proc, self.log, "the OpenID provider")
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=15)

    def client(self, client_id: str, secret: str, redirect_uri: str) -> None:
        self.run(
            f"""
            from oidc_provider.models import Client, ResponseType
            code = ResponseType.objects.get(value="code")
            client, _ = Client.objects.update_or_create(
                client_id={client_id!r},
                defaults=dict(name="Ferry", client_type="confidential",
                              client_secret={secret!r}, jwt_alg="RS256",
                              require_consent=False, reuse_consent=True),
            )
            client.redirect_uris = [{redirect_uri!r}]
            client.save()
            client.response_types.set([code])
            """
        )

    def user(self, username: str, password: str, email: str, groups: list[str]) -> None:
        """Create or update a provider account and set its groups (what the IdP admin does)."""
        self.run(
            f"""
            from django.contrib.auth.models import Group, User
            user = User.objects.filter(username={username!r}).first()
            if user is None:
                user = User.objects.create_user({username!r}, {email!r}, {password!r})
            user.groups.set([Group.objects.get_or_create(name=g)[0] for g in {groups!r}])
            """
        )

    def ferry_env(self, client_id: str, secret: str) -> dict:
        """The environment that points a Ferry server at this provider."""
        base = f"{self.url}/openid"
        return {
            "FERRY_OIDC_CLIENT_ID": client_id,
            "FERRY_OIDC_CLIENT_SECRET": secret,
            "FERRY_OIDC_AUTHORIZATION_ENDPOINT": f"{base}/authorize",
            "FERRY_OIDC_TOKEN_ENDPOINT": f"{base}/token",
            "FERRY_OIDC_USERINFO_ENDPOINT": f"{base}/userinfo",
            "FERRY_OIDC_JWKS_ENDPOINT": f"{base}/jwks",
        }


@pytest.fixture(scope="module")
def oidc_provider(tmp_path_factory):
    try:
        import oidc_provider  # noqa: F401
    except ImportError as exc:  # pragma: no cover
        skip_or_fail(f"django-oidc-provider is not installed: {exc}")
    provider = OpenIDProvider(tmp_path_factory.mktemp("op")).start()
    yield provider
    provider.stop()


SLAPD = shutil.which("slapd") or "/usr/sbin/slapd"
SUFFIX = "dc=ferry,dc=test"
ROOT_DN = f"cn=admin,{SUFFIX}"
ROOT_PW = "ldap-test-admin"  # noqa: S105 - a throwaway test directory


class Directory:
    """An OpenLDAP server (slapd) with people and groups under dc=ferry,dc=test."""

    def __init__(self, base: Path):
        self.base = base
        self.port = free_port()
        self.uri = f"ldap://127.0.0.1:{self.port}"
        self.log = base / "slapd.log"
        self.proc: subprocess.Popen | None = None

    def start(self) -> "Directory":
        (self.base / "db").mkdir()
        conf = self.base / "slapd.conf"
        conf.write_text(
            textwrap.dedent(
                f"""
                include /etc/ldap/schema/core.schema
                include /etc/ldap/schema/cosine.schema
                include /etc/ldap/schema/nis.schema
                include /etc/ldap/schema/inetorgperson.schema
                pidfile {self.base}/slapd.pid
                modulepath /usr/lib/ldap
                moduleload back_mdb
                database mdb
                suffix "{SUFFIX}"
                rootdn "{ROOT_DN}"
                rootpw {ROOT_PW}
                directory {self.base}/db
                maxsize 10485760
                """
            )
        )
        log = open(self.log, "ab")  # noqa: SIM115 - kept open for the child's lifetime
        # -d 0: stay in the foreground (this process owns it), log nothing extra.
        self.proc = subprocess.Popen(
            [SLAPD, "-d", "0", "-f", str(conf), "-h", self.uri], stdout=log, stderr=log
        )
        _wait_for_port(self.port, self.proc, self.log, "slapd")
        self.add(
            f"""
            dn: {SUFFIX}
            objectClass: dcObject
            objectClass: organization
            o: Ferry test
            dc: ferry

            dn: ou=people,{SUFFIX}
            objectClass: organizationalUnit
            ou: people

            dn: ou=groups,{SUFFIX}
            objectClass: organizationalUnit
            ou: groups
            """
        )
        return self

    def _tool(self, tool: str, ldif: str) -> None:
        done = subprocess.run(
            [tool, "-x", "-H", self.uri, "-D", ROOT_DN, "-w", ROOT_PW],
            input=textwrap.dedent(ldif).strip() + "\n",
            capture_output=True,
            text=True,
            timeout=30,
        )
        if done.returncode != 0:
            raise RuntimeError(f"{tool} failed: {done.stderr}")

    def add(self, ldif: str) -> None:
        self._tool("ldapadd", ldif)

    def modify(self, ldif: str) -> None:
        self._tool("ldapmodify", ldif)

    def person(self, uid: str, password: str, email: str) -> str:
        dn = f"uid={uid},ou=people,{SUFFIX}"
        self.add(
            f"""
            dn: {dn}
            objectClass: inetOrgPerson
            uid: {uid}
            cn: {uid}
            sn: {uid}
            mail: {email}
            userPassword: {password}
            """
        )
        return dn

    def group(self, cn: str, members: list[str]) -> str:
        dn = f"cn={cn},ou=groups,{SUFFIX}"
        members_ldif = "".join(f"member: {m}\n" for m in members)
        self.add(f"dn: {dn}\nobjectClass: groupOfNames\ncn: {cn}\n{members_ldif}")
        return dn

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=15)


@pytest.fixture
def ldap_directory(tmp_path):
    if not Path(SLAPD).exists() or not shutil.which("ldapadd"):
        skip_or_fail("slapd and ldap-utils are not installed (scripts/system-deps.sh --test)")
    directory = Directory(tmp_path).start()
    yield directory
    directory.stop()
