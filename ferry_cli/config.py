"""Where the command line keeps the server URL and API token.

The file is $XDG_CONFIG_HOME/ferry/config.json (~/.config/ferry/config.json without the
variable), written with mode 0600 in a directory of mode 0700 because it holds a token.
FERRY_URL and FERRY_TOKEN override what the file says (scripts, CI jobs).
"""

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ferry_cli.errors import CliError, InputError


def config_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "ferry" / "config.json"


@dataclass
class Settings:
    url: str
    token: str
    user: str = ""


def normalize_url(url: str) -> str:
    url = (url or "").strip().rstrip("/")
    if not url.startswith(("http://", "https://")):
        raise InputError(f"The server URL must start with http:// or https:// (got '{url}').")
    return url


def read_file() -> dict:
    path = config_path()
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise CliError(f"Cannot read {path}: {exc}. Run `ferry login` again.") from None
    return data if isinstance(data, dict) else {}


def load() -> Settings:
    """The settings in force: environment first, then the file."""
    data = read_file()
    url = os.environ.get("FERRY_URL") or data.get("url") or ""
    token = os.environ.get("FERRY_TOKEN") or data.get("token") or ""
    if not url or not token:
        raise InputError(
            "Not logged in: run `ferry login --url URL` (or set FERRY_URL and FERRY_TOKEN)."
        )
    return Settings(url=normalize_url(url), token=token, user=data.get("user", ""))


def save(settings: Settings) -> Path:
    """Write the file atomically, readable by its owner only."""
    path = config_path()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(path.parent, 0o700)
    body = json.dumps({"url": settings.url, "token": settings.token, "user": settings.user})
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".config-")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(body + "\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def forget() -> bool:
    """Remove the token from the file (the URL stays); whether there was one."""
    data = read_file()
    had = bool(data.pop("token", None))
    if had:
        save(Settings(url=data.get("url", ""), token="", user=data.get("user", "")))
    return had
