import os
import signal
import socket
import subprocess
import sys
import time

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError


class Command(BaseCommand):
    help = "Serve Ferry (Daphne, ASGI) together with a background worker, until interrupted."

    def add_arguments(self, parser):
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument("--workers", type=int, default=4, help="background workers to start")
        parser.add_argument(
            "--web-processes",
            type=int,
            default=1,
            help="Daphne processes sharing the port (more than 1 needs REDIS_URL)",
        )

    def handle(self, *args, host, port, workers, web_processes, **options):
        if web_processes < 1 or workers < 0:
            raise CommandError("--web-processes must be at least 1 and --workers at least 0")
        if web_processes > 1 and not settings.REDIS_URL:
            raise CommandError(
                "--web-processes above 1 needs REDIS_URL: the in-process channel layer cannot "
                "carry live events from one web process to another"
            )
        python = sys.executable
        manage = str(settings.BASE_DIR / "manage.py")
        env = dict(os.environ)
        # One listening socket, bound here and inherited: every Daphne process accepts on it,
        # so the kernel spreads connections over them (Python runs one core per process).
        try:
            family = socket.AF_INET6 if ":" in host else socket.AF_INET
            listener = socket.create_server((host, port), family=family, backlog=1024)
        except OSError as exc:
            raise CommandError(f"cannot listen on {host}:{port}: {exc.strerror}") from exc
        listener.set_inheritable(True)
        daphne = [python, "-m", "daphne", "--fd", str(listener.fileno())]
        if settings.SECURE_PROXY_SSL_HEADER:  # FERRY_BEHIND_PROXY: client addresses too
            daphne.append("--proxy-headers")
        commands = [[*daphne, "dashboard.asgi:application"] for _ in range(web_processes)]
        if settings.REDIS_URL or settings.TASK_BACKEND == "rq":
            # Events cross processes through Redis: workers run as their own processes.
            for _ in range(workers):
                commands.append([python, manage, "ferry_worker"])
            where = "separate processes"
        else:
            # In-process channel layer: workers must share Daphne's process to reach it.
            env["FERRY_EMBEDDED_WORKERS"] = str(workers)
            where = "threads inside the web process"
        children = [
            subprocess.Popen(cmd, env=env, pass_fds=(listener.fileno(),)) for cmd in commands
        ]
        listener.close()  # the children hold it now
        self.stdout.write(
            f"Ferry is serving on http://{host}:{port}/ with {web_processes} web process(es) "
            f"and {workers} worker(s) as {where}."
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
