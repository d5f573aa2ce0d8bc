"""Status links: create, revoke, and look up a token (for pages and websocket consumers).

A link shows one plan or one campaign; both kinds share the tokens, expiry, revocation
and the public /status/<token>/ address.

The token is 32 random bytes, shown once at creation; only its SHA-256 is stored, so a
database reader cannot rebuild working links. Lookups hash the presented token.
"""

import hashlib
import logging
import secrets
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from dashboard.audit.record import audit_record
from dashboard.errors import InputError
from dashboard.live.publish import close_streams
from migrations_app.models.sharing import ShareLink
from migrations_app.scoping import visible_campaigns, visible_plans

logger = logging.getLogger("ferry.sharelinks")


def token_hash(token: str) -> str:
    """The stored form of a token."""
    return hashlib.sha256((token or "").encode("utf-8")).hexdigest()


def share_link_url(request, token: str) -> str:
    """The public URL of a status link (FERRY_BASE_URL when set, else this request's host)."""
    base = getattr(settings, "FERRY_BASE_URL", "").rstrip("/")
    path = f"/status/{token}/"
    return f"{base}{path}" if base else request.build_absolute_uri(path)


def share_link_group(link_id: int) -> str:
    """Channel-layer group of the streams opened with one link (closed when it is revoked)."""
    return f"sharelink.{link_id}"


def share_link_create(
    *,
    actor,
    plan=None,
    campaign=None,
    expires_at=None,
    never_expires: bool = False,
    show_host_names: bool = False,
    label: str = "",
) -> tuple[ShareLink, str]:
    """Create a link to the status page of a plan or (`campaign`) a campaign; returns the
    link and its token (shown once).

    A link expires after FERRY_SHARE_LINK_DAYS (7) unless it names its own expiry, or its
    creator explicitly chose `never_expires` (the page warns about such links).
    """
    if (plan is None) == (campaign is None):
        raise InputError("A status link shows one plan or one campaign.")
    if expires_at is not None and never_expires:
        raise InputError("Give an expiry or choose 'never expires', not both.")
    now = timezone.now()
    if expires_at is None and not never_expires:
        expires_at = now + timedelta(days=int(getattr(settings, "FERRY_SHARE_LINK_DAYS", 7)))
    token = secrets.token_urlsafe(32)
    with transaction.atomic():
        link = ShareLink.objects.create(
            token_hash=token_hash(token),
            token_prefix=token[:6],
            plan=plan,
            campaign=campaign,
            label=(label or "")[:200],
            show_host_names=show_host_names,
            created_by=actor,
            created_by_name=actor.get_username(),
            expires_at=expires_at,
        )
        audit_record(
            actor=actor,
            action="sharelink.create",
            obj=link,
            after={
                **_subject(link),
                "token_prefix": link.token_prefix,
                "expires_at": expires_at,
                "show_host_names": show_host_names,
                "label": link.label,
            },
        )
    return link, token


def share_links_manageable(user):
    """The links `user` may list and revoke: those of plans and campaigns inside the host
    groups their sharelink.manage role covers (the API and the page both ask this)."""
    plans = visible_plans(user, "sharelink.manage")
    campaigns = visible_campaigns(user, "sharelink.manage")
    return ShareLink.objects.filter(Q(plan__in=plans) | Q(campaign__in=campaigns))


def share_link_revoke(*, link: ShareLink, actor) -> ShareLink:
    """Revoke a link: its page answers 410 and its open live streams are closed."""
    with transaction.atomic():
        locked = ShareLink.objects.select_for_update(no_key=True).get(pk=link.pk)
        if locked.revoked_at is not None:
            return locked
        locked.revoked_at = timezone.now()
        locked.revoked_by_name = actor.get_username()
        locked.save(update_fields=["revoked_at", "revoked_by_name"])
        audit_record(
            actor=actor,
            action="sharelink.revoke",
            obj=locked,
            before={"state": "active"},
            after={"state": "revoked", **_subject(locked)},
        )
        transaction.on_commit(lambda: _close_streams(locked.pk))
    return locked


def _subject(link: ShareLink) -> dict:
    """What the link shows, as the audit trail records it."""
    return {"campaign": link.campaign_id} if link.campaign_id else {"plan": link.plan_id}


def _close_streams(link_id: int) -> None:
    close_streams(share_link_group(link_id), "This status link was revoked.")


def share_link_lookup(token: str) -> ShareLink | None:
    """The link for a token whatever its state (None for an unknown token)."""
    if not token or len(token) > 200:
        return None
    return (
        ShareLink.objects.select_related("plan", "campaign")
        .filter(token_hash=token_hash(token))
        .first()
    )


def share_link_active(token: str) -> ShareLink | None:
    """The link for a token when it is usable right now (not revoked, not expired)."""
    link = share_link_lookup(token)
    if link is None or link.state() != "active":
        return None
    return link
