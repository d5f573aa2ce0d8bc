"""Websocket routes (consumers are added by the live-progress work)."""

websocket_urlpatterns: list = []
