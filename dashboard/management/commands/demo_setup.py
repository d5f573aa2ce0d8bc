import secrets
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand, CommandError

from dashboard.audit.record import Actor
from inventory.demo.generate_nodes import HOST_GROUPS
from inventory.models import Host
from inventory.services import host_add
from inventory.sync import host_sync
from migrations_app.campaigns.services import campaign_create, campaign_submit
from migrations_app.models import Campaign

DEMO_CAMPAIGN_HOSTS = ("kvm-b1", "kvm-b2", "kvm-b3")
NODES = Path(__file__).resolve().parents[3] / "inventory" / "demo" / "nodes"


class Command(BaseCommand):
    help = (
        "Load the demo inventory (libvirt test-driver hosts, synced for real) and create an "
        "admin account whose password is printed once. Safe to run again."
    )

    def add_arguments(self, parser):
        parser.add_argument("--no-admin", action="store_true", help="do not create the admin")

    def handle(self, *args, no_admin=False, **options):
        if not settings.FERRY_DEMO:
            raise CommandError(
                "The demo inventory uses libvirt's test driver, which reads files: set "
                "FERRY_DEMO=true (as `make run` does) on a demo server only."
            )
        actor = Actor.system("demo_setup")
        for node in sorted(NODES.glob("*.xml")):
            name = node.stem
            host = Host.objects.filter(name=name).first()
            if host is None:
                host = host_add(
                    name=name, uri=f"test://{node}", group=HOST_GROUPS.get(name, ""), actor=actor
                )
            if host.last_sync_at is None:
                result = host_sync(host=host, actor=actor)
                status = "synced" if result.ok else f"sync failed: {result.error}"
                self.stdout.write(f"demo host {name}: {status}")
        self._demo_campaign(actor)
        if not no_admin:
            self._ensure_admin()

    def _demo_campaign(self, actor):
        """A rehearsal campaign a newcomer can approve and start: site-b, host by host, onto
        the spare kvm-b3, with failback (docs/campaigns.md)."""
        name = "Rolling maintenance of site-b (rehearsal)"
        if Campaign.objects.filter(name=name).exists():
            return
        if Host.objects.filter(name__in=DEMO_CAMPAIGN_HOSTS).count() < len(DEMO_CAMPAIGN_HOSTS):
            return
        campaign = campaign_create(
            actor=actor,
            name=name,
            description="Drain kvm-b1, then kvm-b2 (placement spreads their VMs, the spare "
            "kvm-b3 takes the anti-affine db VMs), gate, host action, wait healthy, exit; "
            "then every VM returns home. Demo hosts: the moves are rehearsed.",
            hosts=["kvm-b1", "kvm-b2"],
            change_ticket="CHG-DEMO-17",
            failback=True,
            policy={"require_tls": False, "verify_seconds": 2},
            healthy_timeout_s=120,
        )
        campaign_submit(campaign=campaign, actor=actor)
        self.stdout.write(f"demo campaign '{name}': submitted, waiting for an approver")

    def _ensure_admin(self):
        User = get_user_model()
        if User.objects.filter(is_superuser=True).exists():
            self.stdout.write("An admin account exists already (its password was printed once).")
            return
        password = secrets.token_urlsafe(12)
        user = User.objects.create_superuser("admin", "", password)
        user.groups.add(Group.objects.get(name="admin"))
        bar = "=" * 64
        self.stdout.write(
            f"{bar}\n  Ferry admin account created (shown only this once):\n"
            f"    user: admin\n    password: {password}\n{bar}"
        )
