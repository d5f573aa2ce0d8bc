from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("dashboard", "0007_drop_plaintext_api_tokens")]

    operations = [
        migrations.CreateModel(
            name="AuditOutbox",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("sequence", models.BigIntegerField(unique=True)),
                ("message", models.TextField()),
                ("created_at", models.DateTimeField()),
                ("attempts", models.IntegerField(default=0)),
                ("last_error", models.CharField(blank=True, max_length=300)),
            ],
            options={"ordering": ["sequence"]},
        ),
    ]
