"""Lock order on PostgreSQL: a host sync (or any audited change of a host) against a
transaction that already holds the audit chain's lock and needs that host's row.

Seen on the lab before the fix: a worker's resync of lab-b after a preempted move held
lab-b's row FOR UPDATE and waited for the chain; a worker claiming the urgent move onto
lab-b held the chain and, at COMMIT, checked its foreign key to lab-b. PostgreSQL killed
the claim as a deadlock, and the urgent move stayed queued with no task to start it.
"""

import threading
import time

import pytest
from django.db import connection, connections, transaction

from dashboard.audit.record import lock_chain
from inventory.models import Host, VirtualMachine
from inventory.services import host_maintenance_enter, host_update
from inventory.sync import host_sync
from tests.conftest import skip_or_fail
from tests.factories import host_make

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


@pytest.fixture(autouse=True)
def _postgresql_only():
    if connection.vendor != "postgresql":
        skip_or_fail("lock order needs real concurrent transactions: PostgreSQL (DATABASE_URL)")


def _someone_waits(timeout=5.0) -> bool:
    """Whether another session waits for a lock (the second transaction reached it)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(*) FROM pg_locks WHERE NOT granted AND pid <> pg_backend_pid()"
            )
            if cursor.fetchone()[0]:
                return True
        time.sleep(0.05)
    return False


def _while_holding_the_chain(change, then):
    """Hold the chain's lock in this thread; start `change` in another thread; once it
    waits for a lock, run `then` (which touches the host's row) and commit. Returns what
    `change` returned or raised, and whether it had to wait."""
    outcome: dict = {}

    def other():
        try:
            outcome["result"] = change()
        except Exception as exc:  # asserted on below
            outcome["error"] = exc
        finally:
            connections.close_all()

    thread = threading.Thread(target=other)
    with transaction.atomic():
        lock_chain()
        thread.start()
        waited = _someone_waits()
        then()
    thread.join(timeout=30)
    assert not thread.is_alive()
    return outcome, waited


def _assert_both_done(outcome, waited):
    assert waited, "the audited change should have waited for the chain"
    assert "error" not in outcome, f"the audited change failed: {outcome.get('error')!r}"


def _audited_change(audited):
    """A host and one audited change of it: maintenance, an admin's update, a sync (of
    libvirt's test driver)."""
    if audited == "sync":
        host = Host.objects.create(name="t1", uri="test:///default", transport="test")
    else:
        host = host_make()
    return host, {
        "maintenance": lambda: host_maintenance_enter(host=host, actor=None, reason="lock order"),
        "update": lambda: host_update(host=host, actor=None, group="rack-7"),
        "sync": lambda: host_sync(host=host),
    }[audited]


AUDITED = ["maintenance", "update", "sync"]


@pytest.mark.parametrize("audited", AUDITED)
def test_an_audited_host_change_never_deadlocks_with_a_foreign_key_checked_at_commit(audited):
    host, change = _audited_change(audited)

    def insert_a_row_referencing_the_host():
        # Its foreign key to the host is checked at COMMIT (FOR KEY SHARE on the host row).
        VirtualMachine.objects.create(
            uuid=f"00000000-0000-0000-0000-{host.pk:012d}", name="fk", host=host
        )

    outcome, waited = _while_holding_the_chain(change, insert_a_row_referencing_the_host)
    _assert_both_done(outcome, waited)
    if audited == "sync":
        assert outcome["result"].ok, outcome["result"].error


@pytest.mark.parametrize("audited", AUDITED)
def test_an_audited_host_change_never_deadlocks_with_an_update_of_the_host_after_the_chain(
    audited,
):
    """A move's completion audits first and then updates the hosts' VM counts."""
    host, change = _audited_change(audited)
    outcome, waited = _while_holding_the_chain(
        change, lambda: Host.objects.filter(pk=host.pk).update(vm_count=41)
    )
    _assert_both_done(outcome, waited)
