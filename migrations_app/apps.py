from django.apps import AppConfig


class MigrationsAppConfig(AppConfig):
    """Plans, items, checks, placement, estimates, approvals, runs and plan features."""

    name = "migrations_app"
    verbose_name = "Migration plans"

    def ready(self):
        from dashboard.audit.selectors import audit_visibility_register
        from inventory.capacity import planned_memory_source_register

        # The run follows the plan's status through the workflow's signals.
        from migrations_app.execution import receivers  # noqa: F401
        from migrations_app.selectors.plans import plan_memory_changes_of_host

        # Host pages draw the memory each open plan will leave on the host.
        planned_memory_source_register(plan_memory_changes_of_host)

        # Every role that may view plans may read their audit events, except status links
        # and notification subscriptions (their tokens and targets stay with auditors).
        audit_visibility_register(
            prefix="migrations_app.",
            permission="plan.view",
            exclude=(
                "migrations_app.sharelink",
                "migrations_app.notificationsubscription",
                "migrations_app.notificationdelivery",
            ),
        )
