"""Admin views of the platform's rows: the audit trail is read-only."""

from django.contrib import admin

from dashboard.audit.models import AuditEvent


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
