"""The admin's subscription form checks a new subscription as the API does: a bad one is a
form error on the page, never a 500, and nothing is written."""

import pytest
from django.test import Client

from migrations_app.models import NotificationSubscription
from tests.factories import plan_make

pytestmark = pytest.mark.django_db

ADD = "/admin/migrations_app/notificationsubscription/add/"


def _post(admin_user, **fields):
    client = Client()
    client.force_login(admin_user)
    data = {"kind": "webhook", "target": "", "events": "[]", "active": "on", **fields}
    return client.post(ADD, data)


def test_a_bad_subscription_is_a_form_error_and_writes_nothing(people, settings):
    from migrations_app.models import Campaign

    admin_user = people["admin"]
    admin_user.is_staff = admin_user.is_superuser = True
    admin_user.save()
    plan = plan_make(people["planner"])
    campaign = Campaign.objects.create(name="c", author=people["planner"])
    both = _post(admin_user, target="https://hooks.example/x", plan=plan.pk, campaign=campaign.pk)
    assert both.status_code == 200 and "not both" in both.content.decode()
    metadata = _post(admin_user, target="http://169.254.169.254/latest")
    assert metadata.status_code == 200 and "errorlist" in metadata.content.decode()
    not_email = _post(admin_user, kind="email", target="nobody")
    assert not_email.status_code == 200 and "errorlist" in not_email.content.decode()
    assert not NotificationSubscription.objects.exists()
