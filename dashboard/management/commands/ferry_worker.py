from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Run one background worker for the configured task backend (database or RQ)."

    def handle(self, *args, **options):
        if settings.TASK_BACKEND != "immediate":
            # Before taking tasks: recover attempts whose worker died (their leases expired)
            # and make sure the periodic execution tick is queued (it dies with a killed worker).
            from migrations_app.execution.tasks import on_worker_start

            on_worker_start()
        if settings.TASK_BACKEND == "rq":
            call_command("rqworker", "default", job_class="django_tasks_rq.Job")
        elif settings.TASK_BACKEND == "db":
            call_command("db_worker", queue_name="*", reload=False)
        else:
            self.stdout.write("FERRY_TASK_BACKEND=immediate runs tasks inline; no worker needed.")
