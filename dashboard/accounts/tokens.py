"""Sessions and API tokens: log a user out everywhere, rotate or revoke their API token.

API tokens are django-rest-knox tokens (security review L4): the key is shown once, only
its SHA-512 digest is stored, and it expires after FERRY_API_TOKEN_DAYS. One token per
person: rotating replaces it.
"""

from django.contrib.sessions.models import Session
from django.db import transaction
from django.utils import timezone
from knox.auth import TokenAuthentication
from knox.models import AuthToken
from rest_framework.exceptions import AuthenticationFailed

from dashboard.audit.record import audit_record


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
        tokens, _ = AuthToken.objects.filter(user=user).delete()
        audit_record(
            actor=actor,
            action="auth.logout_everywhere",
            obj=user,
            after={"sessions_ended": ended, "api_token_revoked": bool(tokens)},
        )
    return ended


def api_token_rotate(*, user) -> tuple[str, AuthToken]:
    """Give the user a new API token (the old one stops working); returns (key, token).
    The key exists only in this answer: the database keeps its digest."""
    with transaction.atomic():
        AuthToken.objects.filter(user=user).delete()
        token, key = AuthToken.objects.create(user=user)
        audit_record(
            actor=user, action="auth.token_rotate", obj=user, after={"expiry": token.expiry}
        )
    return key, token


def api_token_current(*, user) -> AuthToken | None:
    """The user's unexpired API token row (never its key), or None."""
    return (
        AuthToken.objects.filter(user=user, expiry__gt=timezone.now()).order_by("-created").first()
    )


def api_token_revoke(*, user) -> bool:
    """Delete the user's API token."""
    with transaction.atomic():
        deleted, _ = AuthToken.objects.filter(user=user).delete()
        if deleted:
            audit_record(actor=user, action="auth.token_revoke", obj=user)
    return bool(deleted)


def api_token_user(key: str):
    """The active user an API token key belongs to, or None (expired, revoked, unknown).
    For callers outside DRF (a websocket handshake) that authenticate the same way."""
    if not key or len(key) > 200:
        return None
    try:
        user, _token = TokenAuthentication().authenticate_credentials(key.encode("utf-8"))
    except AuthenticationFailed:
        return None
    return user if user.is_active else None
