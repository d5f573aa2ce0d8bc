"""Four eyes under random sequences (H1): several people with overlapping roles edit,
submit, approve, reject and start one plan in any order; no plan ever starts whose content
was chosen (written, edited or submitted) and approved by one person.

The machine keeps its own record of who chose the content, independent of the code's
contributor list, and checks every start against it and against the audit trail.
"""

from datetime import timedelta

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, rule

from dashboard.audit.models import AuditEvent
from dashboard.errors import FerryError
from migrations_app.models import Approval, MigrationPlan
from migrations_app.services.plans import plan_update
from migrations_app.workflow import services as workflow
from tests.factories import plan_make, plan_validate_stub

REFUSED = (FerryError, PermissionDenied, ValidationError)
# Overlapping roles: who may edit may often approve too (the H1 precondition).
PEOPLE = {
    "pat": ("planner",),
    "ann": ("approver",),
    "xav": ("planner", "approver"),
    "yan": ("planner", "approver", "operator"),
    "ada": ("admin",),
    "boss": ("admin", "planner", "approver", "operator"),
    "oli": ("operator",),
}
NAMES = sorted(PEOPLE)


class FourEyesMachine(RuleBasedStateMachine):
    """One plan, seven people, any order of edits and workflow actions."""

    users: dict = {}

    @initialize(author=st.sampled_from(["pat", "xav", "yan", "ada", "boss"]))
    def make_plan(self, author):
        self.plan = plan_make(self.users[author], window="open")
        plan_validate_stub(self.plan)
        self.chose = {author}  # everyone who shaped the content, by the machine's record

    def _plan(self):
        return MigrationPlan.objects.get(pk=self.plan.pk)

    def _try(self, call) -> bool:
        try:
            call()
        except REFUSED:
            return False
        return True

    @rule(who=st.sampled_from(NAMES), what=st.sampled_from(["window", "ticket", "description"]))
    def edit(self, who, what):
        plan = self._plan()
        change = {
            "window": {"window_end": plan.window_end + timedelta(minutes=1)},
            "ticket": {"change_ticket": f"CHG-{plan.version}"},
            "description": {"description": f"v{plan.version}"},
        }[what]
        if self._try(lambda: plan_update(plan=plan, actor=self.users[who], **change)):
            self.chose.add(who)
            plan_validate_stub(self._plan())

    @rule(who=st.sampled_from(NAMES))
    def submit(self, who):
        if self._try(lambda: workflow.plan_submit(plan=self._plan(), actor=self.users[who])):
            self.chose.add(who)

    @rule(who=st.sampled_from(NAMES))
    def approve(self, who):
        if self._try(lambda: workflow.plan_approve(plan=self._plan(), actor=self.users[who])):
            assert who not in self.chose, f"{who} shaped the plan and approved it"

    @rule(who=st.sampled_from(NAMES))
    def reject(self, who):
        if self._try(
            lambda: workflow.plan_reject(plan=self._plan(), actor=self.users[who], reason="no")
        ):
            assert who not in self.chose, f"{who} shaped the plan and rejected it"

    @rule(who=st.sampled_from(NAMES))
    def start(self, who):
        if not self._try(lambda: workflow.plan_start(plan=self._plan(), actor=self.users[who])):
            return
        plan = self._plan()
        counted = Approval.objects.filter(
            plan=plan,
            decision="approved",
            voided_at__isnull=True,
            content_hash=plan.content_hash,
            audit_sequence__isnull=False,
        )
        approvers = set(counted.values_list("approver_name", flat=True))
        assert approvers, "started without an approval"
        assert not approvers & self.chose, f"approved by people who chose it: {approvers}"
        for approval in counted:
            event = AuditEvent.objects.get(sequence=approval.audit_sequence)
            assert event.action == "plan.approve" and event.actor_name == approval.approver_name
        # A started plan ends the story of this example.
        workflow.plan_cancel(plan=plan, actor=self.users["oli"], reason="example ends")


@pytest.mark.django_db
def test_it_never_starts_a_plan_chosen_and_approved_by_one_person(make_user, settings_one):
    FourEyesMachine.users = {name: make_user(name, *roles) for name, roles in PEOPLE.items()}
    FourEyesMachine.TestCase.settings = settings(
        max_examples=40,
        stateful_step_count=25,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )
    from hypothesis.stateful import run_state_machine_as_test

    run_state_machine_as_test(FourEyesMachine, settings=FourEyesMachine.TestCase.settings)


@pytest.fixture
def settings_one(settings):
    settings.FERRY_APPROVALS_REQUIRED = 1
