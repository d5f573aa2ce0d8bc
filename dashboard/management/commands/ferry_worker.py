import logging
import os

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand
from django.utils.crypto import get_random_string

from dashboard.audit.forward import audit_forwarder_start
from dashboard.runtime.housekeeping import housekeeping_ensure
from dashboard.runtime.worker import prompt_worker, run_forever
from migrations_app.execution.tasks import on_worker_start

logger = logging.getLogger("ferry.worker")


class Command(BaseCommand):
    help = "Run one background worker for the configured task backend (database or RQ)."

    def handle(self, *args, **options):
        # Audit forwarding to syslog, when configured: a thread beside the task loop; of
        # all workers one sends at a time (see dashboard.audit.forward).
        audit_forwarder_start()
        if settings.TASK_BACKEND != "immediate":
            # Before taking tasks: recover attempts whose worker died (their leases expired)
            # and make sure the periodic execution tick is queued (it dies with a killed worker).
            on_worker_start()
            housekeeping_ensure()
        if settings.TASK_BACKEND == "rq":
            call_command("rqworker", "default", job_class="django_tasks_rq.Job")
        elif settings.TASK_BACKEND == "db":
            self.run_db_worker()
        else:
            self.stdout.write("FERRY_TASK_BACKEND=immediate runs tasks inline; no worker needed.")

    def run_db_worker(self):
        """django-tasks-db's loop re-raises a lost connection (e.g. PostgreSQL terminated the
        backend, a failover), which would end the process; start the loop again on a fresh
        connection instead. A normal stop (SIGTERM/SIGINT) returns and ends the command."""

        def make():
            # An enqueue wakes the worker at once (see runtime.worker); the interval is
            # only the fallback poll, for a wake-up that was lost.
            worker = prompt_worker(f"ferry-{os.getpid()}-{get_random_string(6)}")
            worker.configure_signals()
            return worker

        run_forever(make, on_restart=on_worker_start)
