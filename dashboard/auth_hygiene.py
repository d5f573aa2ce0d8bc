"""Authentication hygiene: per-account lockout, login audit, logout everywhere, API tokens.

Lockout counts consecutive failures per username, never per source address: the address
is easy to rotate (and X-Forwarded-For is whatever the client typed), the account is not.
"""

from datetime import timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.sessions.models import Session
from django.db import transaction
from django.db.models import F
from django.utils import timezone
from rest_framework.authtoken.models import Token

from dashboard.audit import Actor, audit_record
from dashboard.models_auth import LoginThrottle


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


def user_logout_everywhere(*, actor, user) -> int:
    """End every session of the user and revoke their API token; returns sessions ended."""
    now = timezone.now()
    ended = 0
    with transaction.atomic():
        # Sessions store the user id inside their encoded data, so they are scanned; the
        # table holds only unexpired sessions of an internal tool, which stays small.
        for session in Session.objects.filter(expire_date__gt=now).iterator():
            if session.get_decoded().get("_auth_user_id") == str(user.pk):
                session.delete()
                ended += 1
        tokens, _ = Token.objects.filter(user=user).delete()
        audit_record(
            actor=actor,
            action="auth.logout_everywhere",
            obj=user,
            after={"sessions_ended": ended, "api_token_revoked": bool(tokens)},
        )
    return ended


def api_token_rotate(*, user) -> str:
    """Give the user a new API token (the old one stops working); returns its key."""
    with transaction.atomic():
        Token.objects.filter(user=user).delete()
        token = Token.objects.create(user=user)
        audit_record(actor=user, action="auth.token_rotate", obj=user)
    return token.key


def api_token_revoke(*, user) -> bool:
    """Delete the user's API token."""
    with transaction.atomic():
        deleted, _ = Token.objects.filter(user=user).delete()
        if deleted:
            audit_record(actor=user, action="auth.token_revoke", obj=user)
    return bool(deleted)
