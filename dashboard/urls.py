"""The project's routes: the only module, with asgi/routing, that wires every app together."""

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView
from rest_framework.routers import DefaultRouter

from dashboard import views
from dashboard.accounts.api import ApiTokenView, UserRolesView
from dashboard.accounts.backend import LockoutAuthenticationForm
from dashboard.audit import urls as audit_urls
from dashboard.metrics import metrics_view
from inventory.api.urls import router as inventory_router
from migrations_app import urls as plan_urls
from migrations_app.api import live as live_api
from migrations_app.api.urls import router as plans_router
from migrations_app.api.urls import urlpatterns as plans_api_urls

api_router = DefaultRouter()
api_router.registry.extend(inventory_router.registry)
api_router.registry.extend(plans_router.registry)
api_router.registry.extend(audit_urls.router.registry)

urlpatterns = [
    path("", views.home, name="home"),
    path(
        "login/",
        auth_views.LoginView.as_view(authentication_form=LockoutAuthenticationForm),
        name="login",
    ),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("oidc/", include("dashboard.accounts.oidc_urls")),
    path("inventory/", include("inventory.urls")),
    *audit_urls.urlpatterns,
    # Plan features with global URL names (change record, workflow, status links); their
    # paths under plans/<id>/ do not collide with the plan pages below.
    *plan_urls.root_urlpatterns,
    path("plans/", include("migrations_app.urls")),
    path("api/v1/auth/token/", ApiTokenView.as_view(), name="api-token"),
    path("api/v1/users/<str:username>/roles/", UserRolesView.as_view(), name="user-roles"),
    path("api/v1/live/plans/<int:plan_id>/", live_api.plan_live_snapshot, name="live-plan"),
    path("api/v1/live/dashboard/", live_api.dashboard_live_snapshot, name="live-dashboard"),
    path("api/v1/", include(plans_api_urls)),
    path("api/v1/", include(api_router.urls)),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerSplitView.as_view(url_name="schema"), name="api-docs"),
    path("metrics", metrics_view, name="metrics"),
    path("admin/", admin.site.urls),
]
