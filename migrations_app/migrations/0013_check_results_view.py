# CheckResult becomes a read-only view over ItemCheckResults: one row per verdict, its id
# the stored row's id * 1000 (ItemCheckResults.RESULTS_PER_ROW) + the verdict's index, so
# ordering by id is still the order the results were stored in. Reversible: going back
# recreates the table (0012's reverse then moves the verdicts back into it).

import django.db.models.deletion
from django.db import migrations, models

TABLE = "migrations_app_checkresult"
SOURCE = "migrations_app_itemcheckresults"

VIEWS = {
    "postgresql": f"""
        CREATE VIEW {TABLE} AS
        SELECT s.id * 1000 + e.n - 1 AS id, s.run_id, s.item_id, s.vm_name,
               e.v ->> 0 AS check_id, e.v ->> 1 AS severity, e.v ->> 2 AS message,
               e.v ->> 3 AS remedy, e.v -> 4 AS evidence
        FROM {SOURCE} s CROSS JOIN LATERAL jsonb_array_elements(s.results) WITH ORDINALITY AS e(v, n)
    """,
    "sqlite": f"""
        CREATE VIEW {TABLE} AS
        SELECT s.id * 1000 + e.key AS id, s.run_id, s.item_id, s.vm_name,
               json_extract(e.value, '$[0]') AS check_id,
               json_extract(e.value, '$[1]') AS severity,
               json_extract(e.value, '$[2]') AS message,
               json_extract(e.value, '$[3]') AS remedy,
               json_extract(e.value, '$[4]') AS evidence
        FROM {SOURCE} s, json_each(s.results) e
    """,
}


def table_to_view(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    if vendor not in VIEWS:
        raise NotImplementedError(f"Ferry runs on SQLite or PostgreSQL, not {vendor}")
    schema_editor.delete_model(apps.get_model("migrations_app", "CheckResult"))
    schema_editor.execute(VIEWS[vendor])


def view_to_table(apps, schema_editor):
    # `apps` is the state before this migration: CheckResult as the table it was.
    schema_editor.execute(f"DROP VIEW {TABLE}")
    schema_editor.create_model(apps.get_model("migrations_app", "CheckResult"))


class Migration(migrations.Migration):
    dependencies = [
        ("migrations_app", "0012_item_check_results"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[migrations.RunPython(table_to_view, view_to_table)],
            state_operations=[
                migrations.AlterField(
                    model_name="checkresult",
                    name="run",
                    field=models.ForeignKey(
                        db_constraint=False,
                        on_delete=django.db.models.deletion.DO_NOTHING,
                        related_name="results",
                        to="migrations_app.validationrun",
                    ),
                ),
                migrations.AlterField(
                    model_name="checkresult",
                    name="item",
                    field=models.ForeignKey(
                        blank=True,
                        db_constraint=False,
                        null=True,
                        on_delete=django.db.models.deletion.DO_NOTHING,
                        related_name="check_results",
                        to="migrations_app.planitem",
                    ),
                ),
                migrations.AlterField(
                    model_name="checkresult",
                    name="check_id",
                    field=models.CharField(max_length=40),
                ),
                migrations.AlterModelOptions(
                    name="checkresult",
                    options={"managed": False, "ordering": ["id"]},
                ),
                migrations.AlterModelTable(
                    name="checkresult",
                    table="migrations_app_checkresult",
                ),
            ],
        ),
    ]
