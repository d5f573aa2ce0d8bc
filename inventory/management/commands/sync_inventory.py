from django.core.management.base import BaseCommand, CommandError

from dashboard.audit.record import Actor
from inventory.models import Host
from inventory.sync import host_sync


class Command(BaseCommand):
    help = "Sync hosts from libvirt now (all hosts, or one with --host)."

    def add_arguments(self, parser):
        parser.add_argument("--host", help="name of one host")

    def handle(self, *args, host=None, **options):
        hosts = Host.objects.order_by("name")
        if host:
            hosts = hosts.filter(name=host)
            if not hosts.exists():
                raise CommandError(f"No host named '{host}'. Register it with host_add first.")
        failed = 0
        for item in hosts:
            result = host_sync(host=item, actor=Actor.system("manage.py sync_inventory"))
            if result.ok:
                self.stdout.write(
                    f"{item.name}: {len(result.vms_created)} new, {len(result.vms_updated)} updated, "
                    f"{len(result.vms_moved)} moved, {len(result.vms_missing)} missing, "
                    f"{result.vms_unchanged} unchanged VMs; {result.pools} pools, "
                    f"{result.networks} networks"
                )
            else:
                failed += 1
                self.stderr.write(f"{item.name}: sync failed: {result.error}")
        if failed:
            raise CommandError(f"{failed} host(s) failed to sync.")
