"""Routes of the audit pages (mounted at the site root by dashboard.urls)."""

from django.urls import path
from rest_framework.routers import DefaultRouter

from dashboard.audit import views
from dashboard.audit.api import AuditEventViewSet

router = DefaultRouter()
router.register("audit-events", AuditEventViewSet, basename="audit-event")

urlpatterns = [
    path("audit/", views.audit_list, name="audit-list"),
    path("audit/export.<str:fmt>", views.audit_export, name="audit-export"),
]
