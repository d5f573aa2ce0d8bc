"""Shared helpers of the benchmarks: Django setup on a scratch database, figures, stats.

A benchmark prints its figures as human lines and as `BENCH {json}` lines that
bench/run.py collects into bench/results/latest.json.
"""

import json
import os
import platform
import statistics
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def setup_django(scratch: bool = True) -> None:
    """Configure Django; with scratch=True and no DATABASE_URL, on a throwaway SQLite file."""
    sys.path.insert(0, str(REPO))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dashboard.settings")
    if scratch and not os.environ.get("DATABASE_URL"):
        os.environ["FERRY_DATA_DIR"] = tempfile.mkdtemp(prefix="ferry-bench-")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def percentile(values, q: float) -> float:
    """The q-th percentile (0–100) by linear interpolation."""
    data = sorted(values)
    if not data:
        return float("nan")
    k = (len(data) - 1) * q / 100
    low, high = int(k), min(int(k) + 1, len(data) - 1)
    return data[low] + (data[high] - data[low]) * (k - low)


def median(values) -> float:
    return statistics.median(values) if values else float("nan")


def machine() -> str:
    """A one-line description of this machine."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    try:
        kib = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f", {kib / 1024 / 1024:.0f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    return f"{os.cpu_count()} cores {cpu}{mem}, Python {platform.python_version()}"


def report(name: str, value, unit: str, target: str = "", met=None, notes: str = "") -> dict:
    """Print one figure (human line + BENCH json line) and return it."""
    record = {
        "name": name,
        "value": value,
        "unit": unit,
        "target": target,
        "met": met,
        "notes": notes,
    }
    verdict = "" if met is None else ("  [target met]" if met else "  [TARGET MISSED]")
    shown = f"{value:.3g}" if isinstance(value, float) else str(value)
    print(f"{name}: {shown} {unit}  (target {target or '—'}){verdict}  {notes}".rstrip())
    print("BENCH " + json.dumps(record), flush=True)
    return record
