"""Verifying the audit chain: recompute every hash in sequence order, streaming.

Each row is checked three ways: its sequence follows the previous one (a gap means rows
were deleted), its prev_hash equals the previous row's hash (a mismatch means a row was
deleted, inserted or moved), and its hash equals the recomputed hash of its own content
(a mismatch means the row was edited, or renumbered to make room). The first failure is
reported. What a chain alone cannot show is a cut-off tail or rows appended by someone who
can write the table; `expect_head` (a sequence and hash noted elsewhere, e.g. in a change
record) closes the first gap.
"""

import datetime as dt
import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass

from django.db import connection

from dashboard.audit.models import AuditEvent
from dashboard.audit.record import GENESIS_HASH, HASHED_FIELDS, event_hash

# The same serialization as dashboard.audit.record.canonical_bytes (every value here is already a
# JSON type, so DjangoJSONEncoder's extras are never needed), built once instead of per row.
_ENCODER = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)
_JSON_FIELDS = frozenset({"before", "after"})
_COLUMNS = (*HASHED_FIELDS, "hash")


@dataclass
class VerifyResult:
    """The outcome of one verification."""

    ok: bool
    checked: int
    seconds: float
    head_sequence: int | None = None
    head_hash: str = ""
    broken_sequence: int | None = None
    problem: str = ""


def _utc_text(value) -> str:
    """created_at as canonical_bytes writes it, from what the database driver returned."""
    if isinstance(value, str):  # SQLite: naive UTC text 'YYYY-MM-DD HH:MM:SS[.ffffff]'
        if len(value) == 26 and value[10] == " ":
            return f"{value[:10]}T{value[11:]}Z"
        if len(value) == 19 and value[10] == " ":
            return f"{value[:10]}T{value[11:]}.000000Z"
        value = dt.datetime.fromisoformat(value)
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _fast_hash(fields: dict) -> str:
    """event_hash over raw column values (JSON as text, time as the driver gives it)."""
    data = dict(fields)
    data["created_at"] = _utc_text(data["created_at"])
    for name in _JSON_FIELDS:
        if data[name] is not None:
            data[name] = json.loads(data[name])
    return hashlib.sha256(_ENCODER.encode(data).encode("utf-8")).hexdigest()


def _exact_hash(sequence: int) -> str:
    """event_hash of one row read through the ORM: the reference the fast path must match."""
    row = AuditEvent.objects.filter(sequence=sequence).values(*HASHED_FIELDS).get()
    return event_hash(row)


def _rows(chunk_size: int):
    """Raw rows in sequence order, streamed (a server-side cursor on PostgreSQL).

    A raw cursor skips the ORM's per-row conversions, which cost as much as hashing; a
    row whose fast hash disagrees is re-read through the ORM before being called broken.
    """
    table = connection.ops.quote_name(AuditEvent._meta.db_table)
    columns = ", ".join(connection.ops.quote_name(name) for name in _COLUMNS)
    sql = f"SELECT {columns} FROM {table} ORDER BY {connection.ops.quote_name('sequence')}"  # noqa: S608 - names only
    if connection.vendor == "postgresql":
        with connection.chunked_cursor() as cursor:
            cursor.execute(sql)
            while batch := cursor.fetchmany(chunk_size):
                yield from batch
        return
    with connection.cursor() as cursor:
        cursor.execute(sql)
        while batch := cursor.fetchmany(chunk_size):
            yield from batch


def audit_chain_verify(
    *,
    chunk_size: int = 10_000,
    expect_head: tuple[int, str] | None = None,
    progress: Callable[[int], None] | None = None,
) -> VerifyResult:
    """Walk the whole chain and report the first broken link."""
    started = time.perf_counter()
    names = HASHED_FIELDS
    prev_sequence = 0
    prev_hash = GENESIS_HASH
    checked = 0
    seen_expected_head = expect_head is None

    def result(ok: bool, broken=None, problem: str = "") -> VerifyResult:
        return VerifyResult(
            ok=ok,
            checked=checked,
            seconds=time.perf_counter() - started,
            head_sequence=prev_sequence or None,
            head_hash=prev_hash if prev_sequence else "",
            broken_sequence=broken,
            problem=problem,
        )

    for row in _rows(chunk_size):
        fields = dict(zip(names, row[:-1]))
        stored = row[-1]
        sequence = fields["sequence"]
        if sequence != prev_sequence + 1:
            return result(
                False,
                sequence,
                f"events #{prev_sequence + 1}..#{sequence - 1} are missing (deleted) "
                f"before #{sequence}"
                if sequence > prev_sequence + 1
                else f"event #{sequence} is out of order after #{prev_sequence}",
            )
        if fields["prev_hash"] != prev_hash:
            return result(
                False,
                sequence,
                f"event #{sequence} does not link to #{prev_sequence}: a row was deleted, "
                "inserted or reordered here",
            )
        if _fast_hash(fields) != stored and _exact_hash(sequence) != stored:
            return result(
                False,
                sequence,
                f"event #{sequence} was changed: its content no longer matches its hash",
            )
        prev_sequence, prev_hash = sequence, stored
        checked += 1
        if expect_head is not None and sequence == expect_head[0]:
            if stored != expect_head[1]:
                return result(False, sequence, f"event #{sequence} is not the expected head")
            seen_expected_head = True
        if progress is not None and checked % 100_000 == 0:
            progress(checked)
    if not seen_expected_head:
        return result(
            False,
            prev_sequence + 1,
            f"the chain ends at #{prev_sequence}, before the expected head "
            f"#{expect_head[0]}: events were removed from its end",
        )
    return result(True)
