"""Roles scoped to host groups (RoleGrant) and the person behind an account (AccountIdentity)."""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("dashboard", "0008_gate_audit_outbox"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name="AccountIdentity",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("source", models.CharField(choices=[("local", "local account"), ("oidc", "OpenID Connect"), ("ldap", "LDAP")], default="local", max_length=8)),
                ("subject", models.CharField(blank=True, help_text="the IdP's subject (sub/DN)", max_length=255)),
                ("email_verified", models.BooleanField(default=False)),
                ("person", models.CharField(blank=True, help_text="an explicit link: accounts with the same value are one person", max_length=150)),
                ("updated_at", models.DateTimeField(auto_now=True)),
                ("user", models.OneToOneField(on_delete=django.db.models.deletion.CASCADE, related_name="identity", to=settings.AUTH_USER_MODEL)),
            ],
        ),
        migrations.CreateModel(
            name="RoleGrant",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("role", models.CharField(max_length=16)),
                ("host_group", models.CharField(max_length=100)),
                ("source", models.CharField(default="local", max_length=8)),
                ("created_at", models.DateTimeField(auto_now_add=True)),
                ("user", models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name="role_grants", to=settings.AUTH_USER_MODEL)),
            ],
            options={"ordering": ["user_id", "role", "host_group"]},
        ),
        migrations.AddConstraint(
            model_name="rolegrant",
            constraint=models.UniqueConstraint(fields=("user", "role", "host_group"), name="role_grant_unique"),
        ),
    ]
