"""Websocket consumers of plans: read-only subscribers. Commands go through the REST API.

/ws/plans/<id>/ and /ws/dashboard/ for signed-in users who may view plans (the status link
stream is migrations_app.sharing.consumers). The common behaviour is the platform's
LiveConsumer.
"""

from dashboard.live.consumers import LiveConsumer, read_in_pool
from dashboard.permissions import can, is_scoped
from migrations_app.live.events import DASHBOARD_GROUP, plan_group
from migrations_app.live.snapshots import dashboard_snapshot, plan_snapshot
from migrations_app.scoping import visible_plans


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
        # The same plans the REST API shows: a plan outside a scoped role is refused.
        plan = visible_plans(user).filter(pk=plan_id).first()
        return plan_snapshot(plan) if plan else None


class DashboardConsumer(LiveConsumer):
    """/ws/dashboard/ for signed-in users who may view every plan (not a scoped role)."""

    async def authorize_and_snapshot(self):
        self.groups_to_join = [DASHBOARD_GROUP]
        return await read_in_pool(self._snapshot)(self.scope.get("user"))

    @staticmethod
    def _snapshot(user):
        # The dashboard stream carries every plan's events to one group: a role scoped to
        # host groups would see other groups' plans, so it is refused (its pages poll the
        # REST snapshot, which is narrowed to its scope).
        if user is None or not can(user, "plan.view") or is_scoped(user, "plan.view"):
            return None
        return dashboard_snapshot()
