"""Notifications of plan and campaign events to subscribers: signed JSON webhooks and email.

`notify_plan_event` and `notify_campaign_event` run inside the service's transaction: it stores one delivery per
matching subscription and enqueues the delivery tasks only after commit, so nobody is told
about a change that rolled back. Each delivery is retried with exponential backoff through
the tasks API, and every attempt is logged (DeliveryAttempt).

Webhook bodies are signed: `X-Ferry-Signature: sha256=<hex HMAC-SHA256 of the raw body
with the subscription's secret>`; receivers recompute it over the bytes they received.
"""

import hashlib
import hmac
import http.client
import json
import logging
import secrets
import time
from datetime import timedelta

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.mail import send_mail
from django.core.serializers.json import DjangoJSONEncoder
from django.core.validators import EmailValidator, URLValidator
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from dashboard.audit.record import as_actor, audit_record
from migrations_app.models.notifications import (
    CAMPAIGN_NOTIFY_EVENTS,
    NOTIFY_EVENTS,
    DeliveryAttempt,
    NotificationDelivery,
    NotificationSubscription,
)
from migrations_app.notifications.tasks import deliver_notification_task
from migrations_app.notifications.webhook_guard import (
    classify_network_error,
    webhook_post,
    webhook_target_resolve,
)

logger = logging.getLogger("ferry.notify")

SIGNATURE_HEADER = "X-Ferry-Signature"


def signature_of(secret: str, body: bytes) -> str:
    """The signature header value for a body."""
    digest = hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def signature_valid(secret: str, body: bytes, header: str) -> bool:
    """Constant-time check of a signature header (what a receiver does)."""
    return hmac.compare_digest(signature_of(secret, body), header or "")


def _url(path: str) -> str:
    base = getattr(settings, "FERRY_BASE_URL", "").rstrip("/")
    return f"{base}{path}"


def _plan_url(plan) -> str:
    return _url(f"/plans/{plan.pk}/")


def _deliveries(subscriptions, event: str, payload: dict, **subject) -> list[int]:
    """One delivery per subscription that wants the event; enqueued after commit."""
    body = json.dumps(payload, cls=DjangoJSONEncoder, sort_keys=True)
    ids = [
        NotificationDelivery.objects.create(
            subscription=subscription, event=event, body=body, **subject
        ).pk
        for subscription in subscriptions
        if subscription.wants(event)
    ]
    if ids:
        transaction.on_commit(lambda: _enqueue_all(ids))
    return ids


def notify_plan_event(plan, event: str, *, actor, extra: dict | None = None) -> list[int]:
    """Store deliveries of a plan event for its subscribers; send them after commit."""
    if event not in NOTIFY_EVENTS:
        raise ValueError(f"unknown notification event {event!r}")
    subscriptions = NotificationSubscription.objects.filter(
        active=True, campaign__isnull=True
    ).filter(Q(plan__isnull=True) | Q(plan_id=plan.pk))
    payload = {
        "event": f"plan.{event}",
        "at": timezone.now(),
        "actor": as_actor(actor).name,
        "plan": {
            "id": plan.pk,
            "name": plan.name,
            "status": plan.status,
            "change_ticket": plan.change_ticket,
            "version": plan.version,
            "url": _plan_url(plan),
        },
        **(extra or {}),
    }
    return _deliveries(subscriptions, event, payload, plan_id=plan.pk)


def notify_campaign_event(campaign, event: str, *, actor, extra: dict | None = None) -> list[int]:
    """Store deliveries of a campaign event for the global subscriptions and the campaign's
    own; send them after commit (as plan events: same signing, retries and outbound rules).
    `extra` is for subscribers: classified outcomes only, never raw errors or hook URLs."""
    if event not in CAMPAIGN_NOTIFY_EVENTS:
        raise ValueError(f"unknown campaign notification event {event!r}")
    subscriptions = NotificationSubscription.objects.filter(active=True, plan__isnull=True).filter(
        Q(campaign__isnull=True) | Q(campaign_id=campaign.pk)
    )
    payload = {
        "event": f"campaign.{event}",
        "at": timezone.now(),
        "actor": as_actor(actor).name,
        "campaign": {
            "id": campaign.pk,
            "name": campaign.name,
            "status": campaign.status,
            "stage": campaign.stage,
            "change_ticket": campaign.change_ticket,
            "url": _url(f"/plans/campaigns/{campaign.pk}/"),
        },
        **(extra or {}),
    }
    return _deliveries(subscriptions, event, payload, campaign_id=campaign.pk)


def _enqueue_all(ids: list[int]) -> None:
    for delivery_id in ids:
        try:
            deliver_notification_task.enqueue(delivery_id)
        except Exception:  # a broken queue must not break the change that was committed
            logger.exception("could not enqueue notification delivery %s", delivery_id)


def _post_webhook(subscription, delivery) -> tuple[bool, int | None, str, str]:
    # Resolved and checked again now (DNS may have changed since the subscription), and
    # sent to the checked address; a redirect is not followed (an answer like any other).
    body = delivery.body.encode("utf-8")
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "Ferry-Webhook/1",
        "X-Ferry-Event": f"{_subject(delivery)}.{delivery.event}",
        "X-Ferry-Delivery": str(delivery.pk),
        SIGNATURE_HEADER: signature_of(subscription.secret, body),
    }
    timeout = getattr(settings, "FERRY_WEBHOOK_TIMEOUT", 10)
    try:
        code, reason = webhook_post(subscription.target, body, headers, timeout)
    except (OSError, ValueError, http.client.HTTPException) as exc:
        return False, None, classify_network_error(exc), f"{type(exc).__name__}: {exc}"[:1000]
    if 200 <= code < 300:
        return True, code, "", ""
    return False, code, f"HTTP {code}", f"HTTP {code} {reason}"[:1000]


def _subject(delivery) -> str:
    return "campaign" if delivery.campaign_id else "plan"


def _send_email(subscription, delivery) -> tuple[bool, int | None, str, str]:
    payload = json.loads(delivery.body)
    kind = _subject(delivery)
    obj = payload.get(kind, {})
    # Names from before line breaks were refused still must not stop the mail (L10).
    name = " ".join(str(obj.get("name") or "").split())
    subject = f"[Ferry] {kind} '{name}' {delivery.event}"
    lines = [
        f"{kind.capitalize()}: {obj.get('name')} (#{obj.get('id')})",
        f"Event: {payload.get('event')} by {payload.get('actor')} at {payload.get('at')}",
        f"Status: {obj.get('status')}",
        f"Change ticket: {obj.get('change_ticket') or '-'}",
        f"Link: {obj.get('url')}",
    ]
    for key in ("host", "reason", "outcome", "approvals", "duration_ms"):
        if key in payload:
            lines.append(f"{key.capitalize()}: {payload[key]}")
    try:
        send_mail(subject, "\n".join(lines) + "\n", None, [subscription.target])
    except Exception as exc:  # SMTP errors come in many types; each is logged as an attempt
        return (
            False,
            None,
            "the mail server refused or failed",
            f"{type(exc).__name__}: {exc}"[:1000],
        )
    return True, None, "", ""


def backoff_seconds(attempt: int) -> int:
    """Wait before retry number `attempt` + 1: 30 s, 60 s, 120 s … capped at one hour."""
    return min(3600, 30 * 2 ** max(0, attempt - 1))


def notification_deliver(delivery_id: int) -> NotificationDelivery | None:
    """Make one delivery attempt, log it, and decide whether and when to retry."""
    delivery = (
        NotificationDelivery.objects.filter(
            pk=delivery_id, status=NotificationDelivery.Status.PENDING
        )
        .select_related("subscription")
        .first()
    )
    if delivery is None:
        return None
    # Claim this attempt with a conditional update: of two workers holding the same task,
    # exactly one moves `attempts` on and sends; the other stops here.
    claimed = NotificationDelivery.objects.filter(
        pk=delivery.pk, status=NotificationDelivery.Status.PENDING, attempts=delivery.attempts
    ).update(attempts=delivery.attempts + 1)
    if claimed != 1:
        return None
    delivery.attempts += 1
    subscription = delivery.subscription
    started = time.monotonic()
    # The network call happens outside any transaction: a slow receiver holds no lock.
    if subscription.kind == NotificationSubscription.Kind.WEBHOOK:
        ok, code, error, detail = _post_webhook(subscription, delivery)
    else:
        ok, code, error, detail = _send_email(subscription, delivery)
    duration = int((time.monotonic() - started) * 1000)
    max_attempts = getattr(settings, "FERRY_NOTIFY_MAX_ATTEMPTS", 6)
    now = timezone.now()
    retry_at = None
    with transaction.atomic():
        DeliveryAttempt.objects.create(
            delivery=delivery,
            number=delivery.attempts,
            ok=ok,
            status_code=code,
            error=error,
            error_detail=detail,
            duration_ms=duration,
        )
        if ok:
            delivery.status = NotificationDelivery.Status.DELIVERED
            delivery.delivered_at = now
            delivery.next_attempt_at = None
            delivery.last_error = ""
        elif delivery.attempts >= max_attempts:
            delivery.status = NotificationDelivery.Status.FAILED
            delivery.next_attempt_at = None
            delivery.last_error = error
        else:
            retry_at = now + timedelta(seconds=backoff_seconds(delivery.attempts))
            delivery.next_attempt_at = retry_at
            delivery.last_error = error
        delivery.save(update_fields=["status", "delivered_at", "next_attempt_at", "last_error"])
        if retry_at is not None:
            transaction.on_commit(lambda: _enqueue_retry(delivery.pk, retry_at))
    return delivery


def _enqueue_retry(delivery_id: int, retry_at) -> None:
    try:
        deliver_notification_task.using(run_after=retry_at).enqueue(delivery_id)
    except Exception:
        # A backend without deferral (the immediate one) cannot wait: the delivery stays
        # pending with next_attempt_at set, visible in the delivery log.
        logger.warning("could not schedule retry of delivery %s", delivery_id, exc_info=True)


def subscription_check(*, kind: str, target: str, plan=None, campaign=None, events=()) -> str:
    """The subscription's target, cleaned, or ValidationError / WebhookRefused saying what is
    wrong (the API, the admin's form and subscription_create ask this)."""
    target = (target or "").strip()
    if plan is not None and campaign is not None:
        raise ValidationError({"campaign": ["Subscribe to a plan or to a campaign, not both."]})
    if kind == NotificationSubscription.Kind.WEBHOOK:
        URLValidator(schemes=["http", "https"])(target)
        webhook_target_resolve(target)  # public addresses only, unless an admin allowed it
    elif kind == NotificationSubscription.Kind.EMAIL:
        EmailValidator()(target)
    else:
        raise ValidationError({"kind": ["Use 'webhook' or 'email'."]})
    unknown = sorted(set(events) - set(NOTIFY_EVENTS))
    if unknown:
        raise ValidationError({"events": [f"Unknown events: {', '.join(unknown)}."]})
    return target


def subscription_create(
    *, actor, kind: str, target: str, plan=None, campaign=None, events=()
) -> NotificationSubscription:
    """Subscribe a webhook URL or an email address to the events of one plan, one campaign,
    or (neither) every plan and campaign."""
    target = subscription_check(
        kind=kind, target=target, plan=plan, campaign=campaign, events=events
    )
    with transaction.atomic():
        subscription = NotificationSubscription.objects.create(
            kind=kind,
            target=target,
            secret=secrets.token_urlsafe(32) if kind == "webhook" else "",
            plan=plan,
            campaign=campaign,
            events=sorted(set(events)),
            created_by=actor if getattr(actor, "pk", None) else None,
        )
        audit_record(
            actor=actor,
            action="subscription.create",
            obj=subscription,
            after={
                "kind": kind,
                "target": target,
                "plan": plan.pk if plan else None,
                "campaign": campaign.pk if campaign else None,
                "events": subscription.events,
            },
        )
    return subscription


def subscription_delete(*, actor, subscription: NotificationSubscription) -> None:
    """Remove a subscription (its delivery log goes with it)."""
    with transaction.atomic():
        audit_record(
            actor=actor,
            action="subscription.delete",
            obj=subscription,
            before={"kind": subscription.kind, "target": subscription.target},
        )
        subscription.delete()
