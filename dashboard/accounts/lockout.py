"""Sign-in hygiene: per-account lockout and the login audit.

Lockout counts consecutive failures per username, never per source address: the address
is easy to rotate (and X-Forwarded-For is whatever the client typed), the account is not.
"""

from datetime import timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from dashboard.accounts.models import LoginThrottle
from dashboard.audit.record import Actor, audit_record


def _key(username: str) -> str:
    return (username or "").strip().casefold()[:150]


def account_locked_until(username: str):
    """When the account's lock ends, or None when it may log in."""
    row = LoginThrottle.objects.filter(username=_key(username)).first()
    if row is None or row.locked_until is None or row.locked_until <= timezone.now():
        return None
    return row.locked_until


def _user_named(username: str):
    User = get_user_model()
    return User.objects.filter(**{User.USERNAME_FIELD: username}).first()


def login_failure_record(*, username: str) -> LoginThrottle:
    """Count a failed login and lock the account once the limit is reached."""
    key = _key(username)
    now = timezone.now()
    limit = getattr(settings, "FERRY_LOGIN_MAX_FAILURES", 5)
    lock_seconds = getattr(settings, "FERRY_LOGIN_LOCKOUT_SECONDS", 900)
    user = _user_named(username)
    with transaction.atomic():
        LoginThrottle.objects.get_or_create(username=key)
        # Counting with F() keeps concurrent failures from overwriting each other's count.
        LoginThrottle.objects.filter(username=key).update(
            failures=F("failures") + 1, last_failure_at=now
        )
        row = LoginThrottle.objects.select_for_update().get(username=key)
        already_locked = row.locked_until is not None and row.locked_until > now
        newly_locked = not already_locked and row.failures >= limit
        if newly_locked:
            row.locked_until = now + timedelta(seconds=lock_seconds)
            row.save(update_fields=["locked_until"])
        audit_record(
            actor=Actor(type="user", name=(username or "")[:150], user_id=None),
            action="auth.login_locked" if newly_locked else "auth.login_failed",
            object_type="auth.user",
            object_id=str(user.pk) if user else "",
            object_repr=(username or "")[:300],
            after={
                "failures": row.failures,
                "locked_until": row.locked_until if (newly_locked or already_locked) else None,
                "known_account": user is not None,
            },
        )
    return row


def login_success_record(*, user) -> None:
    """Audit a successful login and clear the account's failure count."""
    with transaction.atomic():
        LoginThrottle.objects.filter(username=_key(user.get_username())).delete()
        audit_record(actor=user, action="auth.login", obj=user)


def account_unlock(*, actor, username: str) -> bool:
    """Lift a lockout before it ends (an admin's action)."""
    with transaction.atomic():
        deleted, _ = LoginThrottle.objects.filter(username=_key(username)).delete()
        if deleted:
            audit_record(
                actor=actor, action="auth.unlock", object_type="auth.user", object_repr=username
            )
    return bool(deleted)
