"""Models of migration plans: plans and items, validation runs with check results,
approvals, status links, notification subscriptions, and (execution) runs, attempts and
progress samples."""

from migrations_app.models.approval import Approval  # noqa: F401
from migrations_app.models.notifications import (  # noqa: F401
    DeliveryAttempt,
    NotificationDelivery,
    NotificationSubscription,
)
from migrations_app.models.plan import MigrationPlan, PlanItem  # noqa: F401
from migrations_app.models.run import ItemAttempt, PlanRun, ProgressSample, RunEvent  # noqa: F401
from migrations_app.models.sharing import ShareLink  # noqa: F401
from migrations_app.models.validation import CheckResult, ValidationRun  # noqa: F401
