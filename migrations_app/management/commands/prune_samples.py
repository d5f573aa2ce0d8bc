from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from dashboard.audit.record import Actor
from inventory.load import load_samples_prune
from migrations_app.services.retention import progress_samples_prune


class Command(BaseCommand):
    help = (
        "Delete progress samples of finished attempts older than FERRY_SAMPLE_RETENTION_DAYS "
        "and load samples older than FERRY_LOAD_RETENTION_HOURS (attempts, items and audit "
        "events are never deleted); the housekeeping task does this periodically."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--days", type=int, help="progress-sample retention for this run (default: setting)"
        )

    def handle(self, *args, days=None, **options):
        if days is not None and days < 1:
            raise CommandError(
                "--days must be at least 1 (a retention of 0 keeps samples forever)."
            )
        progress = progress_samples_prune(days=days, actor=Actor.system("manage.py prune_samples"))
        load = load_samples_prune()
        kept = days if days is not None else settings.FERRY_SAMPLE_RETENTION_DAYS
        self.stdout.write(
            f"{progress} progress sample(s) deleted (retention {kept or 'forever'} "
            f"day(s)); {load} load sample(s) deleted."
        )
