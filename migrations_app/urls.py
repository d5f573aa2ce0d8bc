"""Page routes of plans.

`urlpatterns` are the plan pages, mounted at /plans/ under the namespace "plans".
`root_urlpatterns` are the plan features whose URL names are global and whose paths are
not all under /plans/ (change records, workflow buttons, status links and the public
status page, a plan's audit timeline); dashboard.urls puts them at the site root.
"""

from django.urls import path

from migrations_app.sharing import views as status_views
from migrations_app.views import balance, campaigns, history, reports, workflow
from migrations_app.views import plans as views

app_name = "plans"

urlpatterns = [
    path("", views.plan_list_view, name="plan-list"),
    path("new/", views.plan_create_view, name="plan-create"),
    path("history/", history.history_page, name="history"),
    path("campaigns/", campaigns.campaign_list_view, name="campaign-list"),
    path("campaigns/new/", campaigns.campaign_create_view, name="campaign-create"),
    path("campaigns/<int:pk>/", campaigns.campaign_detail_view, name="campaign-detail"),
    # Before the catch-all of workflow actions below.
    path(
        "campaigns/<int:pk>/change-record/",
        campaigns.campaign_change_record_view,
        name="campaign-change-record",
    ),
    path(
        "campaigns/<int:pk>/change-record.pdf",
        campaigns.campaign_change_record_pdf_view,
        name="campaign-change-record-pdf",
    ),
    path(
        "campaigns/<int:pk>/share-links/",
        campaigns.campaign_sharelink_create_view,
        name="campaign-sharelink-create",
    ),
    path(
        "campaigns/<int:pk>/<str:action>/",
        campaigns.campaign_action_view,
        name="campaign-action",
    ),
    path("balance/", balance.plan_balance_new_view, name="plan-balance-new"),
    path("rules/", balance.rule_create_view, name="rule-create"),
    path("rules/<int:rule_id>/toggle/", balance.rule_toggle_view, name="rule-toggle"),
    path("rules/<int:rule_id>/remove/", balance.rule_delete_view, name="rule-delete"),
    path("<int:pk>/", views.plan_detail_view, name="plan-detail"),
    path("<int:pk>/add/", views.plan_add_view, name="plan-add"),
    path("<int:pk>/evacuate/", views.plan_evacuate_view, name="plan-evacuate"),
    path("<int:pk>/place/", views.plan_place_view, name="plan-place"),
    path("<int:pk>/validate/", views.plan_validate_view, name="plan-validate"),
    path("<int:pk>/items/<int:item_id>/", views.plan_item_update_view, name="plan-item-update"),
    path(
        "<int:pk>/items/<int:item_id>/remove/",
        views.plan_item_remove_view,
        name="plan-item-remove",
    ),
]

root_urlpatterns = [
    path("audit/plans/<int:pk>/", reports.audit_plan_timeline, name="audit-plan-timeline"),
    path("plans/<int:pk>/change-record/", reports.change_record_page, name="change-record"),
    path(
        "plans/<int:pk>/change-record.pdf",
        reports.change_record_pdf_page,
        name="change-record-pdf",
    ),
    path("plans/<int:pk>/share-links/", workflow.sharelink_create_page, name="sharelink-create"),
    path("plans/<int:pk>/rerun-failed/", workflow.plan_rerun_failed_page, name="plan-rerun-failed"),
    path(
        "plans/<int:pk>/workflow/<str:action>/",
        workflow.plan_workflow_page,
        name="plan-workflow",
    ),
    path(
        "share-links/<int:link_id>/revoke/",
        workflow.sharelink_revoke_page,
        name="sharelink-revoke",
    ),
    path("status/<str:token>/", status_views.status_page, name="status-page"),
    path("status/<str:token>/snapshot/", status_views.status_snapshot, name="status-snapshot"),
]
