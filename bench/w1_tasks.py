"""A publisher task for W1: runs inside Ferry's worker (in-process layer case) and emits
numbered run events through the same emit helper the runner uses."""

import time

from django_tasks import task


@task()
def publish(run_id: int, rate: float, seconds: float) -> int:
    """Emit `rate` events per second for `seconds`; each payload carries its send time."""
    from migrations_app.live.events import run_event
    from migrations_app.models import PlanRun

    run = PlanRun.objects.get(pk=run_id)
    interval = 1.0 / rate
    count = int(rate * seconds)
    start = time.perf_counter()
    for n in range(count):
        target = start + n * interval
        delay = target - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        run_event(run=run, kind="bench.tick", payload={"n": n, "sent": time.time()})
    return count
