"""Routes of the audit pages, change records, status links and their API (included by
dashboard.urls)."""

from django.urls import path
from rest_framework.routers import DefaultRouter

from dashboard import audit_views, status_views, workflow_pages
from dashboard.api.audit import AuditEventViewSet
from dashboard.api.auth import ApiTokenView
from dashboard.api.notifications import DeliveryViewSet, SubscriptionViewSet
from dashboard.api.sharelinks import ShareLinkViewSet

router = DefaultRouter()
router.register("audit-events", AuditEventViewSet, basename="audit-event")
router.register("share-links", ShareLinkViewSet, basename="share-link")
router.register(
    "notification-subscriptions", SubscriptionViewSet, basename="notification-subscription"
)
router.register("notification-deliveries", DeliveryViewSet, basename="notification-delivery")

api_urlpatterns = [
    path("api/v1/auth/token/", ApiTokenView.as_view(), name="api-token"),
]

urlpatterns = [
    path("audit/", audit_views.audit_list, name="audit-list"),
    path("audit/export.<str:fmt>", audit_views.audit_export, name="audit-export"),
    path("audit/plans/<int:pk>/", audit_views.audit_plan_timeline, name="audit-plan-timeline"),
    path(
        "plans/<int:pk>/change-record/",
        workflow_pages.change_record_page,
        name="change-record",
    ),
    path(
        "plans/<int:pk>/change-record.pdf",
        workflow_pages.change_record_pdf_page,
        name="change-record-pdf",
    ),
    path(
        "plans/<int:pk>/share-links/",
        workflow_pages.sharelink_create_page,
        name="sharelink-create",
    ),
    path(
        "plans/<int:pk>/workflow/<str:action>/",
        workflow_pages.plan_workflow_page,
        name="plan-workflow",
    ),
    path(
        "share-links/<int:link_id>/revoke/",
        workflow_pages.sharelink_revoke_page,
        name="sharelink-revoke",
    ),
    path("status/<str:token>/", status_views.status_page, name="status-page"),
    path("status/<str:token>/snapshot/", status_views.status_snapshot, name="status-snapshot"),
    *api_urlpatterns,
]
