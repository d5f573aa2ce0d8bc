"""Websocket routes of plans."""

from django.urls import path

from migrations_app.live.consumers import DashboardConsumer, PlanConsumer
from migrations_app.sharing.consumers import StatusConsumer

websocket_urlpatterns = [
    path("ws/dashboard/", DashboardConsumer.as_asgi()),
    path("ws/plans/<int:plan_id>/", PlanConsumer.as_asgi()),
    path("ws/status/<str:token>/", StatusConsumer.as_asgi()),
]
