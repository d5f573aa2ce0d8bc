"""API tokens moved to django-rest-knox, which stores only a digest (security review L4).

DRF's `authtoken` app is no longer installed; its table held every key in plain text, so
it is dropped (the keys stop working either way: people rotate a new token once).
"""

from django.db import migrations


def drop(apps, schema_editor):
    if "authtoken_token" in schema_editor.connection.introspection.table_names():
        schema_editor.execute("DROP TABLE authtoken_token")


class Migration(migrations.Migration):
    dependencies = [("dashboard", "0006_audit_truncate_no_hatch")]
    operations = [migrations.RunPython(drop, migrations.RunPython.noop)]
