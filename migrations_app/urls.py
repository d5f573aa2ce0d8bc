"""Page routes of plans (mounted at /plans/)."""

from django.urls import path

from migrations_app import views

app_name = "plans"

urlpatterns = [
    path("", views.plan_list_view, name="plan-list"),
    path("new/", views.plan_create_view, name="plan-create"),
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
