from django.core.management.base import BaseCommand, CommandError

from inventory.load import host_load_sample, load_sample_all, measurable
from inventory.models import Host


class Command(BaseCommand):
    help = (
        "Read the measured load (libvirt bulk statistics) of every host now, or of one with "
        "--host; the housekeeping task does this every FERRY_LOAD_SAMPLE_SECONDS."
    )

    def add_arguments(self, parser):
        parser.add_argument("--host", help="name of one host")

    def handle(self, *args, host=None, **options):
        if host:
            found = Host.objects.filter(name=host).first()
            if found is None:
                raise CommandError(f"No host named '{host}'.")
            if not measurable(found):
                raise CommandError(
                    f"{found.name} is {found.get_transport_display()} / {found.state}: "
                    "Ferry samples active or maintenance hosts on a real libvirt driver only."
                )
            results = [host_load_sample(host=found).summary()]
        else:
            results = load_sample_all()
        failed = 0
        for result in results:
            if result["ok"]:
                self.stdout.write(
                    f"{result['host']}: {result['vms']} VM(s) sampled, "
                    f"{result['with_rates']} with a CPU rate (two samples needed)"
                )
            else:
                failed += 1
                self.stderr.write(f"{result['host']}: {result['error']}")
        if failed:
            raise CommandError(f"{failed} host(s) could not be sampled.")
