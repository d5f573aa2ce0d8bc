"""Errors from the command line are one readable message and an exit code, never a
traceback: a bad plan file (exit 2, nothing written), the server's `detail` for a 4xx
(exit 1), a bad token, an unreachable server, and JSON errors with --json."""

import json
import socket
import subprocess
import sys

import pytest

from dashboard.audit.models import AuditEvent
from migrations_app.models import MigrationPlan
from tests.browser.conftest import free_port
from tests.cli.conftest import FERRY, Ferry, write_plan

pytestmark = pytest.mark.django_db(transaction=True)

BAD_FILES = {
    "name: x\n  items: [\n": "is not valid YAML (line 2, column 8)",
    "- just\n- a list\n": "must be a mapping with at least 'name' and 'items'",
    "name: x\nitems: []\n": "items must be a list with at least one VM",
    "name: x\nitemz: [a]\nitems: [a]\n": "unknown field(s) itemz",
    "name: x\nitems: [{vm: a, mode: fast}]\n": "items[0].mode must be one of live",
    "name: x\nitems: [a, a]\n": "items[1] repeats VM 'a'",
    "name: x\nwindow: {start: 2026-05-02}\nitems: [a]\n": "window.start needs a time of day",
    "name: x\nitems: [{vm: a, destination: b, mode: storage_only}]\n": "leave out destination",
    "name: x\nitems: [no-such-vm]\n": "items[0]: Ferry knows no VM named or with uuid",
    "name: x\nitems: [{vm: api-a1-07, destination: kvm-z9}]\n": "no host named 'kvm-z9'",
}


def test_it_refuses_a_bad_plan_file_with_exit_2_and_writes_nothing(ferry, tmp_path):
    audit = AuditEvent.objects.count()
    for n, (text, message) in enumerate(BAD_FILES.items()):
        path = write_plan(tmp_path / f"bad-{n}.yaml", text)
        for command in ("apply", "create"):
            result = ferry("planner1", "plan", command, "-f", path)
            assert result.returncode == 2, (text, result.stderr)
            assert message in result.stderr, (text, result.stderr)
            assert path in result.stderr
            assert "Traceback" not in result.stderr
    missing = ferry("planner1", "plan", "apply", "-f", str(tmp_path / "nope.yaml"))
    assert missing.returncode == 2 and "Cannot read" in missing.stderr
    from_stdin = ferry("planner1", "plan", "apply", "-f", "-", stdin="name: [\n")
    assert from_stdin.returncode == 2 and "standard input is not valid YAML" in from_stdin.stderr
    assert MigrationPlan.objects.count() == 0
    assert AuditEvent.objects.count() == audit


def test_it_shows_the_servers_detail_for_a_refused_request(ferry, tmp_path):
    missing = ferry("planner1", "plan", "show", "4242")
    assert missing.returncode == 1
    assert missing.stderr.strip() == "Error: No MigrationPlan matches the given query."
    as_json = ferry.json("planner1", "plan", "show", "4242", expect=1)
    assert as_json == {"error": "No MigrationPlan matches the given query.", "status": 404}

    path = write_plan(tmp_path / "plan.yaml", "name: Draft\nitems: [api-a1-07]\n")
    plan_id = ferry.json("planner1", "plan", "create", "-f", path)["plan"]["id"]
    for args, detail in [
        (("plan", "cancel", str(plan_id)), "reason: Say why the plan is cancelled."),
        (("plan", "submit", str(plan_id)), "has not been validated: run validation first"),
        (("plan", "approve", str(plan_id)), "Four eyes"),
        (("plan", "show", "No such plan"), "No plan is named 'No such plan'."),
    ]:
        result = ferry("planner1", *args)
        assert result.returncode in (1, 2), (args, result.stderr)
        assert detail in result.stderr, (args, result.stderr)
        assert "Traceback" not in result.stderr
    viewer = ferry("approver1", "plan", "validate", str(plan_id))
    assert viewer.returncode == 1 and "Your role does not allow this." in viewer.stderr
    cancelled = ferry.json("planner1", "plan", "cancel", str(plan_id), "--reason", "not needed")
    assert cancelled["status"] == "cancelled"


def test_it_refuses_a_wrong_password_and_a_revoked_token_with_a_hint(ferry):
    wrong = ferry(
        "nobody",
        "login",
        "--url",
        ferry.server.url,
        "--user",
        "planner1",
        "--password-stdin",
        stdin="wrong\n",
    )
    assert wrong.returncode == 1
    assert "Sign-in refused" in wrong.stderr
    assert not (ferry.home / "nobody" / "ferry" / "config.json").exists()

    token = json.loads((ferry.home / "operator1" / "ferry" / "config.json").read_text())["token"]
    assert ferry.json("operator1", "logout") == {"revoked": True}
    env = ferry.env("other")
    env.update(FERRY_URL=ferry.server.url, FERRY_TOKEN=token)
    result = subprocess.run(
        [str(FERRY), "hosts"], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 1
    assert "Invalid token. Run `ferry login`" in result.stderr
    # An existing token can be given instead of a password.
    key = json.loads((ferry.home / "approver1" / "ferry" / "config.json").read_text())["token"]
    given = ferry("scripted", "login", "--url", ferry.server.url, "--token", key)
    assert given.returncode == 0, given.stderr
    assert len(ferry.json("scripted", "hosts")) == 3


def test_it_reports_an_unreachable_server_or_no_login_without_a_traceback(
    ferry_installed, tmp_path
):
    runner = Ferry(tmp_path, None)
    port = free_port()
    with socket.socket() as sock:  # nothing listens on the port
        sock.bind(("127.0.0.1", port))
    env = runner.env("x")
    env.update(FERRY_URL=f"http://127.0.0.1:{port}", FERRY_TOKEN="0" * 40)
    for args in (["hosts"], ["plan", "list"], ["plan", "watch", "1"]):
        result = subprocess.run(
            [str(FERRY), *args], env=env, capture_output=True, text=True, timeout=60
        )
        assert result.returncode == 1, result.stderr
        assert f"Cannot reach http://127.0.0.1:{port}" in result.stderr
        assert "Traceback" not in result.stderr
    nobody = runner("x", "hosts")
    assert nobody.returncode == 2 and "Not logged in: run `ferry login" in nobody.stderr
    bad_url = runner("x", "login", "--url", "ftp://x", "--token", "abc")
    assert bad_url.returncode == 2 and "must start with http:// or https://" in bad_url.stderr


def test_it_imports_nothing_of_the_server():
    """The command line is a client: it must run where Django and Ferry's apps are not."""
    probe = (
        "import sys, ferry_cli.main\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
        "{'django', 'rest_framework', 'channels', 'dashboard', 'inventory', 'migrations_app'})\n"
        "print(bad)\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
