"""The status link stream: /ws/status/<token>/ for stakeholders holding a valid link (no
login), redacted like the status page, closed when the link is revoked or expires."""

from dashboard.live.consumers import LiveConsumer, read_in_pool
from migrations_app.live.redaction import status_group, status_snapshot
from migrations_app.live.snapshots import plan_snapshot
from migrations_app.models import ShareLink
from migrations_app.sharing.services import share_link_group, share_link_lookup


class StatusConsumer(LiveConsumer):
    """/ws/status/<token>/ for stakeholders holding a valid status link (no login)."""

    async def authorize_and_snapshot(self):
        token = self.scope["url_route"]["kwargs"]["token"]
        return await read_in_pool(self._snapshot)(token)

    def _snapshot(self, token):
        link = share_link_lookup(token)
        # A campaign's link has no stream (its page polls the snapshot): refused like a
        # dead link, so nobody learns anything from trying.
        if link is None or link.state() != "active" or link.plan_id is None:
            return None
        self.link_id = link.pk
        # Its own group, fed redacted copies of the plan's events (M4).
        self.groups_to_join = [status_group(link.plan_id), share_link_group(link.pk)]
        return status_snapshot(plan_snapshot(link.plan, redact_hosts=not link.show_host_names))

    def authorization_key(self):
        return ("link", getattr(self, "link_id", None))

    def still_authorized(self) -> bool:
        link = ShareLink.objects.filter(pk=getattr(self, "link_id", None)).first()
        return link is not None and link.state() == "active"
