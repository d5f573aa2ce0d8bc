"""Websocket consumers of plans: read-only subscribers. Commands go through the REST API.

/ws/plans/<id>/ and /ws/dashboard/ for signed-in users who may view plans, /ws/status/<token>/
for holders of a status link. The common behaviour is the platform's LiveConsumer.
"""

from dashboard.accounts.permissions import can
from dashboard.live.consumers import LiveConsumer, read_in_pool
from migrations_app.live.events import DASHBOARD_GROUP, plan_group
from migrations_app.live.snapshots import dashboard_snapshot, plan_snapshot
from migrations_app.models import MigrationPlan, ShareLink
from migrations_app.sharing.services import share_link_group, share_link_lookup


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


class StatusConsumer(LiveConsumer):
    """/ws/status/<token>/ for stakeholders holding a valid status link (no login)."""

    async def authorize_and_snapshot(self):
        token = self.scope["url_route"]["kwargs"]["token"]
        return await read_in_pool(self._snapshot)(token)

    def _snapshot(self, token):
        link = share_link_lookup(token)
        if link is None or link.state() != "active":
            return None
        self.link_id = link.pk
        self.groups_to_join = [plan_group(link.plan_id), share_link_group(link.pk)]
        return plan_snapshot(link.plan, redact_hosts=not link.show_host_names)

    def authorization_key(self):
        return ("link", getattr(self, "link_id", None))

    def still_authorized(self) -> bool:
        link = ShareLink.objects.filter(pk=getattr(self, "link_id", None)).first()
        return link is not None and link.state() == "active"


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
