from django.apps import AppConfig


class MigrationsAppConfig(AppConfig):
    """Plans, items, checks, placement, estimates, approvals and runs."""

    name = "migrations_app"
    verbose_name = "Migration plans"
