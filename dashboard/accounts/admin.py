"""Admin: users with "log out everywhere" and "unlock", and the lockout counters."""

from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import UserAdmin

from dashboard.accounts.lockout import account_unlock
from dashboard.accounts.models import LoginThrottle
from dashboard.accounts.tokens import user_logout_everywhere
from dashboard.audit.admin import ReadOnlyAdmin

User = get_user_model()


class FerryUserAdmin(UserAdmin):
    """Django's user admin plus the session hygiene actions."""

    actions = ["logout_everywhere", "unlock_accounts"]

    @admin.action(description="Log out everywhere (end sessions, revoke API token)")
    def logout_everywhere(self, request, queryset):
        ended = sum(user_logout_everywhere(actor=request.user, user=user) for user in queryset)
        self.message_user(request, f"{ended} session(s) ended; API tokens revoked.")

    @admin.action(description="Lift a login lockout")
    def unlock_accounts(self, request, queryset):
        count = sum(
            account_unlock(actor=request.user, username=user.get_username()) for user in queryset
        )
        self.message_user(request, f"{count} account(s) unlocked.", messages.SUCCESS)


if admin.site.is_registered(User):
    admin.site.unregister(User)
admin.site.register(User, FerryUserAdmin)


@admin.register(LoginThrottle)
class LoginThrottleAdmin(ReadOnlyAdmin):
    list_display = ["username", "failures", "last_failure_at", "locked_until"]
