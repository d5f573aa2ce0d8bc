# One row per item and validation run for the check results (PL1, issue 19): the verdicts
# move from CheckResult rows into ItemCheckResults.results; 0013 then turns CheckResult
# into a view over them.

import django.db.models.deletion
from django.db import migrations, models

RESULTS_PER_ROW = 1000  # ItemCheckResults.RESULTS_PER_ROW
BATCH = 2000
VERDICT = ("check_id", "severity", "message", "remedy", "evidence")  # one entry of results


def _flush(Rows, batch):
    Rows.objects.bulk_create(batch, batch_size=BATCH)
    batch.clear()


def results_compression(apps, schema_editor):
    """PostgreSQL: compress the verdicts with lz4 where the server has it (PostgreSQL 14+
    built with lz4). A row is ~4 KB of JSON, over TOAST's threshold; pglz, the default,
    made storing 10,000 of them take 2.0 s instead of 0.7 s."""
    connection = schema_editor.connection
    if connection.vendor != "postgresql":
        return
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT 1 FROM pg_settings WHERE name = 'default_toast_compression' "
            "AND 'lz4' = ANY(enumvals)"
        )
        if cursor.fetchone() is None:
            return
    model = apps.get_model("migrations_app", "ItemCheckResults")
    table = schema_editor.quote_name(model._meta.db_table)
    schema_editor.execute(f"ALTER TABLE {table} ALTER COLUMN results SET COMPRESSION lz4")


def results_to_rows(apps, schema_editor):
    """Each run of consecutive results (in id order) of one run, item and VM name becomes
    one row, so reading them back by id keeps their order."""
    CheckResult = apps.get_model("migrations_app", "CheckResult")
    Rows = apps.get_model("migrations_app", "ItemCheckResults")
    batch, current, key = [], None, None
    fields = ("run_id", "item_id", "vm_name", *VERDICT)
    for row in CheckResult.objects.order_by("id").values_list(*fields).iterator(chunk_size=BATCH):
        if current is None or row[:3] != key or len(current.results) >= RESULTS_PER_ROW:
            if len(batch) >= BATCH:
                _flush(Rows, batch)
            key = row[:3]
            current = Rows(run_id=row[0], item_id=row[1], vm_name=row[2], results=[])
            batch.append(current)
        current.results.append(list(row[3:]))
    _flush(Rows, batch)


def rows_to_results(apps, schema_editor):
    CheckResult = apps.get_model("migrations_app", "CheckResult")
    Rows = apps.get_model("migrations_app", "ItemCheckResults")
    batch = []
    for row in Rows.objects.order_by("id").iterator(chunk_size=BATCH):
        batch.extend(
            CheckResult(
                run_id=row.run_id,
                item_id=row.item_id,
                vm_name=row.vm_name,
                **dict(zip(VERDICT, verdict, strict=True)),
            )
            for verdict in row.results
        )
        if len(batch) >= BATCH:
            _flush(CheckResult, batch)
    _flush(CheckResult, batch)


class Migration(migrations.Migration):
    dependencies = [
        ("migrations_app", "0011_campaigns_models"),
    ]

    operations = [
        migrations.CreateModel(
            name="ItemCheckResults",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("vm_name", models.CharField(blank=True, max_length=200)),
                ("results", models.JSONField(blank=True, default=list)),
                (
                    "item",
                    models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="check_result_sets",
                        to="migrations_app.planitem",
                    ),
                ),
                (
                    "run",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="item_results",
                        to="migrations_app.validationrun",
                    ),
                ),
            ],
            options={
                "ordering": ["id"],
            },
        ),
        migrations.RunPython(results_compression, migrations.RunPython.noop),
        migrations.RunPython(results_to_rows, rows_to_results),
    ]
