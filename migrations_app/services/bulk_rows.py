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

from migrations_app.models import ItemCheckResults, PlanItem

INSERT_BATCH = 1000


@contextmanager
def collector_paused():
    """Pause Python's cyclic garbage collector for one bulk computation.

    Checking 10,000 items allocates some 10^6 container objects (findings, evidence dicts,
    row tuples) that all stay alive until the run is stored; each allocation burst sets off
    a collection that walks every live object again, which was a third of PL1's time.
    Nothing here builds reference cycles worth collecting, and reference counting still
    frees everything as usual. The collector is switched back on (if it was on) on the way
    out, whatever happens. Use it as a decorator of the whole service: the function's
    locals (snapshot, findings) are freed when it returns, before the collector is back,
    so its first collection does not walk them all once more.
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


def _results_encoder():
    """One JSON encoder for every row of a run: json.dumps(cls=...) builds a new one per
    call, which was two thirds of the time COPY took for 200,000 results."""
    encoder = ItemCheckResults._meta.get_field("results").encoder or DjangoJSONEncoder
    return encoder(separators=(",", ":")).encode


def check_results_insert(run_id: int, rows) -> int:
    """Store a run's verdicts: rows of (item_id, vm_name, [(check_id, severity, message,
    remedy, evidence), ...]), one ItemCheckResults row each (an item with more than
    RESULTS_PER_ROW verdicts takes several, in order). Returns how many verdicts."""
    names = ("run", "item", "vm_name", "results")
    columns = [_prep(ItemCheckResults, n)[0] for n in names]
    encode = _results_encoder()
    per_row = ItemCheckResults.RESULTS_PER_ROW
    params, count = [], 0
    for item_id, vm_name, verdicts in rows:
        count += len(verdicts)
        for start in range(0, len(verdicts), per_row):
            params.append((run_id, item_id, vm_name, encode(verdicts[start : start + per_row])))
    quote = connection.ops.quote_name
    table = quote(ItemCheckResults._meta.db_table)
    names_sql = ", ".join(quote(c) for c in columns)
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            # COPY: INSERT with thousands of parameters was ~20x slower.
            with cursor.cursor.copy(f"COPY {table} ({names_sql}) FROM STDIN") as copy:
                for row in params:
                    copy.write_row(row)
            return count
        # Many rows per statement (fewer round trips than executemany), well under SQLite's
        # 32,766 parameters.
        one = "(" + ", ".join(["%s"] * len(columns)) + ")"
        head = f"INSERT INTO {table} ({names_sql}) VALUES "  # noqa: S608 - names from _meta
        for start in range(0, len(params), INSERT_BATCH):
            batch = params[start : start + INSERT_BATCH]
            cursor.execute(head + ", ".join([one] * len(batch)), [v for row in batch for v in row])
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
