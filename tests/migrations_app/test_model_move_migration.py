"""Status links and notification subscriptions moved from the dashboard app to
migrations_app with their tables (state-only migrations): a database that holds rows made
by the previous schema keeps every one of them, readable through the new models."""

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

BEFORE = [("dashboard", "0004_audit_append_only"), ("migrations_app", "0002_runs")]
AFTER = [("dashboard", "0005_move_plan_features"), ("migrations_app", "0003_move_plan_features")]


@pytest.mark.django_db(transaction=True)
def test_it_keeps_share_links_and_subscriptions_made_by_the_previous_schema():
    executor = MigrationExecutor(connection)
    executor.migrate(BEFORE)
    old = executor.loader.project_state(BEFORE).apps
    user = old.get_model("auth", "User").objects.create(username="old-planner")
    plan = old.get_model("migrations_app", "MigrationPlan").objects.create(
        name="made before the move", author_id=user.pk, author_name="old-planner"
    )
    link = old.get_model("dashboard", "ShareLink").objects.create(
        token_hash="a" * 64, token_prefix="aaaaaa", plan_id=plan.pk, created_by_name="x"
    )
    subscription = old.get_model("dashboard", "NotificationSubscription").objects.create(
        kind="webhook", target="https://hooks.example/ferry", secret="s3", plan_id=plan.pk
    )
    delivery = old.get_model("dashboard", "NotificationDelivery").objects.create(
        subscription_id=subscription.pk, event="submitted", plan_id=plan.pk, body="{}"
    )
    old.get_model("dashboard", "DeliveryAttempt").objects.create(delivery_id=delivery.pk, number=1)

    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(executor.loader.graph.leaf_nodes())

    from migrations_app.models import (
        DeliveryAttempt,
        MigrationPlan,
        NotificationDelivery,
        NotificationSubscription,
        ShareLink,
    )

    moved_plan = MigrationPlan.objects.get(pk=plan.pk)
    assert ShareLink.objects.get(pk=link.pk).plan == moved_plan
    assert list(moved_plan.share_links.values_list("token_prefix", flat=True)) == ["aaaaaa"]
    kept = NotificationSubscription.objects.get(pk=subscription.pk)
    assert (kept.target, kept.secret, kept.plan_id) == (
        "https://hooks.example/ferry",
        "s3",
        plan.pk,
    )
    assert NotificationDelivery.objects.get(pk=delivery.pk).subscription == kept
    assert DeliveryAttempt.objects.filter(delivery_id=delivery.pk, number=1).count() == 1
    assert ShareLink._meta.db_table == "dashboard_sharelink"
