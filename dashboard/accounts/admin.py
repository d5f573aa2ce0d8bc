"""Admin: users with "log out everywhere" and "unlock", and the lockout counters."""

from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import UserAdmin

from dashboard.accounts.lockout import account_unlock
from dashboard.accounts.models import AccountIdentity, LoginThrottle, RoleGrant
from dashboard.accounts.people import account_person_link
from dashboard.accounts.roles import ALL, user_roles_get, user_roles_set
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


@admin.register(RoleGrant)
class RoleGrantAdmin(admin.ModelAdmin):
    """Roles scoped to one host group; every add and delete goes through the audited service
    (a role for every host is the Django group of its name, on the user page)."""

    list_display = ["user", "role", "host_group", "source", "created_at"]
    list_filter = ["role", "source"]
    search_fields = ["user__username", "host_group"]
    fields = ["user", "role", "host_group"]

    def has_change_permission(self, request, obj=None):
        return obj is None  # add or delete; a change is a delete and an add

    def save_model(self, request, obj, form, change):
        roles = user_roles_get(obj.user)
        where = roles.get(obj.role)
        if where != ALL:
            roles[obj.role] = sorted({*(where or []), obj.host_group})
        user_roles_set(actor=request.user, user=obj.user, roles=roles, reason="admin site")

    def delete_model(self, request, obj):
        roles = user_roles_get(obj.user)
        left = [g for g in roles.get(obj.role, []) if g != obj.host_group]
        if left:
            roles[obj.role] = left
        else:
            roles.pop(obj.role, None)
        user_roles_set(actor=request.user, user=obj.user, roles=roles, reason="admin site")

    def delete_queryset(self, request, queryset):
        for obj in queryset:
            self.delete_model(request, obj)


@admin.register(AccountIdentity)
class AccountIdentityAdmin(admin.ModelAdmin):
    """Where an account comes from, and the explicit person link four eyes counts by."""

    list_display = ["user", "source", "subject", "email_verified", "person"]
    search_fields = ["user__username", "subject", "person"]
    fields = ["user", "source", "subject", "email_verified", "person"]
    readonly_fields = ["source", "subject", "email_verified"]

    def get_readonly_fields(self, request, obj=None):
        return [*self.readonly_fields, "user"] if obj is not None else self.readonly_fields

    def save_model(self, request, obj, form, change):
        account_person_link(actor=request.user, user=obj.user, person=obj.person)
