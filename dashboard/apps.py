from django.apps import AppConfig


class DashboardConfig(AppConfig):
    """The project and its platform: roles, the audit trail, live plumbing, the runtime."""

    name = "dashboard"
    verbose_name = "Ferry dashboard"

    def ready(self):
        from django_tasks.signals import task_enqueued

        # Login success/failure go to the audit trail and the lockout counter.
        from dashboard.accounts import signals  # noqa: F401
        from dashboard.api import schema  # noqa: F401 - registers the token scheme's name
        from dashboard.runtime.worker import on_task_enqueued

        # Every enqueue wakes idle database-queue workers at once (see runtime.worker).
        task_enqueued.connect(on_task_enqueued, dispatch_uid="ferry-wake-workers")
