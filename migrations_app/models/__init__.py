"""Models of migration plans: plans and items, validation runs with check results,
approvals, status links, notification subscriptions, (execution) runs, attempts and
progress samples, placement rules and balance runs; maintenance campaigns and hooks."""

from migrations_app.models.approval import Approval  # noqa: F401
from migrations_app.models.balance import BalanceRun  # noqa: F401
from migrations_app.models.campaign import Campaign, CampaignStep, Hook, HookCall  # noqa: F401
from migrations_app.models.notifications import (  # noqa: F401
    DeliveryAttempt,
    NotificationDelivery,
    NotificationSubscription,
)
from migrations_app.models.plan import MigrationPlan, PlanItem  # noqa: F401
from migrations_app.models.rules import PlacementRule  # noqa: F401
from migrations_app.models.run import ItemAttempt, PlanRun, ProgressSample, RunEvent  # noqa: F401
from migrations_app.models.sharing import ShareLink  # noqa: F401
from migrations_app.models.validation import (  # noqa: F401
    CheckResult,
    ItemCheckResults,
    ValidationRun,
)
