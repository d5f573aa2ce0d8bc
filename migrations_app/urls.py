"""Page routes of plans (mounted at /plans/)."""

urlpatterns: list = []
