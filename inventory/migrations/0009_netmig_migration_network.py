# A migration network address per host (netmig, issue 16): QEMU's data stream goes there.

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('inventory', '0008_perf_host_vm_count'),
    ]

    operations = [
        migrations.AddField(
            model_name='host',
            name='migration_network_address',
            field=models.CharField(blank=True, help_text="IP address or host name on the migration network for QEMU's data stream (empty: the management address)", max_length=255),
        ),
    ]
