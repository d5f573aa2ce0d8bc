"""API routes of plans, approvals, runs, status links and notifications (registered into
/api/v1/ by dashboard.urls)."""

from rest_framework.routers import DefaultRouter

from migrations_app.api.plans import PlanViewSet
from migrations_app.api.runs import AttemptViewSet, ItemActionViewSet, RunViewSet
from migrations_app.notifications.api import DeliveryViewSet, SubscriptionViewSet
from migrations_app.sharing.api import ShareLinkViewSet

router = DefaultRouter()
router.register("plans", PlanViewSet, basename="plan")
# Execution: runs (with the numbered events range live clients use), attempts, item actions.
router.register("runs", RunViewSet, basename="run")
router.register("attempts", AttemptViewSet, basename="attempt")
router.register("items", ItemActionViewSet, basename="item-action")
router.register("share-links", ShareLinkViewSet, basename="share-link")
router.register(
    "notification-subscriptions", SubscriptionViewSet, basename="notification-subscription"
)
router.register("notification-deliveries", DeliveryViewSet, basename="notification-delivery")
