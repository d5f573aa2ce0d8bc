"""The model backend with per-account lockout, and the login form that explains a lock."""

from django import forms
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.backends import ModelBackend
from django.contrib.auth.forms import AuthenticationForm
from django.core.exceptions import PermissionDenied

from dashboard.accounts.lockout import (
    account_locked_until,
    address_locked_until,
    login_attempt_begin,
)


def source_address(request) -> str:
    """The client's address as the server saw it (REMOTE_ADDR, never X-Forwarded-For)."""
    return (getattr(request, "META", {}) or {}).get("REMOTE_ADDR", "") if request else ""


class LockoutModelBackend(ModelBackend):
    """Refuses a locked account even with the right password, on every login path."""

    def authenticate(self, request, username=None, password=None, **kwargs):
        if not settings.FERRY_LOCAL_LOGIN:
            return None  # local accounts switched off: only single sign-on signs people in
        if username is None:
            username = kwargs.get(self.get_user_model_username_field())
        # Counted before the password is checked, under a row lock: parallel guesses cannot
        # all pass a check that only later counts them (security review L3).
        if username and login_attempt_begin(username=username, address=source_address(request)):
            # PermissionDenied stops Django from trying any other backend.
            raise PermissionDenied("account locked")
        return super().authenticate(request, username=username, password=password, **kwargs)

    @staticmethod
    def get_user_model_username_field() -> str:
        return get_user_model().USERNAME_FIELD


class LockoutAuthenticationForm(AuthenticationForm):
    """Says that the account is locked instead of 'wrong password' while it is."""

    def clean(self):
        try:
            return super().clean()
        except forms.ValidationError:
            until = account_locked_until(self.cleaned_data.get("username") or "")
            if until is not None:
                raise forms.ValidationError(
                    "Too many failed logins: this account is locked until %(until)s UTC.",
                    code="locked",
                    params={"until": until.strftime("%H:%M")},
                ) from None
            until = address_locked_until(source_address(self.request))
            if until is not None:
                raise forms.ValidationError(
                    "Too many failed logins from your address: try again after %(until)s UTC.",
                    code="locked",
                    params={"until": until.strftime("%H:%M")},
                ) from None
            raise
