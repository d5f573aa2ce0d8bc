"""audit_verify passes on a clean chain and finds each kind of tampering (raw SQL)."""

import io
import json

import pytest
from django.core.management import call_command

from dashboard.audit.bulk import audit_bulk_append
from dashboard.audit.models import AuditEvent
from dashboard.audit.record import GENESIS_HASH, event_hash
from dashboard.audit.verify import audit_chain_verify
from tests.dashboard.audit.conftest import tamper

pytestmark = pytest.mark.django_db


def _verify_command(*args) -> tuple[int, str]:
    out, err = io.StringIO(), io.StringIO()
    try:
        call_command("audit_verify", *args, stdout=out, stderr=err)
    except SystemExit as exc:
        return int(exc.code), err.getvalue()
    return 0, out.getvalue()


def test_it_passes_on_a_clean_chain(chain):
    code, output = _verify_command()
    assert code == 0 and "OK: 10 events verified" in output
    result = audit_chain_verify()
    assert result.ok and result.head_sequence == 10


def test_it_passes_on_an_empty_trail(db):
    code, output = _verify_command()
    assert code == 0 and "empty" in output


def test_it_finds_an_edited_row(chain):
    tamper("UPDATE dashboard_auditevent SET actor_name = 'mallory' WHERE sequence = 4")
    code, output = _verify_command()
    assert code == 1 and "#4" in output and "changed" in output


def test_it_finds_an_edited_json_value(chain):
    tamper(
        "UPDATE dashboard_auditevent SET after = %s WHERE sequence = 6",
        [json.dumps({"n": 99, "nested": {"b": [1, 2.5, None], "a": "é"}})],
    )
    result = audit_chain_verify()
    assert not result.ok and result.broken_sequence == 6


def test_it_finds_an_edit_whose_hash_was_recomputed(chain):
    row = AuditEvent.objects.get(sequence=5)
    fields = {f.name: getattr(row, f.name) for f in AuditEvent._meta.fields}
    fields["reason"] = "rewritten"
    new_hash = event_hash(fields)
    tamper(
        "UPDATE dashboard_auditevent SET reason = 'rewritten', hash = %s WHERE sequence = 5",
        [new_hash],
    )
    result = audit_chain_verify()
    assert not result.ok and result.broken_sequence == 6 and "does not link" in result.problem


def test_it_finds_a_deleted_row(chain):
    tamper("DELETE FROM dashboard_auditevent WHERE sequence = 3")
    result = audit_chain_verify()
    assert not result.ok and result.broken_sequence == 4 and "missing" in result.problem


def test_it_finds_a_deleted_row_with_the_rest_renumbered(chain):
    tamper("DELETE FROM dashboard_auditevent WHERE sequence = 3")
    for sequence in range(4, 11):
        tamper(
            "UPDATE dashboard_auditevent SET sequence = %s WHERE sequence = %s",
            [sequence - 1, sequence],
        )
    result = audit_chain_verify()
    assert not result.ok and result.broken_sequence == 3


def test_it_finds_an_inserted_row(chain):
    # Make room after #5 and insert a forged event whose own hash is right.
    for sequence in range(10, 5, -1):
        tamper(
            "UPDATE dashboard_auditevent SET sequence = %s WHERE sequence = %s",
            [sequence + 1, sequence],
        )
    prev = AuditEvent.objects.get(sequence=5)
    forged = {f.name: getattr(prev, f.name) for f in AuditEvent._meta.fields if f.name != "id"}
    forged.update(sequence=6, action="plan.approve", actor_name="mallory", prev_hash=prev.hash)
    forged["hash"] = event_hash(forged)
    tamper(
        "INSERT INTO dashboard_auditevent (sequence, created_at, actor_type, actor_name, action,"
        " object_type, object_id, object_repr, reason, request_id, source_address, user_agent,"
        " prev_hash, hash) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
        [
            forged[name]
            for name in (
                "sequence",
                "created_at",
                "actor_type",
                "actor_name",
                "action",
                "object_type",
                "object_id",
                "object_repr",
                "reason",
                "request_id",
                "source_address",
                "user_agent",
                "prev_hash",
                "hash",
            )
        ],
    )
    result = audit_chain_verify()
    # The forged row's before/after are NULL where the original had values: either the
    # forged row itself or the renumbered row after it breaks the chain.
    assert not result.ok and result.broken_sequence in (6, 7)


def test_it_finds_reordered_rows(chain):
    tamper("UPDATE dashboard_auditevent SET sequence = 1000 WHERE sequence = 7")
    tamper("UPDATE dashboard_auditevent SET sequence = 7 WHERE sequence = 8")
    tamper("UPDATE dashboard_auditevent SET sequence = 8 WHERE sequence = 1000")
    result = audit_chain_verify()
    assert not result.ok and result.broken_sequence == 7


def test_it_finds_a_cut_tail_only_with_an_expected_head(chain):
    head = AuditEvent.objects.get(sequence=10)
    tamper("DELETE FROM dashboard_auditevent WHERE sequence >= 9")
    assert audit_chain_verify().ok  # a chain alone cannot see its end cut off
    code, output = _verify_command("--expect-head", f"10:{head.hash}")
    assert code == 1 and "removed from its end" in output


def test_it_continues_the_chain_with_the_bulk_loader(chain):
    written = audit_bulk_append(
        {"action": "bulk.event", "object_id": str(n), "after": {"n": n}} for n in range(25)
    )
    assert written == 25
    result = audit_chain_verify(chunk_size=7)
    assert result.ok and result.checked == 35


def test_it_starts_a_chain_from_genesis_with_the_bulk_loader(db):
    audit_bulk_append([{"action": "first"}])
    assert AuditEvent.objects.get().prev_hash == GENESIS_HASH


def test_its_fast_path_agrees_with_event_hash_on_awkward_values(db, monkeypatch):
    import datetime as dt

    from dashboard.audit import verify as audit_verify

    awkward = [
        {"action": "a", "created_at": dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)},
        {
            "action": "b",
            "after": {"z": 1, "a": [1.5, 1e-7, 2**53, None, True]},
            "reason": '🚀 ü\n\t"',
        },
        {"action": "c", "before": [], "after": {}, "object_repr": "x" * 300},
        {"action": "d", "before": {"k": {"nested": {"deeper": "é"}}}, "actor_user_id": 7},
    ]
    audit_bulk_append(awkward)
    # Any disagreement would be caught by the ORM re-check; forbid that here so the fast
    # path itself is what must be right.
    monkeypatch.setattr(audit_verify, "_exact_hash", lambda sequence: "")
    result = audit_chain_verify()
    assert result.ok, result.problem
