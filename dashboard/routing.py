"""Websocket routes of the whole project."""

from migrations_app.routing import websocket_urlpatterns as plan_routes

websocket_urlpatterns = [*plan_routes]
