from django.apps import AppConfig


class InventoryConfig(AppConfig):
    """Hosts, storage pools, networks and VMs, synced from libvirt."""

    name = "inventory"

    def ready(self):
        from dashboard.audit.selectors import audit_visibility_register

        # Inventory is visible to every role: so are its audit events.
        audit_visibility_register(prefix="inventory.", permission="inventory.view")
