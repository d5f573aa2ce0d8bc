"""Production settings: check --deploy is clean and responses carry the security headers."""

import os
import secrets
import subprocess
import sys

import pytest

from tests.conftest import REPO


def test_it_passes_the_deploy_checklist_with_production_settings(tmp_path):
    env = dict(os.environ)
    env.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)  # a test-only switch, never in deployment
    env.update(
        DEBUG="false",
        SECRET_KEY=secrets.token_urlsafe(64),
        FERRY_HTTPS="true",
        ALLOWED_HOSTS="ferry.example.internal",
        FERRY_DATA_DIR=str(tmp_path),
    )
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


@pytest.mark.django_db
def test_it_sends_security_headers_and_no_inline_scripts(client, make_user):
    client.force_login(make_user("v", "viewer"))
    response = client.get("/")
    csp = response["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert "unsafe-inline" not in csp.split("script-src")[1].split(";")[0]
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Referrer-Policy"] == "same-origin"
    assert response["X-Frame-Options"] == "DENY"


@pytest.mark.django_db
def test_it_serves_swagger_ui_from_local_files(client, make_user):
    client.force_login(make_user("v", "viewer"))
    page = client.get("/api/docs/").content.decode()
    assert "cdn" not in page.lower() and "/static/" in page
