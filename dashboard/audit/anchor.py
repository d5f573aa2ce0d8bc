"""Anchoring the audit chain's head outside the database (security review M3).

The chain proves that no event was edited, removed or inserted between two others; it
cannot show a cut-off tail, or a chain rebuilt from scratch by someone who can write the
table, without a head noted somewhere the database cannot reach. So Ferry notes it itself:

- after a commit that appended events, at most every FERRY_AUDIT_ANCHOR_SECONDS, the head
  (sequence, hash, time) is written to `head.json` in FERRY_AUDIT_ANCHOR_DIR (under the
  data directory by default), signed with HMAC-SHA256 under a key that is not in the
  database (FERRY_AUDIT_ANCHOR_KEY, or a generated file beside the secret key);
- every anchor is also appended to `anchors.jsonl` there and, when FERRY_AUDIT_ANCHOR_SINK
  names a file (another disk, a WORM mount, a log shipper's input), to that file;
- `manage.py audit_verify` checks the chain against the latest anchor by default.

An attacker who holds the database credentials but not the anchor key cannot forge an
anchor, and one who rewrites the chain cannot make it end in the anchored head.
"""

import fcntl
import hashlib
import hmac
import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.utils import timezone

logger = logging.getLogger("ferry.audit.anchor")
HEAD = "head.json"
HISTORY = "anchors.jsonl"


class AnchorInvalid(Exception):
    """An anchor file whose signature does not verify (forged, or another key)."""


@dataclass(frozen=True)
class Anchor:
    """A signed note of the chain's head at one moment."""

    sequence: int
    hash: str
    at: str

    def payload(self) -> bytes:
        return json.dumps(
            {"sequence": self.sequence, "hash": self.hash, "at": self.at},
            sort_keys=True,
            separators=(",", ":"),
        ).encode("utf-8")


def _key() -> bytes:
    key = getattr(settings, "FERRY_AUDIT_ANCHOR_KEY", "")
    if not key:
        raise AnchorInvalid("FERRY_AUDIT_ANCHOR_KEY is empty: anchors cannot be signed")
    return key.encode("utf-8")


def anchor_dir() -> Path:
    return Path(settings.FERRY_AUDIT_ANCHOR_DIR)


def anchor_sign(anchor: Anchor) -> str:
    return hmac.new(_key(), anchor.payload(), hashlib.sha256).hexdigest()


def anchor_line(anchor: Anchor) -> str:
    return json.dumps(
        {
            "sequence": anchor.sequence,
            "hash": anchor.hash,
            "at": anchor.at,
            "mac": anchor_sign(anchor),
        },
        sort_keys=True,
    )


def anchor_parse(text: str) -> Anchor:
    """The anchor in one line of JSON, its signature checked; AnchorInvalid if it fails."""
    try:
        data = json.loads(text)
        anchor = Anchor(int(data["sequence"]), str(data["hash"]), str(data["at"]))
        mac = str(data["mac"])
    except (ValueError, KeyError, TypeError):
        raise AnchorInvalid("the anchor is not a signed head (sequence, hash, at, mac)") from None
    if not hmac.compare_digest(mac, anchor_sign(anchor)):
        raise AnchorInvalid(
            f"the anchor of event #{anchor.sequence} does not verify with this server's "
            "FERRY_AUDIT_ANCHOR_KEY (forged, or signed with another key)"
        )
    return anchor


def anchor_latest(path: Path | None = None) -> Anchor | None:
    """The latest anchor (or the one in `path`), checked; None when there is none yet."""
    path = path or anchor_dir() / HEAD
    if not path.exists():
        return None
    lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return anchor_parse(lines[-1]) if lines else None


def anchor_write(*, force: bool = False) -> Anchor | None:
    """Anchor the current head now (`force`) or when the last anchor is old enough.

    Several processes anchor into one directory: a lock file serializes them, and an
    anchor never moves the head backwards.
    """
    from dashboard.audit.models import AuditEvent

    directory = anchor_dir()
    head_path = directory / HEAD
    interval = float(getattr(settings, "FERRY_AUDIT_ANCHOR_SECONDS", 60))
    if not force and head_path.exists() and time.time() - head_path.stat().st_mtime < interval:
        return None
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    with open(directory / ".lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        tail = AuditEvent.objects.order_by("-sequence").values("sequence", "hash").first()
        if tail is None:
            return None
        try:
            current = anchor_latest(head_path)
        except AnchorInvalid:
            current = None  # a forged or foreign head is replaced (verify reports it first)
        if current is not None and current.sequence >= tail["sequence"]:
            if current.sequence == tail["sequence"]:
                os.utime(head_path)
            return current
        anchor = Anchor(tail["sequence"], tail["hash"], timezone.now().isoformat())
        line = anchor_line(anchor) + "\n"
        temporary = directory / f".{HEAD}.{os.getpid()}"
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(line)
        os.replace(temporary, head_path)
        _append(directory / HISTORY, line)
        sink = getattr(settings, "FERRY_AUDIT_ANCHOR_SINK", "")
        if sink:
            _append(Path(sink), line)
        logger.info("audit anchor #%s %s", anchor.sequence, anchor.hash)
    return anchor


def _append(path: Path, line: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    with os.fdopen(fd, "a", encoding="utf-8") as handle:
        handle.write(line)


def anchor_after_commit() -> None:
    """Called after a commit that appended events: anchor when the last one is old enough.
    A failure is logged, never raised: the change that committed stands."""
    try:
        anchor_write()
    except Exception:  # a full disk must not break the request that already committed
        logger.exception("could not write the audit anchor")
