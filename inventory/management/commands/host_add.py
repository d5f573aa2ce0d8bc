from django.core.management.base import BaseCommand, CommandError

from dashboard.audit.record import Actor
from inventory.services import InventoryError, host_add


class Command(BaseCommand):
    help = "Register a libvirt host by URI (then run sync_inventory --host NAME)."

    def add_arguments(self, parser):
        parser.add_argument("uri", help="libvirt URI, e.g. qemu+tls://kvm1.example/system")
        parser.add_argument("--name", required=True, help="name shown in Ferry")
        parser.add_argument("--group", default="", help="cluster or site")

    def handle(self, *args, uri, name, group, **options):
        try:
            host = host_add(
                name=name, uri=uri, group=group, actor=Actor.system("manage.py host_add")
            )
        except InventoryError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(f"Registered host {host.name} ({host.uri}, transport {host.transport}).")
