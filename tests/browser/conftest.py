"""Real-browser tests: a real Daphne server (and workers) in a subprocess over the test
database, driven by Playwright with Debian's Chromium. Screenshots go to test-artifacts/."""

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.db import connection

from tests.conftest import REPO, skip_or_fail

ARTIFACTS = REPO / "test-artifacts"
SERVER_APP_NAME = "ferry-test-server"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture
def _fast_passwords():
    """Keep the production hasher: a real server subprocess checks these users' passwords
    with its own settings, which do not accept the fast test hasher."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def database_url() -> str:
    """The URL of the test database this pytest process uses, for child processes."""
    settings = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{settings['NAME']}"
    user = settings.get("USER") or "postgres"
    host = settings.get("HOST") or "127.0.0.1"
    port = settings.get("PORT") or 5432
    # Named, so fault tests can terminate the server's connections and not the test's own.
    return f"postgres://{user}@{host}:{port}/{settings['NAME']}?application_name={SERVER_APP_NAME}"


class FerryServer:
    """Daphne plus workers, as `manage.py serve` runs them, on a free port."""

    def __init__(self, workers: int = 2, redis: bool | None = None, extra_env: dict | None = None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.workers = workers
        self.procs: list[subprocess.Popen] = []
        self.log = ARTIFACTS / f"server-{self.port}.log"
        # redis=None: as configured (Redis in CI); True/False forces separate workers
        # over Redis or workers inside the web process with the in-process layer.
        self.redis = redis
        self.extra_env = extra_env or {}

    def env(self) -> dict:
        env = dict(os.environ)
        env["DATABASE_URL"] = database_url()
        env.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        if self.redis is True:
            env.setdefault("REDIS_URL", "redis://127.0.0.1:6379/0")
        elif self.redis is False:
            env.pop("REDIS_URL", None)
        if not env.get("REDIS_URL"):
            env["FERRY_EMBEDDED_WORKERS"] = str(self.workers)
        env.update(self.extra_env)
        return env

    def start(self):
        ARTIFACTS.mkdir(exist_ok=True)
        log = open(self.log, "ab")  # noqa: SIM115 - kept open for the children's lifetime
        env = self.env()
        cmd = [
            sys.executable,
            "-m",
            "daphne",
            "-b",
            "127.0.0.1",
            "-p",
            str(self.port),
            "dashboard.asgi:application",
        ]
        self.procs.append(subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log, stderr=log))
        if env.get("REDIS_URL"):
            for _ in range(self.workers):
                self.procs.append(
                    subprocess.Popen(
                        [sys.executable, "manage.py", "ferry_worker"],
                        cwd=REPO,
                        env=env,
                        stdout=log,
                        stderr=log,
                    )
                )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return self
            except OSError:
                if self.procs[0].poll() is not None:
                    break
                time.sleep(0.2)
        self.stop()
        raise RuntimeError(
            f"Ferry server did not start; see {self.log}:\n{Path(self.log).read_text()[-3000:]}"
        )

    def restart_web(self):
        """Kill Daphne and start it again on the same port (websockets drop meanwhile)."""
        web = self.procs[0]
        web.terminate()
        try:
            # Daphne waits for open websockets' handlers before it exits; do not wait long.
            web.wait(timeout=5)
        except subprocess.TimeoutExpired:
            web.kill()
            web.wait(timeout=10)
        log = open(self.log, "ab")  # noqa: SIM115
        cmd = [
            sys.executable,
            "-m",
            "daphne",
            "-b",
            "127.0.0.1",
            "-p",
            str(self.port),
            "dashboard.asgi:application",
        ]
        self.procs[0] = subprocess.Popen(cmd, cwd=REPO, env=self.env(), stdout=log, stderr=log)

    def stop(self):
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()


@pytest.fixture
def ferry_server(transactional_db):
    server = FerryServer().start()
    yield server
    server.stop()


# Function scope: Playwright's sync API runs an event loop in this thread while it is
# open, which would break the asyncio tests that run after the browser tests.
@pytest.fixture
def playwright_browser():
    if not Path(CHROMIUM).exists():
        skip_or_fail(f"Chromium is not installed at {CHROMIUM} (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as exc:  # pragma: no cover
        skip_or_fail(f"playwright is not installed: {exc}")
    # Playwright's sync API keeps an event loop running in this thread, which Django's
    # async-safety guard mistakes for async code calling the ORM (documented workaround).
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            yield browser
            browser.close()
    finally:
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@pytest.fixture
def new_page(playwright_browser):
    contexts = []

    def _new(viewport=(1280, 900)):
        context = playwright_browser.new_context(
            viewport={"width": viewport[0], "height": viewport[1]}
        )
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(20000)
        return page

    yield _new
    for context in contexts:
        context.close()


def login(page, server, username, password):
    page.goto(f"{server.url}/login/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")
    page.wait_for_url(lambda url: "/login/" not in url)


def screenshot(page, name):
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
