"""API routes of plans, approvals and runs (registered into /api/v1/ by dashboard.urls)."""

from rest_framework.routers import DefaultRouter

from migrations_app.api.plans import PlanViewSet
from migrations_app.api.runs import AttemptViewSet, ItemActionViewSet, RunViewSet

router = DefaultRouter()
router.register("plans", PlanViewSet, basename="plan")
# Execution: runs (with the numbered events range live clients use), attempts, item actions.
router.register("runs", RunViewSet, basename="run")
router.register("attempts", AttemptViewSet, basename="attempt")
router.register("items", ItemActionViewSet, basename="item-action")
