"""API routes of plans, approvals, runs, history, status links and notifications (registered
into /api/v1/ by dashboard.urls), and the per-plan report files (`urlpatterns`)."""

from django.urls import re_path
from rest_framework.routers import DefaultRouter

from migrations_app.api.balance import PlacementRuleViewSet
from migrations_app.api.campaigns import CampaignViewSet
from migrations_app.api.plans import PlanViewSet
from migrations_app.api.reports import HistoryViewSet, PlanReportView
from migrations_app.api.runs import AttemptViewSet, ItemActionViewSet, RunViewSet
from migrations_app.notifications.api import DeliveryViewSet, SubscriptionViewSet
from migrations_app.sharing.api import ShareLinkViewSet

router = DefaultRouter()
router.register("plans", PlanViewSet, basename="plan")
router.register("campaigns", CampaignViewSet, basename="campaign")
# Execution: runs (with the numbered events range live clients use), attempts, item actions.
router.register("runs", RunViewSet, basename="run")
router.register("attempts", AttemptViewSet, basename="attempt")
router.register("items", ItemActionViewSet, basename="item-action")
router.register("history", HistoryViewSet, basename="history")
router.register("placement-rules", PlacementRuleViewSet, basename="placement-rule")
router.register("share-links", ShareLinkViewSet, basename="share-link")
router.register(
    "notification-subscriptions", SubscriptionViewSet, basename="notification-subscription"
)
router.register("notification-deliveries", DeliveryViewSet, basename="notification-delivery")

# Routes outside the router: file names rather than trailing-slash resources.
urlpatterns = [
    re_path(
        r"^plans/(?P<pk>[0-9]+)/report\.(?P<kind>csv|json)$",
        PlanReportView.as_view(),
        name="plan-report",
    ),
]
