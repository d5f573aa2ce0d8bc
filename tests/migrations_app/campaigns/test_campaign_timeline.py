"""The campaign step timeline: stable step names, states before anything ran, and the
overhead arithmetic (overlapping intervals counted once)."""

from datetime import UTC, datetime, timedelta

import pytest

from migrations_app.campaigns.services import campaign_create
from migrations_app.campaigns.timeline import STEPS, _union_seconds, campaign_overhead
from tests.factories import host_make
from tests.migrations_app.campaigns.test_campaign_hooks_api import client_of

T0 = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def test_the_step_names_are_the_seven_the_change_record_lists():
    assert [name for _, name in STEPS] == [
        "enter maintenance",
        "drain",
        "gate",
        "host action",
        "wait healthy",
        "exit maintenance",
        "failback",
    ]


def test_overlapping_intervals_count_once_and_open_ones_not_at_all():
    assert _union_seconds([]) == 0
    assert _union_seconds([(at(0), at(10)), (at(5), at(15)), (at(20), at(25))]) == 20
    assert _union_seconds([(at(0), None), (None, at(3)), (at(4), at(4))]) == 0


@pytest.mark.django_db
def test_a_draft_shows_every_step_pending_and_no_overhead(people):
    host_make("tl-1")
    campaign = campaign_create(actor=people["planner"], name="draft", hosts=["tl-1"])
    body = client_of(people["viewer"]).get(f"/api/v1/campaigns/{campaign.pk}/timeline/").json()
    (host,) = body["hosts"]
    assert host["host"] == "tl-1" and host["phase"] == "pending"
    states = {s["key"]: s["state"] for s in host["steps"]}
    assert states.pop("failback") == "skipped"  # failback was not asked for
    assert set(states.values()) == {"pending"}
    assert all(s["start"] is None and s["duration_s"] is None for s in host["steps"])
    assert body["overhead"] == campaign_overhead(campaign)
    assert body["overhead"]["overhead_s"] is None
