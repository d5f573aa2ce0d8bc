"""Random sequences of workflow actions by random people keep the workflow's invariants.

Invariants: a plan only ever moves along TRANSITIONS; a refused action changes nothing and
records nothing; every successful workflow action records exactly one audit event about the
plan; no plan runs without a valid approval by someone other than its author.
"""

from datetime import timedelta

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)

from dashboard.audit.models import AuditEvent
from dashboard.errors import FerryError
from migrations_app.models import MigrationPlan
from migrations_app.selectors.approvals import approvals_valid
from migrations_app.services.plans import plan_update
from migrations_app.workflow import services as workflow
from migrations_app.workflow.states import can_transition
from tests.factories import plan_make, plan_validate_stub

REFUSED = (FerryError, PermissionDenied, ValidationError)
ROLES = ["planner", "approver", "approver2", "operator", "viewer", "admin", "author_admin"]


def people_for(usual: str):
    """Anyone, but the role that usually does it more often, so runs get far enough."""
    return st.sampled_from([usual] * len(ROLES) + ROLES)


def _plan_events(plan) -> int:
    return AuditEvent.objects.filter(
        object_type="migrations_app.migrationplan", object_id=str(plan.pk)
    ).count()


class WorkflowMachine(RuleBasedStateMachine):
    """One plan, many people, any order of actions."""

    people: dict = {}

    @initialize(
        author=st.sampled_from(["planner", "author_admin"]),
        window=st.sampled_from(["open", "closed"]),
    )
    def make_plan(self, author, window):
        self.author = self.people[author]
        self.plan = plan_make(self.author, window=window)
        plan_validate_stub(self.plan)

    def _act(self, who: str, call, *, one_event: bool = True):
        plan = MigrationPlan.objects.get(pk=self.plan.pk)
        before_status, before_events = plan.status, _plan_events(plan)
        try:
            call(plan, self.people[who])
        except REFUSED:
            after = MigrationPlan.objects.get(pk=plan.pk)
            assert after.status == before_status, "a refused action changed the status"
            assert _plan_events(after) == before_events, "a refused action was recorded"
            return False
        after = MigrationPlan.objects.get(pk=plan.pk)
        if after.status != before_status:
            assert can_transition(before_status, after.status), (before_status, after.status)
        if one_event:
            assert _plan_events(after) == before_events + 1, "one audit event per change"
        return True

    @rule(who=people_for("planner"))
    def submit(self, who):
        self._act(who, lambda p, u: workflow.plan_submit(plan=p, actor=u))

    @rule(who=people_for("approver"), comment=st.sampled_from(["", "ok"]))
    def approve(self, who, comment):
        if self._act(who, lambda p, u: workflow.plan_approve(plan=p, actor=u, comment=comment)):
            assert self.people[who] != self.author, "the author approved their own plan"

    @rule(who=people_for("approver"), reason=st.sampled_from(["", "no"]))
    def reject(self, who, reason):
        self._act(who, lambda p, u: workflow.plan_reject(plan=p, actor=u, reason=reason))

    @rule(who=people_for("operator"), override=st.sampled_from(["", "urgent"]))
    def start(self, who, override):
        plan = MigrationPlan.objects.get(pk=self.plan.pk)
        approved_by_other = approvals_valid(plan).exclude(approver=self.author).exists()
        started = self._act(
            who, lambda p, u: workflow.plan_start(plan=p, actor=u, override_reason=override)
        )
        if started:
            assert approved_by_other, "started without a valid approval by a non-author"

    @rule(who=people_for("operator"))
    def pause(self, who):
        self._act(who, lambda p, u: workflow.plan_pause(plan=p, actor=u))

    @rule(who=people_for("operator"))
    def resume(self, who):
        self._act(who, lambda p, u: workflow.plan_resume(plan=p, actor=u))

    # Cancelling ends a run of the machine, so it mostly lacks its reason (and is refused).
    @rule(who=st.sampled_from(ROLES), reason=st.sampled_from(["", "", "", "", "stop"]))
    def cancel(self, who, reason):
        self._act(who, lambda p, u: workflow.plan_cancel(plan=p, actor=u, reason=reason))

    @rule(who=people_for("operator"), outcome=st.sampled_from(["completed", "failed"]))
    def finish(self, who, outcome):
        self._act(who, lambda p, u: workflow.plan_finish(plan=p, actor=u, outcome=outcome))

    @rule(who=people_for("operator"), hold=st.booleans())
    def hold(self, who, hold):
        service = workflow.plan_hold if hold else workflow.plan_release
        self._act(who, lambda p, u: service(plan=p, actor=u))

    @rule()
    def edit_and_revalidate(self):
        # The planner's edit (the plans engineer's service) voids approvals; then validate.
        def edit(plan, user):
            plan_update(plan=plan, actor=user, window_end=plan.window_end + timedelta(minutes=1))
            plan_validate_stub(MigrationPlan.objects.get(pk=plan.pk))

        self._act("planner", edit, one_event=False)

    @invariant()
    def running_plans_were_approved_by_someone_else(self):
        plan = MigrationPlan.objects.get(pk=self.plan.pk)
        if plan.status in ("running", "paused", "completed", "failed"):
            approvals = plan.approvals.filter(decision="approved", content_hash=plan.content_hash)
            assert approvals.exclude(approver=self.author).exists()
            assert not approvals.filter(approver=self.author).exists()


@pytest.mark.django_db
def test_it_keeps_the_invariants_under_random_sequences_of_actions(make_user, settings_fast):
    WorkflowMachine.people = {
        "planner": make_user("pat", "planner"),
        "approver": make_user("ann", "approver"),
        "approver2": make_user("abe", "approver"),
        "operator": make_user("oli", "operator"),
        "viewer": make_user("vic", "viewer"),
        "admin": make_user("ada", "admin"),
        "author_admin": make_user("boss", "admin", "planner", "approver", "operator"),
    }
    run_state_machine_as_test(
        WorkflowMachine,
        settings=settings(
            max_examples=30,
            stateful_step_count=30,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )


@pytest.fixture
def settings_fast(settings):
    settings.FERRY_APPROVALS_REQUIRED = 1
