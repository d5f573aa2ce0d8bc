"""Admin of plan features: status links and notification subscriptions with their log."""

from django import forms
from django.contrib import admin
from django.core.exceptions import ValidationError

from dashboard.audit.admin import ReadOnlyAdmin
from dashboard.errors import FerryError
from migrations_app.models import (
    DeliveryAttempt,
    NotificationDelivery,
    NotificationSubscription,
    ShareLink,
)
from migrations_app.notifications.services import (
    subscription_check,
    subscription_create,
    subscription_delete,
)
from migrations_app.sharing.services import share_link_revoke


@admin.register(ShareLink)
class ShareLinkAdmin(ReadOnlyAdmin):
    list_display = [
        "token_prefix",
        "plan",
        "campaign",
        "label",
        "created_by_name",
        "expires_at",
        "revoked_at",
    ]
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


class SubscriptionForm(forms.ModelForm):
    """Checks a new subscription as the API does, so a bad one is a form error, not a 500."""

    class Meta:
        model = NotificationSubscription
        fields = ["kind", "target", "plan", "campaign", "events", "active"]

    def clean(self):
        data = super().clean()
        if self.instance.pk is None and not self.errors:
            try:
                data["target"] = subscription_check(
                    kind=data.get("kind"),
                    target=data.get("target"),
                    plan=data.get("plan"),
                    campaign=data.get("campaign"),
                    events=data.get("events") or (),
                )
            except ValidationError as exc:
                if hasattr(exc, "error_dict"):
                    for field, errors in exc.message_dict.items():
                        self.add_error(field if field in self.fields else None, errors)
                else:
                    raise forms.ValidationError(exc.messages) from None
            except FerryError as exc:  # the webhook outbound rules
                self.add_error("target", str(exc))
        return data


@admin.register(NotificationSubscription)
class SubscriptionAdmin(admin.ModelAdmin):
    form = SubscriptionForm
    list_display = ["kind", "target", "plan", "campaign", "events", "active", "created_at"]
    readonly_fields = ["secret", "created_by", "created_at"]

    def save_model(self, request, obj, form, change):
        if change:
            super().save_model(request, obj, form, change)
            return
        created = subscription_create(
            actor=request.user,
            kind=obj.kind,
            target=obj.target,
            plan=obj.plan,
            campaign=obj.campaign,
            events=obj.events,
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
    list_display = [
        "id",
        "subscription",
        "event",
        "plan_id",
        "campaign_id",
        "status",
        "attempts",
        "created_at",
    ]
    list_filter = ["status", "event"]
    inlines = [AttemptInline]
