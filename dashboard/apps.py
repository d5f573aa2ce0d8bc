from django.apps import AppConfig


class DashboardConfig(AppConfig):
    """Project wiring, roles, the audit trail and the UI shell."""

    name = "dashboard"
    verbose_name = "Ferry dashboard"

    def ready(self):
        # Login success/failure go to the audit trail and the lockout counter.
        from dashboard import auth_signals  # noqa: F401
