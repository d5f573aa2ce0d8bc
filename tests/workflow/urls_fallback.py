"""The project's routes plus a minimal /api/v1/plans/ carrying the workflow mixin, used only
while the real PlanViewSet is not registered yet (see the api_urls fixture)."""

from django.urls import include, path
from rest_framework import viewsets
from rest_framework.routers import DefaultRouter

from dashboard.urls import urlpatterns as project_urlpatterns
from migrations_app.api.workflow_actions import PlanWorkflowActionsMixin
from migrations_app.models import MigrationPlan


class _Plans(PlanWorkflowActionsMixin, viewsets.GenericViewSet):
    queryset = MigrationPlan.objects.all()


router = DefaultRouter()
router.register("plans", _Plans, basename="plan")

urlpatterns = [path("api/v1/", include(router.urls)), *project_urlpatterns]
