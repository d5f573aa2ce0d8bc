"""API routes of plans, approvals and runs (registered into /api/v1/ by dashboard.urls)."""

from rest_framework.routers import DefaultRouter

router = DefaultRouter()
