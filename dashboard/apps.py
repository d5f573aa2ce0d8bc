from django.apps import AppConfig


class DashboardConfig(AppConfig):
    """Project wiring, roles, the audit trail and the UI shell."""

    name = "dashboard"
    verbose_name = "Ferry dashboard"
