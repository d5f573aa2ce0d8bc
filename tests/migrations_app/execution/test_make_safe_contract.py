"""Both drivers answer a failure through one decision table (execution.safety): the
rehearsal driver's make_safe carries out the same decisions the libvirt driver does, so the
two cannot drift (the libvirt side is proven on the lab, tests/lab/test_safety_lab.py)."""

import pytest

from migrations_app.execution import safety
from migrations_app.execution.drivers import build_context
from migrations_app.execution.drivers.base import Known
from migrations_app.execution.drivers.rehearsal import RehearsalSession
from migrations_app.execution.scheduler import schedule_run
from migrations_app.models import ItemAttempt
from tests.migrations_app.execution.conftest import host

pytestmark = pytest.mark.django_db


def _session(approved_plan, start, policy=None):
    run = start(approved_plan([(host(), host())], policy=policy))
    schedule_run(run.pk)
    attempt = ItemAttempt.objects.get(run=run)
    return RehearsalSession(build_context(attempt))


def test_it_puts_the_vm_back_on_its_source_with_its_autostart_after_an_abort(approved_plan, start):
    session = _session(approved_plan, start)
    session.start()
    known = Known(call=safety.CALL_UNKNOWN, source_autostart=True)
    session.source_autostart = False  # turned off before the transfer, as the driver does
    result = session.make_safe(known)
    assert result["decision"]["verdict"] == safety.ON_SOURCE
    assert "aborted the migration job still running on the source" in result["done"]
    assert session.applied == [safety.RESTORE_SOURCE_AUTOSTART]
    assert session.source_autostart is True


def test_it_refuses_to_abort_once_post_copy_began(approved_plan, start):
    session = _session(approved_plan, start, policy={"on_no_convergence": "postcopy"})
    session.start()
    session.start_postcopy()
    session.sim.done = False  # still copying pages on demand
    result = session.make_safe(Known(call=safety.CALL_UNKNOWN, postcopy=True))
    assert result["decision"]["verdict"] == safety.NEEDS_ATTENTION
    assert "Post-copy is running" in result["decision"]["reason"]
    assert session.aborted is False and session.applied == []


def test_it_decides_like_the_table_for_every_simulated_situation(approved_plan, start):
    session = _session(approved_plan, start)
    for known in (Known(), Known(call=safety.CALL_SUCCEEDED), Known(postcopy=True)):
        situation = session.situation(known)
        if situation.source.migration_job:
            continue
        assert session.make_safe(known)["decision"] == safety.decide(situation).as_dict()
