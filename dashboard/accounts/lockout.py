"""Sign-in hygiene: per-account lockout, a soft per-address limit, and the login audit.

Lockout counts failures per username: the address is easy to rotate (and X-Forwarded-For
is whatever the client typed), the account is not. What the security review (L3) found,
and how it is closed:

- **Locked forever by one request per lock period**: failures decay. When a lock has
  ended, or the last failure is older than the lockout period, the count starts again from
  zero, so a lock needs the full number of failures again.
- **A burst of parallel guesses all passing the check**: every attempt is counted *before*
  its password is checked (`login_attempt_begin`, under the row lock), so at most
  FERRY_LOGIN_MAX_FAILURES passwords are ever checked per lock period, however many
  requests run at once.
- **Anonymous, unbounded writes**: unknown user names are audited once, when they lock, not
  once per failure; throttle rows older than the lockout period are purged.
- **One address locking everyone out**: an address with more than
  FERRY_LOGIN_MAX_FAILURES_PER_ADDRESS failures in the period is refused (softly: for that
  period) before any account is counted.
"""

from datetime import timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from dashboard.accounts.models import LoginThrottle
from dashboard.audit.record import Actor, audit_record

ADDRESS_PREFIX = "@"  # throttle rows of an address are keyed "@<address>"


def _key(username: str) -> str:
    return (username or "").strip().casefold()[:150]


def _address_key(address: str) -> str:
    return f"{ADDRESS_PREFIX}{address}"[:150] if address else ""


def _period() -> timedelta:
    return timedelta(seconds=getattr(settings, "FERRY_LOGIN_LOCKOUT_SECONDS", 900))


def _limit() -> int:
    return getattr(settings, "FERRY_LOGIN_MAX_FAILURES", 5)


def account_locked_until(username: str):
    """When the account's lock ends, or None when it may log in."""
    row = LoginThrottle.objects.filter(username=_key(username)).first()
    if row is None or row.locked_until is None or row.locked_until <= timezone.now():
        return None
    return row.locked_until


def address_locked_until(address: str):
    """When the soft limit on this source address ends, or None."""
    return account_locked_until(_address_key(address)) if address else None


def _user_named(username: str):
    User = get_user_model()
    return User.objects.filter(**{User.USERNAME_FIELD: username}).first()


def _locked_row(key: str, now) -> LoginThrottle:
    """The throttle row of `key`, locked, with its count decayed when its period is over."""
    LoginThrottle.objects.get_or_create(username=key)
    row = LoginThrottle.objects.select_for_update(no_key=True).get(username=key)
    period_over = row.locked_until is not None and row.locked_until <= now
    stale = row.last_failure_at is not None and now - row.last_failure_at > _period()
    if period_over or stale:
        row.failures, row.locked_until = 0, None
    return row


def login_attempt_begin(*, username: str, address: str = "") -> str:
    """Count one sign-in attempt before its password is checked; "" when it may go on,
    else "account" or "address" (the attempt is refused without checking the password)."""
    now = timezone.now()
    with transaction.atomic():
        # Rows nobody failed with for a whole period are history: keep the table small.
        LoginThrottle.objects.filter(
            Q(locked_until__isnull=True) | Q(locked_until__lte=now),
            last_failure_at__lt=now - _period(),
        ).delete()
        if address:
            place = _locked_row(_address_key(address), now)
            if place.locked_until is not None:
                return "address"
            place.failures += 1
            place.last_failure_at = now
            if place.failures > getattr(settings, "FERRY_LOGIN_MAX_FAILURES_PER_ADDRESS", 50):
                place.locked_until = now + _period()
            place.save()
            if place.locked_until is not None:
                return "address"
        row = _locked_row(_key(username), now)
        if row.locked_until is not None:
            return "account"
        row.failures += 1
        row.last_failure_at = now
        if row.failures > _limit():  # parallel attempts past the limit: lock, do not check
            row.locked_until = now + _period()
        row.save()
        return "account" if row.locked_until is not None else ""


def login_failure_record(*, username: str) -> LoginThrottle | None:
    """A failed sign-in (its attempt was counted by login_attempt_begin): lock the account
    once the limit is reached, and audit known accounts' failures and every new lock."""
    key = _key(username)
    now = timezone.now()
    user = _user_named(username)
    with transaction.atomic():
        row = LoginThrottle.objects.select_for_update(no_key=True).filter(username=key).first()
        if row is None:
            return None
        refused = row.locked_until is not None and row.locked_until > now
        newly_locked = not refused and row.failures >= _limit()
        if newly_locked:
            row.locked_until = now + _period()
            row.save(update_fields=["locked_until"])
        if newly_locked or (user is not None and not refused):
            audit_record(
                actor=Actor(type="user", name=(username or "")[:150], user_id=None),
                action="auth.login_locked" if newly_locked else "auth.login_failed",
                object_type="auth.user",
                object_id=str(user.pk) if user else "",
                object_repr=(username or "")[:300],
                after={
                    "failures": row.failures,
                    "locked_until": row.locked_until if newly_locked else None,
                    "known_account": user is not None,
                },
            )
    return row


def login_success_record(*, user, address: str = "") -> None:
    """Audit a successful login, clear the account's count and give the address its
    attempt back."""
    with transaction.atomic():
        LoginThrottle.objects.filter(username=_key(user.get_username())).delete()
        if address:
            LoginThrottle.objects.filter(username=_address_key(address), failures__gt=0).update(
                failures=F("failures") - 1
            )
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
