import os
import signal
import subprocess
import sys
import time

from django.conf import settings
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Serve Ferry (Daphne, ASGI) together with a background worker, until interrupted."

    def add_arguments(self, parser):
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument("--workers", type=int, default=4, help="background workers to start")

    def handle(self, *args, host, port, workers, **options):
        python = sys.executable
        manage = str(settings.BASE_DIR / "manage.py")
        env = dict(os.environ)
        commands = [
            [python, "-m", "daphne", "-b", host, "-p", str(port), "dashboard.asgi:application"]
        ]
        if settings.REDIS_URL or settings.TASK_BACKEND == "rq":
            # Events cross processes through Redis: workers run as their own processes.
            for _ in range(workers):
                commands.append([python, manage, "ferry_worker"])
            where = "separate processes"
        else:
            # In-process channel layer: workers must share Daphne's process to reach it.
            env["FERRY_EMBEDDED_WORKERS"] = str(workers)
            where = "threads inside the web process"
        children = [subprocess.Popen(cmd, env=env) for cmd in commands]
        self.stdout.write(
            f"Ferry is serving on http://{host}:{port}/ with {workers} worker(s) as {where}."
        )

        def stop(*_):
            for child in children:
                if child.poll() is None:
                    child.terminate()

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        try:
            while all(child.poll() is None for child in children):
                time.sleep(0.5)
        finally:
            stop()
            for child in children:
                try:
                    child.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    child.kill()
        codes = [child.returncode for child in children]
        if any(code not in (0, -signal.SIGTERM, -signal.SIGINT) for code in codes):
            raise SystemExit(1)
