from django.apps import AppConfig


class InventoryConfig(AppConfig):
    """Hosts, storage pools, networks and VMs, synced from libvirt."""

    name = "inventory"
