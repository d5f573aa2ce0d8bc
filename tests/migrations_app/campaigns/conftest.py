"""Fixtures for campaign tests: the demo test-driver hosts (synced for real), fast
execution settings, and a loop that plays the worker's part for the campaign and its plans."""

import time

import pytest

from inventory.models import Host
from inventory.services import host_add
from inventory.sync import host_sync
from migrations_app.campaigns.engine import campaign_advance
from migrations_app.models import Campaign, ItemAttempt, PlanRun
from tests.conftest import DEMO_NODES


@pytest.fixture(autouse=True)
def _fast(settings):
    settings.FERRY_REHEARSAL_SPEED = 400.0
    settings.FERRY_SAMPLE_SECONDS = 0.02
    settings.FERRY_LEASE_SECONDS = 5
    settings.FERRY_TICK_SECONDS = 3600


def demo_hosts(*names: str, group: str) -> list[Host]:
    """Demo hosts registered and synced through libvirt's test driver."""
    hosts = []
    for name in names:
        host = host_add(
            name=name, uri=f"test://{DEMO_NODES / (name + '.xml')}", actor=None, group=group
        )
        assert host_sync(host=host).ok
        hosts.append(Host.objects.get(pk=host.pk))
    return hosts


@pytest.fixture
def site_a(db):
    """The three site-a demo hosts (one anti-affine db VM on each)."""
    return demo_hosts("kvm-a1", "kvm-a2", "kvm-a3", group="site-a")


@pytest.fixture
def site_b(db):
    """The site-b demo hosts: two busy ones and the empty spare kvm-b3 (one CPU model)."""
    return demo_hosts("kvm-b1", "kvm-b2", "kvm-b3", group="site-b")


def play(campaign: Campaign, *, timeout: float = 60, until=("completed", "failed", "paused")):
    """Drive the campaign and its runs like workers do, until it reaches `until`."""
    from migrations_app.execution.runner import execute
    from migrations_app.execution.scheduler import schedule_run

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        campaign_advance(campaign.pk)
        for run in PlanRun.objects.filter(plan__campaign=campaign, status="running"):
            schedule_run(run.pk)
            for attempt_id in ItemAttempt.objects.filter(run=run, status="queued").values_list(
                "pk", flat=True
            ):
                execute(attempt_id)
            schedule_run(run.pk)
        campaign.refresh_from_db()
        if campaign.status in until:
            return campaign
    raise AssertionError(f"campaign {campaign.pk} did not settle: {campaign.status}")
