"""Thin receivers that hand django.contrib.auth's login signals to the hygiene services."""

from django.contrib.auth.signals import user_logged_in, user_login_failed
from django.dispatch import receiver

from dashboard.accounts.lockout import login_failure_record, login_success_record


@receiver(user_logged_in, dispatch_uid="ferry_login_success")
def _on_login(sender, request, user, **kwargs):
    address = request.META.get("REMOTE_ADDR", "") if request is not None else ""
    login_success_record(user=user, address=address)


@receiver(user_login_failed, dispatch_uid="ferry_login_failure")
def _on_login_failed(sender, credentials, request=None, **kwargs):
    username = credentials.get("username") or ""
    if username:
        login_failure_record(username=username)
