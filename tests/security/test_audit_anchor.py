"""M3 (security review): the chain's head is anchored outside the database, signed with a
key the database does not hold, and `audit_verify` checks the chain against the latest
anchor by default, so a cut-off tail or a chain rebuilt by someone who can write the
table is found without `--expect-head`.
"""

import json

import pytest
from django.core.management import call_command
from django.db import connection

from dashboard.audit.anchor import anchor_latest, anchor_write
from dashboard.audit.models import AuditEvent
from dashboard.audit.record import GENESIS_HASH, Actor, audit_record, event_hash

pytestmark = pytest.mark.django_db


def _events(n):
    for i in range(n):
        audit_record(actor=Actor.system(), action="test.event", object_type="thing", reason=str(i))


def _as_table_owner(sql_statements):
    """Tamper as the table's owner would (the test database's owner may disable triggers;
    Ferry's runtime role may not: test_audit_roles.py)."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("ALTER TABLE dashboard_auditevent DISABLE TRIGGER USER")
        for sql, params in sql_statements:
            cursor.execute(sql, params)
        if connection.vendor == "postgresql":
            cursor.execute("ALTER TABLE dashboard_auditevent ENABLE TRIGGER USER")


def _verify():
    try:
        call_command("audit_verify")
    except SystemExit as exc:
        return exc.code
    return 0


def test_it_anchors_the_head_after_commit_signed_and_to_the_sink(
    settings, tmp_path, django_capture_on_commit_callbacks
):
    settings.FERRY_AUDIT_ANCHOR_SINK = str(tmp_path / "sink.jsonl")
    with django_capture_on_commit_callbacks(execute=True):
        _events(3)
    anchor = anchor_latest()
    head = AuditEvent.objects.order_by("-sequence").first()
    assert (anchor.sequence, anchor.hash) == (head.sequence, head.hash)
    line = json.loads((tmp_path / "sink.jsonl").read_text().splitlines()[-1])
    assert line["sequence"] == head.sequence and len(line["mac"]) == 64
    assert _verify() == 0


def test_it_finds_a_cut_off_tail_without_expect_head(capsys):
    _events(5)
    anchor_write(force=True)
    last = AuditEvent.objects.order_by("-sequence").first().sequence
    _as_table_owner([("DELETE FROM dashboard_auditevent WHERE sequence >= %s", [last - 1])])
    assert _verify() == 1
    assert "removed from its end" in capsys.readouterr().err


def test_it_finds_a_rebuilt_chain_that_verifies_on_its_own(capsys):
    _events(4)
    anchor_write(force=True)
    # Rewrite event #2 and recompute every hash after it: the chain is consistent again.
    rows = list(AuditEvent.objects.order_by("sequence").values())
    rows[1]["reason"] = "rewritten"
    prev = GENESIS_HASH
    statements = []
    for row in rows:
        row["prev_hash"] = prev
        row["hash"] = event_hash(row)
        prev = row["hash"]
        statements.append(
            (
                "UPDATE dashboard_auditevent SET reason = %s, prev_hash = %s, hash = %s "
                "WHERE id = %s",
                [row["reason"], row["prev_hash"], row["hash"], row["id"]],
            )
        )
    _as_table_owner(statements)
    assert _verify_without_anchor() == 0, "the rebuilt chain is consistent by itself"
    assert _verify() == 1
    assert "not the expected head" in capsys.readouterr().err


def _verify_without_anchor():
    try:
        call_command("audit_verify", "--no-anchor")
    except SystemExit as exc:
        return exc.code
    return 0


def test_it_refuses_an_anchor_signed_with_another_key(settings, capsys):
    _events(2)
    anchor_write(force=True)
    settings.FERRY_AUDIT_ANCHOR_KEY = "another key"
    assert _verify() == 1
    assert "does not verify" in capsys.readouterr().err


def test_it_never_moves_the_anchor_backwards(settings):
    _events(3)
    first = anchor_write(force=True)
    assert anchor_write(force=True).sequence == first.sequence
    _events(1)
    assert anchor_write(force=True).sequence == first.sequence + 1
