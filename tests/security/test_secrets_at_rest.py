"""L4 (security review): the embedded data directory and SQLite file were world-readable
and held plaintext API tokens that never expired. Now the directory is 0700 and the file
0600, and API tokens are django-rest-knox tokens: shown once, stored as a digest, expiring.
"""

import os
import stat
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone
from knox.models import AuthToken
from rest_framework.test import APIClient

from dashboard.env import private_dir, private_file

REPO = Path(__file__).resolve().parents[2]


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_it_creates_the_data_directory_0700_and_the_database_0600(tmp_path):
    data = tmp_path / "var"
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env.update(FERRY_DATA_DIR=str(data), DJANGO_SETTINGS_MODULE="dashboard.settings")
    subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"], cwd=REPO, env=env, check=True
    )
    assert _mode(data) == 0o700
    assert _mode(data / "ferry.sqlite3") == 0o600
    assert _mode(data / "secret_key") == 0o600


def test_it_tightens_a_data_directory_made_before(tmp_path):
    loose = tmp_path / "old"
    loose.mkdir(mode=0o755)
    (loose / "ferry.sqlite3").write_text("")
    os.chmod(loose / "ferry.sqlite3", 0o644)
    private_dir(loose)
    private_file(loose / "ferry.sqlite3")
    assert _mode(loose) == 0o700 and _mode(loose / "ferry.sqlite3") == 0o600


@pytest.mark.django_db
def test_it_stores_api_tokens_hashed_shows_them_once_and_expires_them(make_user, settings):
    user = make_user("ivy", "viewer")
    client = APIClient()
    client.force_authenticate(user)
    made = client.post("/api/v1/auth/token/")
    assert made.status_code == 201
    key = made.json()["key"]
    assert made.json()["expires"] is not None
    row = AuthToken.objects.get(user=user)
    assert key not in (row.digest, row.token_key) and len(row.digest) == 128
    state = client.get("/api/v1/auth/token/").json()
    assert state["exists"] is True and "key" not in state
    by_token = APIClient()
    by_token.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    assert by_token.get("/api/v1/hosts/").status_code == 200
    AuthToken.objects.filter(user=user).update(expiry=timezone.now() - timedelta(seconds=1))
    assert by_token.get("/api/v1/hosts/").status_code in (401, 403)
