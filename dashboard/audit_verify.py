"""Verifying the audit chain: recompute every hash in sequence order, streaming.

Each row is checked three ways: its sequence follows the previous one (a gap means rows
were deleted), its prev_hash equals the previous row's hash (a mismatch means a row was
deleted, inserted or moved), and its hash equals the recomputed hash of its own content
(a mismatch means the row was edited, or renumbered to make room). The first failure is
reported. What a chain alone cannot show is a cut-off tail or rows appended by someone who
can write the table; `expect_head` (a sequence and hash noted elsewhere, e.g. in a change
record) closes the first gap.
"""

import time
from collections.abc import Callable
from dataclasses import dataclass

from dashboard.audit import GENESIS_HASH, HASHED_FIELDS, event_hash
from dashboard.models import AuditEvent


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


def _rows(chunk_size: int):
    # values_list avoids building model instances; iterator() streams (a server-side
    # cursor on PostgreSQL, chunked fetches on SQLite) so memory stays flat at any size.
    return (
        AuditEvent.objects.order_by("sequence")
        .values_list(*HASHED_FIELDS, "hash")
        .iterator(chunk_size=chunk_size)
    )


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
        if event_hash(fields) != stored:
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
