"""Status links and notifications moved to the migrations_app app (they are plan features).

State only: the tables stay where they are, and migrations_app 0003 takes them over under
the same names (Meta.db_table), so no row is copied or lost."""

from django.db import migrations


class Migration(migrations.Migration):

    dependencies = [
        ('dashboard', '0004_audit_append_only'),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.RemoveField(
                    model_name='notificationdelivery',
                    name='subscription',
                ),
                migrations.RemoveField(
                    model_name='notificationsubscription',
                    name='created_by',
                ),
                migrations.RemoveField(
                    model_name='notificationsubscription',
                    name='plan',
                ),
                migrations.RemoveField(
                    model_name='sharelink',
                    name='created_by',
                ),
                migrations.RemoveField(
                    model_name='sharelink',
                    name='plan',
                ),
                migrations.DeleteModel(
                    name='DeliveryAttempt',
                ),
                migrations.DeleteModel(
                    name='NotificationDelivery',
                ),
                migrations.DeleteModel(
                    name='NotificationSubscription',
                ),
                migrations.DeleteModel(
                    name='ShareLink',
                ),
            ],
            database_operations=[],
        ),
    ]
