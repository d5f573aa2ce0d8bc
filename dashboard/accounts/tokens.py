"""Sessions and API tokens: log a user out everywhere, rotate or revoke their API token."""

from django.contrib.sessions.models import Session
from django.db import transaction
from django.utils import timezone
from rest_framework.authtoken.models import Token

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
