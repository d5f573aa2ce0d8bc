"""Host.vm_count: the VMs recorded on a host, kept on its row (issue 19, W2)."""

from django.db import migrations, models
from django.db.models import Count, OuterRef, Subquery
from django.db.models.functions import Coalesce


def count_vms(apps, schema_editor):
    """Fill the new column once; from here on the sync and vm_record_move keep it."""
    Host = apps.get_model("inventory", "Host")
    VirtualMachine = apps.get_model("inventory", "VirtualMachine")
    counted = (
        VirtualMachine.objects.filter(host=OuterRef("pk"))
        .order_by()
        .values("host")
        .annotate(n=Count("id"))
        .values("n")
    )
    Host.objects.update(vm_count=Coalesce(Subquery(counted), 0))


class Migration(migrations.Migration):
    dependencies = [
        ("inventory", "0007_budgets"),
    ]

    operations = [
        migrations.AddField(
            model_name="host",
            name="vm_count",
            field=models.PositiveIntegerField(
                default=0,
                editable=False,
                help_text="VMs recorded on this host (missing ones included)",
            ),
        ),
        migrations.RunPython(count_vms, migrations.RunPython.noop),
    ]
