"""The `ferry` command line against a real Ferry server: the installed console script runs
in a subprocess (its own home for the saved login, one per person), talking HTTP and
websockets to Daphne and workers (tests/browser's FerryServer) over the test database.
The site is three demo hosts of site A on libvirt's test driver, so plans run on the
rehearsal driver."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from inventory.demo.generate_nodes import HOST_GROUPS
from inventory.services import host_add
from inventory.sync import host_sync
from tests.browser.conftest import FerryServer
from tests.conftest import skip_or_fail

FERRY = Path(sys.executable).parent / "ferry"
SITE_A = ("kvm-a1", "kvm-a2", "kvm-a3")
PEOPLE = {
    # planner1 may also approve, so the four-eyes rule (not the role) is what refuses
    # them on their own plan.
    "planner1": ("planner", "approver"),
    "approver1": ("approver",),
    "operator1": ("operator",),
}


class Ferry:
    """Runs the console script as one person (their own $XDG_CONFIG_HOME)."""

    def __init__(self, home: Path, server: FerryServer | None):
        self.home = home
        self.server = server
        self.started: list[subprocess.Popen] = []

    def env(self, user: str) -> dict:
        env = {k: v for k, v in os.environ.items() if not k.startswith("FERRY_")}
        env["XDG_CONFIG_HOME"] = str(self.home / user)
        env["COLUMNS"] = "200"
        return env

    def __call__(self, user: str, *args: str, stdin: str | None = None, timeout: float = 120):
        return subprocess.run(
            [str(FERRY), *args],
            input=stdin,
            env=self.env(user),
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def background(self, user: str, *args: str) -> subprocess.Popen:
        proc = subprocess.Popen(
            [str(FERRY), *args],
            env=self.env(user),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.started.append(proc)
        return proc

    def stop_background(self) -> None:
        """End what a failed test left running (by its own Popen handle)."""
        for proc in self.started:
            if proc.poll() is None:
                proc.kill()
                proc.communicate(timeout=10)

    def login(self, user: str):
        result = self(
            user,
            "login",
            "--url",
            self.server.url,
            "--user",
            user,
            "--password-stdin",
            stdin=f"pw-{user}\n",
        )
        assert result.returncode == 0, result.stderr
        return result

    def json(self, user: str, *args: str, expect: int = 0, stdin: str | None = None):
        result = self(user, *args, "--json", stdin=stdin)
        assert result.returncode == expect, (result.returncode, result.stdout, result.stderr)
        assert "Traceback" not in result.stderr, result.stderr
        return json.loads(result.stdout)


@pytest.fixture
def _fast_passwords():
    """Keep the production hasher: the server subprocess checks these users' passwords."""


@pytest.fixture
def ferry_installed():
    if not FERRY.exists():
        skip_or_fail(f"the ferry console script is not installed at {FERRY} (run make venv)")
    return FERRY


@pytest.fixture
def cli_site(transactional_db, make_user, demo_uri):
    """Site A's demo hosts synced for real from their test-driver node files, and people."""
    for name in SITE_A:
        host = host_add(name=name, uri=demo_uri(name), group=HOST_GROUPS.get(name, ""), actor=None)
        assert host_sync(host=host).ok
    for user, roles in PEOPLE.items():
        make_user(user, *roles)


@pytest.fixture
def ferry(ferry_installed, cli_site, tmp_path):
    """A running server with the site, and the command line logged in as each person."""
    # Fast rehearsals: a 16 GiB VM moves in ~2.5 s, with a progress sample each second.
    server = FerryServer(extra_env={"FERRY_REHEARSAL_SPEED": "60"}).start()
    runner = Ferry(tmp_path / "homes", server)
    try:
        for user in PEOPLE:
            runner.login(user)
        yield runner
    finally:
        runner.stop_background()
        server.stop()


def write_plan(path: Path, text: str) -> str:
    path.write_text(text)
    return str(path)
