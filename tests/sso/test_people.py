"""Four eyes counts people, not accounts (issue 18): an identity-provider account and a
local account of one person (the same trusted e-mail, or an explicit link) are one person."""

import pytest
from django.core.exceptions import PermissionDenied

from dashboard.accounts.people import account_person_link, person_key
from dashboard.accounts.sso import sso_login_sync
from dashboard.audit.models import AuditEvent
from migrations_app.models import MigrationPlan
from migrations_app.selectors.approvals import approval_excluded_reason, approvals_valid_count
from migrations_app.workflow import services as workflow
from tests.factories import plan_make, plan_validate_stub

pytestmark = pytest.mark.django_db


def fresh(plan):
    return MigrationPlan.objects.get(pk=plan.pk)


def _idp_twin(make_user, local, *, verified=True, email=None, roles=("approver",)):
    twin = make_user(f"oidc-{local.username}")
    twin.email = email or local.email
    twin.save()
    sso_login_sync(
        user=twin,
        source="oidc",
        subject=f"sub-{local.username}",
        groups=[],
        email=twin.email,
        email_verified=verified,
    )
    for role in roles:
        from django.contrib.auth.models import Group

        twin.groups.add(Group.objects.get_or_create(name=role)[0])
    return twin


@pytest.fixture
def submitted(people):
    author = people["planner"]
    author.email = "Pat@Example.org"
    author.save()
    plan = plan_make(author)
    plan_validate_stub(plan)
    workflow.plan_submit(plan=plan, actor=author)
    return fresh(plan)


def test_it_refuses_the_authors_idp_account_with_the_same_verified_email(
    submitted, people, make_user
):
    twin = _idp_twin(make_user, people["planner"], email="pat@example.org")
    assert person_key(twin) == person_key(people["planner"])
    assert approval_excluded_reason(submitted, twin) == "same_person"
    with pytest.raises(PermissionDenied, match="another account of yours"):
        workflow.plan_approve(plan=submitted, actor=twin)
    assert not AuditEvent.objects.filter(action="plan.approve").exists()


def test_it_does_not_merge_people_on_an_unverified_address(submitted, people, make_user):
    twin = _idp_twin(make_user, people["planner"], verified=False)
    assert approval_excluded_reason(submitted, twin) == ""
    workflow.plan_approve(plan=submitted, actor=twin)
    assert fresh(submitted).status == "approved"


def test_it_merges_explicitly_linked_accounts(submitted, people, make_user):
    twin = _idp_twin(make_user, people["planner"], verified=False, email="other@example.org")
    admin = people["admin"]
    account_person_link(actor=admin, user=twin, person="pat")
    account_person_link(actor=admin, user=people["planner"], person="pat")
    assert AuditEvent.objects.filter(action="user.person_linked").count() == 2
    with pytest.raises(PermissionDenied, match="Four eyes"):
        workflow.plan_approve(plan=submitted, actor=twin)


def test_it_refuses_a_second_approval_by_another_account_of_the_same_person(
    submitted, people, make_user, settings
):
    settings.FERRY_APPROVALS_REQUIRED = 2
    ann = people["approver"]
    ann.email = "ann@example.org"
    ann.save()
    twin = _idp_twin(make_user, ann)
    workflow.plan_approve(plan=submitted, actor=ann)
    with pytest.raises(PermissionDenied, match="Another account of yours has already approved"):
        workflow.plan_approve(plan=fresh(submitted), actor=twin)
    assert approvals_valid_count(fresh(submitted)) == 1
    assert fresh(submitted).status == "submitted"
    workflow.plan_approve(plan=fresh(submitted), actor=people["approver2"])
    assert fresh(submitted).status == "approved"
