"""Websocket consumers of plans: read-only subscribers. Commands go through the REST API.

/ws/plans/<id>/ and /ws/dashboard/ for signed-in users who may view plans (the status link
stream is migrations_app.sharing.consumers). The common behaviour is the platform's
LiveConsumer.
"""

from dashboard.live.consumers import LiveConsumer, read_in_pool
from dashboard.permissions import can
from migrations_app.live.events import DASHBOARD_GROUP, plan_group
from migrations_app.live.snapshots import dashboard_snapshot, plan_snapshot
from migrations_app.models import MigrationPlan


class PlanConsumer(LiveConsumer):
    """/ws/plans/<id>/ for signed-in users who may view plans."""

    async def authorize_and_snapshot(self):
        plan_id = self.scope["url_route"]["kwargs"]["plan_id"]
        self.groups_to_join = [plan_group(plan_id)]
        return await read_in_pool(self._snapshot)(self.scope.get("user"), plan_id)

    @staticmethod
    def _snapshot(user, plan_id):
        if user is None or not can(user, "plan.view"):
            return None
        plan = MigrationPlan.objects.filter(pk=plan_id).first()
        return plan_snapshot(plan) if plan else None


class DashboardConsumer(LiveConsumer):
    """/ws/dashboard/ for signed-in users who may view plans."""

    async def authorize_and_snapshot(self):
        self.groups_to_join = [DASHBOARD_GROUP]
        return await read_in_pool(self._snapshot)(self.scope.get("user"))

    @staticmethod
    def _snapshot(user):
        if user is None or not can(user, "plan.view"):
            return None
        return dashboard_snapshot()
