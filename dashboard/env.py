"""Strict helpers that read settings from the environment (every variable is in .env.example)."""

import os
import secrets

from django.core.exceptions import ImproperlyConfigured

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def env_str(name: str, default: str | None = None) -> str | None:
    """The variable as text, or the default when unset."""
    value = os.environ.get(name)
    return default if value is None else value.strip()


def env_bool(name: str, default: bool) -> bool:
    """A boolean that accepts 1/0, true/false, yes/no, on/off and refuses anything else."""
    value = os.environ.get(name)
    if value is None:
        return default
    lowered = value.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name}={value!r} is not a boolean (use true or false)")


def env_int(name: str, default: int, *, minimum: int | None = None) -> int:
    """An integer, refusing text that is not one and values under the minimum."""
    value = os.environ.get(name)
    if value is None or value.strip() == "":
        return default
    try:
        number = int(value.strip())
    except ValueError:
        raise ImproperlyConfigured(f"{name}={value!r} is not an integer") from None
    if minimum is not None and number < minimum:
        raise ImproperlyConfigured(f"{name}={number} is below the minimum {minimum}")
    return number


def env_float(name: str, default: float, *, minimum: float | None = None) -> float:
    """A number, refusing text that is not one and values under the minimum."""
    value = os.environ.get(name)
    if value is None or value.strip() == "":
        return default
    try:
        number = float(value.strip())
    except ValueError:
        raise ImproperlyConfigured(f"{name}={value!r} is not a number") from None
    if number != number or (minimum is not None and number < minimum):  # NaN or too small
        raise ImproperlyConfigured(f"{name}={value!r} is below the minimum {minimum}")
    return number


def env_list(name: str, default: list[str]) -> list[str]:
    """A comma-separated list; empty items are dropped."""
    value = os.environ.get(name)
    if value is None:
        return default
    return [item.strip() for item in value.split(",") if item.strip()]


def env_map(name: str, default: dict[str, str]) -> dict[str, str]:
    """A comma-separated list of name=value pairs (names are lower-cased)."""
    value = os.environ.get(name)
    if value is None or not value.strip():
        return default
    out = {}
    for item in value.split(","):
        key, sep, val = item.partition("=")
        if not sep or not key.strip() or not val.strip():
            raise ImproperlyConfigured(f"{name}: {item!r} is not name=value")
        out[key.strip().lower()] = val.strip()
    return out


def env_paths(name: str, default: list[str]) -> list[str]:
    """A list of directories separated by os.pathsep (':'); empty items are dropped."""
    value = os.environ.get(name)
    if value is None:
        return default
    return [item.strip() for item in value.split(os.pathsep) if item.strip()]


def env_choice(name: str, default: str, choices: tuple[str, ...]) -> str:
    """One of a fixed set of words."""
    value = (os.environ.get(name) or default).strip().lower()
    if value not in choices:
        raise ImproperlyConfigured(f"{name}={value!r} must be one of: {', '.join(choices)}")
    return value


def private_dir(path) -> None:
    """Create `path` (and parents) readable by its owner only; tighten an existing one."""
    os.makedirs(path, mode=0o700, exist_ok=True)
    if os.stat(path).st_mode & 0o077:
        os.chmod(path, 0o700)


def private_file(path) -> None:
    """Create `path` empty with mode 0600 if missing; tighten an existing one."""
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        if os.stat(path).st_mode & 0o077:
            os.chmod(path, 0o600)


def env_secret(name: str) -> str:
    """A secret from NAME or from the file NAME_FILE names ("" when neither is set)."""
    value = os.environ.get(name, "")
    if value:
        return value.strip()
    file_name = os.environ.get(f"{name}_FILE")
    if file_name:
        with open(file_name, encoding="utf-8") as handle:
            return handle.read().strip()
    return ""


def secret_from_env_or_file(name: str, fallback_path) -> str:
    """A secret from NAME, NAME_FILE, or a generated file kept outside the database (0600)."""
    value = os.environ.get(name)
    if value:
        return value.strip()
    file_name = os.environ.get(f"{name}_FILE")
    if file_name:
        with open(file_name, encoding="utf-8") as handle:
            return handle.read().strip()
    if fallback_path.exists():
        return fallback_path.read_text(encoding="utf-8").strip()
    private_dir(fallback_path.parent)
    generated = secrets.token_urlsafe(50)
    fd = os.open(fallback_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(generated)
    return generated
