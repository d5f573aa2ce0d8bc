"""Status links and notifications, moved here from the dashboard app with their tables.

State only: the tables (dashboard_sharelink, dashboard_notification*, dashboard_delivery*)
were created by dashboard 0003 and keep their names and rows."""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('migrations_app', '0002_runs'),
        ('dashboard', '0005_move_plan_features'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name='NotificationDelivery',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('event', models.CharField(max_length=20)),
                        ('plan_id', models.BigIntegerField(blank=True, null=True)),
                        ('body', models.TextField()),
                        ('status', models.CharField(choices=[('pending', 'pending'), ('delivered', 'delivered'), ('failed', 'failed (gave up)')], default='pending', max_length=10)),
                        ('attempts', models.PositiveIntegerField(default=0)),
                        ('created_at', models.DateTimeField(auto_now_add=True)),
                        ('delivered_at', models.DateTimeField(blank=True, null=True)),
                        ('next_attempt_at', models.DateTimeField(blank=True, null=True)),
                        ('last_error', models.TextField(blank=True)),
                    ],
                    options={
                        'db_table': 'dashboard_notificationdelivery',
                        'ordering': ['-id'],
                    },
                ),
                migrations.CreateModel(
                    name='DeliveryAttempt',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('number', models.PositiveIntegerField()),
                        ('at', models.DateTimeField(auto_now_add=True)),
                        ('ok', models.BooleanField(default=False)),
                        ('status_code', models.PositiveIntegerField(blank=True, null=True)),
                        ('error', models.TextField(blank=True)),
                        ('duration_ms', models.PositiveIntegerField(default=0)),
                        ('delivery', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='attempt_log', to='migrations_app.notificationdelivery')),
                    ],
                    options={
                        'db_table': 'dashboard_deliveryattempt',
                        'ordering': ['delivery_id', 'number'],
                    },
                ),
                migrations.CreateModel(
                    name='NotificationSubscription',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('kind', models.CharField(choices=[('webhook', 'webhook'), ('email', 'email')], max_length=8)),
                        ('target', models.CharField(help_text='webhook URL or email address', max_length=500)),
                        ('secret', models.CharField(blank=True, max_length=100)),
                        ('events', models.JSONField(blank=True, default=list, help_text='empty: every event')),
                        ('active', models.BooleanField(default=True)),
                        ('created_at', models.DateTimeField(auto_now_add=True)),
                        ('created_by', models.ForeignKey(null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to=settings.AUTH_USER_MODEL)),
                        ('plan', models.ForeignKey(blank=True, help_text='empty: every plan', null=True, on_delete=django.db.models.deletion.CASCADE, related_name='subscriptions', to='migrations_app.migrationplan')),
                    ],
                    options={
                        'db_table': 'dashboard_notificationsubscription',
                        'ordering': ['id'],
                    },
                ),
                migrations.AddField(
                    model_name='notificationdelivery',
                    name='subscription',
                    field=models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='deliveries', to='migrations_app.notificationsubscription'),
                ),
                migrations.CreateModel(
                    name='ShareLink',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('token_hash', models.CharField(max_length=64, unique=True)),
                        ('token_prefix', models.CharField(max_length=8)),
                        ('label', models.CharField(blank=True, max_length=200)),
                        ('show_host_names', models.BooleanField(default=False)),
                        ('created_by_name', models.CharField(max_length=150)),
                        ('created_at', models.DateTimeField(auto_now_add=True)),
                        ('expires_at', models.DateTimeField(blank=True, null=True)),
                        ('revoked_at', models.DateTimeField(blank=True, null=True)),
                        ('revoked_by_name', models.CharField(blank=True, max_length=150)),
                        ('created_by', models.ForeignKey(null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to=settings.AUTH_USER_MODEL)),
                        ('plan', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='share_links', to='migrations_app.migrationplan')),
                    ],
                    options={
                        'db_table': 'dashboard_sharelink',
                        'ordering': ['-created_at', '-id'],
                    },
                ),
            ],
            database_operations=[],
        ),
    ]
