"""Plans ready for the workflow, built straight through the ORM (no libvirt needed)."""

import itertools
import uuid
from datetime import timedelta

from django.utils import timezone

from inventory.models import Host, VirtualMachine
from migrations_app.content import plan_content_hash
from migrations_app.models import MigrationPlan, PlanItem, ValidationRun

_counter = itertools.count(1)


def host_make(name: str | None = None) -> Host:
    """A registered host (test driver URI, never contacted)."""
    name = name or f"host-{next(_counter)}"
    return Host.objects.create(name=name, uri=f"test:///{name}", transport="test")


def plan_make(
    author, *, items: int = 1, window: str = "open", name: str | None = None
) -> MigrationPlan:
    """A draft plan by `author` with `items` VMs moving between two hosts.

    window: "open" (now inside it), "closed" (it ended an hour ago) or "none".
    """
    source, destination = host_make(), host_make()
    now = timezone.now()
    windows = {
        "open": (now - timedelta(hours=1), now + timedelta(hours=4)),
        "closed": (now - timedelta(hours=5), now - timedelta(hours=1)),
        "none": (None, None),
    }
    start, end = windows[window]
    plan = MigrationPlan.objects.create(
        name=name or f"plan-{next(_counter)}",
        change_ticket="CHG-1001",
        author=author,
        author_name=author.get_username() if author else "",
        window_start=start,
        window_end=end,
    )
    for position in range(items):
        vm = VirtualMachine.objects.create(
            uuid=uuid.uuid4(), name=f"vm-{next(_counter)}", host=source, memory_mib=2048
        )
        PlanItem.objects.create(
            plan=plan,
            vm=vm,
            source_host=source,
            destination_host=destination,
            position=position,
        )
    return plan


def plan_validate_stub(plan: MigrationPlan, *, blockers: int = 0) -> ValidationRun:
    """A stored validation run of the plan's current content (what plan_validate records)."""
    return ValidationRun.objects.create(
        plan=plan,
        plan_version=plan.version,
        content_hash=plan_content_hash(plan),
        blockers=blockers,
        estimate={"makespan_s": 120},
    )
