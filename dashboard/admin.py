"""Admin: users with "log out everywhere" and "unlock", the audit trail read-only,
status links, notification subscriptions and their delivery log."""

from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import UserAdmin

from dashboard.auth_hygiene import account_unlock, user_logout_everywhere
from dashboard.models import AuditEvent
from dashboard.models_auth import LoginThrottle
from dashboard.models_notify import DeliveryAttempt, NotificationDelivery, NotificationSubscription
from dashboard.models_sharelink import ShareLink
from dashboard.notifications import subscription_create, subscription_delete
from dashboard.sharelinks import share_link_revoke

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


class ReadOnlyAdmin(admin.ModelAdmin):
    """Rows written by services only: the admin may look, never change."""

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin):
    list_display = ["sequence", "created_at", "actor_name", "action", "object_type", "object_id"]
    list_filter = ["actor_type", "action", "object_type"]
    search_fields = ["actor_name", "object_repr", "reason", "request_id"]


@admin.register(LoginThrottle)
class LoginThrottleAdmin(ReadOnlyAdmin):
    list_display = ["username", "failures", "last_failure_at", "locked_until"]


@admin.register(ShareLink)
class ShareLinkAdmin(ReadOnlyAdmin):
    list_display = ["token_prefix", "plan", "label", "created_by_name", "expires_at", "revoked_at"]
    actions = ["revoke"]

    @admin.action(description="Revoke the selected status links")
    def revoke(self, request, queryset):
        for link in queryset:
            share_link_revoke(link=link, actor=request.user)
        self.message_user(request, "Revoked.")

    def has_change_permission(self, request, obj=None):
        # Needed for admin actions to show; the form itself has no editable fields.
        return request.user.is_superuser

    def get_readonly_fields(self, request, obj=None):
        return [field.name for field in ShareLink._meta.fields]


@admin.register(NotificationSubscription)
class SubscriptionAdmin(admin.ModelAdmin):
    list_display = ["kind", "target", "plan", "events", "active", "created_at"]
    readonly_fields = ["secret", "created_by", "created_at"]

    def save_model(self, request, obj, form, change):
        if change:
            super().save_model(request, obj, form, change)
            return
        created = subscription_create(
            actor=request.user, kind=obj.kind, target=obj.target, plan=obj.plan, events=obj.events
        )
        obj.pk = created.pk

    def delete_model(self, request, obj):
        subscription_delete(actor=request.user, subscription=obj)

    def delete_queryset(self, request, queryset):
        for subscription in queryset:
            subscription_delete(actor=request.user, subscription=subscription)


class AttemptInline(admin.TabularInline):
    model = DeliveryAttempt
    extra = 0
    can_delete = False
    readonly_fields = ["number", "at", "ok", "status_code", "error", "duration_ms"]

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(NotificationDelivery)
class DeliveryAdmin(ReadOnlyAdmin):
    list_display = ["id", "subscription", "event", "plan_id", "status", "attempts", "created_at"]
    list_filter = ["status", "event"]
    inlines = [AttemptInline]
