"""The content hash of a campaign: what its approval is bound to (as plans' content.py).

It covers the ordered hosts and waves, the hooks (never their secrets), the policy the
generated plans get, failback, the health timeout, the window and what approvers read.
"""

import hashlib
import json

from migrations_app.hooks import hook_content
from migrations_app.models import Campaign
from migrations_app.policy import Policy


def campaign_content(campaign: Campaign) -> dict:
    """The canonical content of a campaign, as a dict of JSON values."""
    return {
        "campaign": campaign.pk,
        "name": campaign.name,
        "description": campaign.description,
        "change_ticket": campaign.change_ticket,
        "window_start": campaign.window_start.isoformat() if campaign.window_start else None,
        "window_end": campaign.window_end.isoformat() if campaign.window_end else None,
        "policy": Policy.from_dict(campaign.policy).content(),
        "group": campaign.group,
        "batch_size": campaign.batch_size,
        "failback": campaign.failback,
        "healthy_timeout_s": campaign.healthy_timeout_s,
        "transport_override": campaign.transport_override_reason or None,
        "steps": [
            {"host": s.host_id, "position": s.position, "wave": s.wave}
            for s in campaign.steps.order_by("position", "id")
        ],
        "hooks": [hook_content(h) for h in campaign.hooks.order_by("event", "id")],
    }


def campaign_content_hash(campaign: Campaign) -> str:
    """SHA-256 over the canonical JSON of the campaign's content."""
    encoded = json.dumps(campaign_content(campaign), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(encoded.encode("utf-8")).hexdigest()
