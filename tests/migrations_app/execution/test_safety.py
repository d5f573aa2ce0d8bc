"""The decision table every driver and the reconciler use after a failure: it never runs a
VM twice, never resumes a source after post-copy, never leaves an autostarting definition
behind, and never deletes a disk the VM references."""

import itertools

import pytest

from migrations_app.execution import safety as s
from migrations_app.execution.safety import Side, Situation, decide

RUN = Side("running", "booted", persistent=True, autostart=False)
PAUSED_MIG = Side("paused", "migration", persistent=True)
PAUSED_USER = Side("paused", "user", persistent=True)
PAUSED_PC = Side("paused", "postcopy", persistent=True)
PAUSED_PCF = Side("paused", "postcopy_failed", persistent=True)
SHUTOFF_MIGRATED = Side("shutoff", "migrated", persistent=True)
NONE = Side()
DOWN = Side(reachable=False, error="unreachable")
DST_RUN = Side("running", "migrated", persistent=True)
DST_INCOMING = Side("paused", "migration")
DST_LEFTOVER = Side("shutoff", "unknown", persistent=True)
DST_CRASHED = Side("crashed", "panicked", persistent=True)


def test_it_follows_a_job_that_still_runs():
    job = Side("running", "booted", persistent=True, migration_job=True)
    assert decide(Situation(job, DST_INCOMING)).verdict == s.IN_FLIGHT


def test_it_keeps_the_destination_and_disarms_the_source_after_a_switchover():
    d = decide(Situation(SHUTOFF_MIGRATED, DST_RUN, call=s.CALL_SUCCEEDED))
    assert d.verdict == s.ON_DESTINATION
    assert d.actions == [s.DISABLE_SOURCE_AUTOSTART]


def test_it_puts_autostart_back_when_the_vm_stays_on_its_source():
    d = decide(Situation(RUN, NONE, call=s.CALL_FAILED, source_autostart=True))
    assert d.verdict == s.ON_SOURCE and d.actions == [s.RESTORE_SOURCE_AUTOSTART]
    assert decide(Situation(RUN, NONE, source_autostart=False)).actions == []


def test_it_cleans_the_destination_when_the_move_failed():
    d = decide(Situation(RUN, DST_INCOMING, call=s.CALL_FAILED))
    assert d.verdict == s.ON_SOURCE and d.actions == [s.DESTROY_INCOMING]
    d = decide(Situation(RUN, DST_LEFTOVER, call=s.CALL_FAILED))
    assert d.actions == [s.UNDEFINE_DESTINATION_LEFTOVER]


def test_it_resumes_a_source_paused_by_the_migration_only_when_nothing_runs_elsewhere():
    d = decide(Situation(PAUSED_MIG, NONE, call=s.CALL_FAILED))
    assert d.verdict == s.ON_SOURCE and s.RESUME_SOURCE in d.actions
    d = decide(Situation(PAUSED_MIG, DST_INCOMING, call=s.CALL_FAILED))
    assert d.actions.index(s.DESTROY_INCOMING) < d.actions.index(s.RESUME_SOURCE)
    # Paused by a person or an I/O error: not Ferry's to resume.
    d = decide(Situation(PAUSED_USER, NONE, call=s.CALL_FAILED))
    assert d.verdict == s.NEEDS_ATTENTION and s.RESUME_SOURCE not in d.actions
    # Paused by Ferry's force-complete: Ferry's to resume.
    d = decide(Situation(PAUSED_USER, NONE, call=s.CALL_FAILED, ferry_paused_source=True))
    assert s.RESUME_SOURCE in d.actions


@pytest.mark.parametrize("source", [PAUSED_PC, PAUSED_PCF, PAUSED_MIG, SHUTOFF_MIGRATED])
@pytest.mark.parametrize(
    "destination", [Side("paused", "postcopy_failed", persistent=True), DST_INCOMING, NONE]
)
def test_it_never_resumes_the_source_once_post_copy_began(source, destination):
    d = decide(Situation(source, destination, postcopy_recorded=True))
    assert s.RESUME_SOURCE not in d.actions
    assert d.verdict in (s.NEEDS_ATTENTION, s.ON_DESTINATION)


def test_it_reads_post_copy_from_libvirt_when_the_database_missed_it():
    # A worker that crashed before recording post-copy: libvirt's reasons still say so.
    d = decide(Situation(PAUSED_PC, Side("running", "postcopy", persistent=True)))
    assert d.verdict == s.ON_DESTINATION
    d = decide(Situation(PAUSED_PCF, Side("paused", "postcopy_failed", persistent=True)))
    assert d.verdict == s.NEEDS_ATTENTION and s.RESUME_SOURCE not in d.actions


def test_it_pauses_the_copy_that_is_not_the_outcome_when_both_run():
    d = decide(Situation(RUN, DST_RUN, call=s.CALL_SUCCEEDED))
    assert s.PAUSE_SOURCE in d.actions and s.PAUSE_DESTINATION not in d.actions
    d = decide(Situation(RUN, DST_RUN, call=s.CALL_FAILED))
    assert d.actions == [s.PAUSE_DESTINATION]
    d = decide(Situation(RUN, DST_RUN, call=s.CALL_UNKNOWN))
    assert {s.PAUSE_SOURCE, s.PAUSE_DESTINATION} <= set(d.actions)
    assert all(x.verdict == s.NEEDS_ATTENTION for x in [d])


def test_it_acts_on_nothing_it_cannot_compare_when_a_host_does_not_answer():
    d = decide(Situation(PAUSED_MIG, DOWN, call=s.CALL_FAILED))
    assert d.verdict == s.NEEDS_ATTENTION and s.RESUME_SOURCE not in d.actions
    assert d.actions == [s.DISABLE_SOURCE_AUTOSTART]
    d = decide(Situation(DOWN, DST_RUN))
    assert d.verdict == s.NEEDS_ATTENTION and d.actions == []


def test_it_starts_nothing_when_the_guest_died_after_arriving():
    d = decide(Situation(SHUTOFF_MIGRATED, DST_CRASHED, call=s.CALL_SUCCEEDED))
    assert d.verdict == s.NEEDS_ATTENTION
    assert s.RESUME_SOURCE not in d.actions and d.actions == [s.DISABLE_SOURCE_AUTOSTART]


SIDES = [RUN, PAUSED_MIG, PAUSED_USER, PAUSED_PC, PAUSED_PCF, SHUTOFF_MIGRATED, NONE, DOWN]
DSTS = [DST_RUN, DST_INCOMING, DST_LEFTOVER, DST_CRASHED, NONE, DOWN, PAUSED_PCF]
CALLS = [s.CALL_SUCCEEDED, s.CALL_FAILED, s.CALL_UNKNOWN, s.CALL_NOT_MADE]


@pytest.mark.parametrize(
    "source,destination,call,postcopy", list(itertools.product(SIDES, DSTS, CALLS, [False, True]))
)
def test_no_decision_runs_the_vm_twice_or_leaves_the_source_armed(
    source, destination, call, postcopy
):
    situation = Situation(source, destination, postcopy_recorded=postcopy, call=call)
    d = decide(situation)
    acts = set(d.actions)
    # What would run after the actions.
    src_runs = (source.running and s.PAUSE_SOURCE not in acts) or s.RESUME_SOURCE in acts
    dst_runs = destination.running and s.PAUSE_DESTINATION not in acts
    assert not (src_runs and dst_runs)
    if situation.postcopy:
        assert s.RESUME_SOURCE not in acts
    if s.RESUME_SOURCE in acts:
        assert destination.reachable and not destination.running
    if dst_runs and source.persistent and source.reachable:
        assert s.DISABLE_SOURCE_AUTOSTART in acts  # the source can never autostart again
    if not (source.reachable and destination.reachable):
        assert acts <= {s.DISABLE_SOURCE_AUTOSTART}


def test_it_deletes_only_copies_nothing_references_and_no_job_writes():
    copies = {"vda": "/new/vda.qcow2", "vdb": "/new/vdb.qcow2", "vdc": "/new/vdc.qcow2"}
    referenced = {"/new/vda.qcow2", "/old/vdb.qcow2"}  # vda pivoted; vdb not
    active = {"vdc"}  # vdc's mirror still runs
    assert s.storage_copies_to_delete(copies, referenced, active) == ["/new/vdb.qcow2"]
