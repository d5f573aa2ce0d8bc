"""Fast row writes for the two bulk paths of planning (check results, placements).

Django's bulk_create/bulk_update build a model instance (or a CASE WHEN clause) per row,
which costs more than the checks themselves at 10,000 items x 18 checks. These helpers
(table and column names from model metadata, every value a query parameter)
send plain parameter tuples through `executemany` instead, still converting JSON values
through the model field so SQLite and PostgreSQL both get what they expect. They run in
the caller's transaction and audit nothing themselves.
"""

import gc
from contextlib import contextmanager

from django.core.serializers.json import DjangoJSONEncoder
from django.db import connection

from migrations_app.models import CheckResult, PlanItem

INSERT_BATCH = 1000


@contextmanager
def collector_paused():
    """Pause Python's cyclic garbage collector for one bulk computation.

    Checking 10,000 items allocates some 10^6 container objects (findings, evidence dicts,
    row tuples) that all stay alive until the run is stored; each allocation burst sets off
    a collection that walks every live object again, which was a third of PL1's time.
    Nothing here builds reference cycles worth collecting, and reference counting still
    frees everything as usual. The collector is switched back on (if it was on) on the way
    out, whatever happens.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _prep(model, name):
    field = model._meta.get_field(name)
    # The backend's own JSON adaptation (json.dumps on SQLite, Jsonb on PostgreSQL),
    # without the per-value trip through Field.get_db_prep_save.
    adapt = connection.ops.adapt_json_value
    encoder = getattr(field, "encoder", None)
    return field.column, (lambda value: adapt(value, encoder))


def _evidence_encoder():
    """One JSON encoder for every evidence value of a run: json.dumps(cls=...) builds a new
    one per call, which was two thirds of the time COPY took for 200,000 results."""
    encoder = CheckResult._meta.get_field("evidence").encoder or DjangoJSONEncoder
    return encoder(separators=(",", ":")).encode


def check_results_insert(run_id: int, rows) -> int:
    """Insert (item_id, vm_name, check_id, severity, message, remedy, evidence) rows."""
    names = ("run", "item", "vm_name", "check_id", "severity", "message", "remedy", "evidence")
    columns = [_prep(CheckResult, n)[0] for n in names]
    quote = connection.ops.quote_name
    head = (
        f"INSERT INTO {quote(CheckResult._meta.db_table)} "  # noqa: S608 - names from _meta
        f"({', '.join(quote(c) for c in columns)}) VALUES "
    )
    one = "(" + ", ".join(["%s"] * len(columns)) + ")"
    if connection.vendor == "postgresql":
        return _copy_results(run_id, columns, rows)
    # SQLite keeps JSON as text: one encoder for every row, as COPY does (json.dumps with
    # cls= builds a new encoder per value).
    encode = _evidence_encoder()
    params = [(run_id, *row[:6], encode(row[6])) for row in rows]
    # Many rows per statement (fewer round trips than executemany), well under SQLite's
    # 32,766 parameters.
    with connection.cursor() as cursor:
        for start in range(0, len(params), INSERT_BATCH):
            batch = params[start : start + INSERT_BATCH]
            cursor.execute(head + ", ".join([one] * len(batch)), [v for row in batch for v in row])
    return len(params)


def _copy_results(run_id: int, columns: list, rows) -> int:
    """PostgreSQL: COPY the rows (INSERT with thousands of parameters was ~20x slower)."""
    table = connection.ops.quote_name(CheckResult._meta.db_table)
    names = ", ".join(connection.ops.quote_name(c) for c in columns)
    count = 0
    encode = _evidence_encoder()
    with connection.cursor() as cursor:
        raw = cursor.cursor  # the psycopg cursor under Django's wrapper
        with raw.copy(f"COPY {table} ({names}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row((run_id, *row[:6], encode(row[6])))
                count += 1
    return count


def placements_write(rows) -> None:
    """Update (item_id, destination_host_id or None, chosen_by, note) rows; a None
    destination leaves the item's destination as it was and only stores the note."""
    quote = connection.ops.quote_name
    table = quote(PlanItem._meta.db_table)
    note = _prep(PlanItem, "placement_note")[1]
    rows = list(rows)
    placed = [(dest, chosen, note(n), pk) for pk, dest, chosen, n in rows if dest is not None]
    unplaced = [(note(n), pk) for pk, dest, _chosen, n in rows if dest is None]
    with connection.cursor() as cursor:
        if placed:
            cursor.executemany(
                f"UPDATE {table} SET {quote('destination_host_id')} = %s, "  # noqa: S608
                f"{quote('destination_chosen_by')} = %s, {quote('placement_note')} = %s "
                f"WHERE {quote('id')} = %s",
                placed,
            )
        if unplaced:
            cursor.executemany(
                f"UPDATE {table} SET {quote('placement_note')} = %s WHERE {quote('id')} = %s",  # noqa: S608
                unplaced,
            )
