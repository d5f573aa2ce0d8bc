"""Schemathesis against the app's own OpenAPI schema, in process (WSGI), as an admin and as
a viewer: every operation, a bounded number of valid and invalid examples each, no 5xx and
every documented response conforms to the schema.

Path ids point at real objects half of the time so the fuzzing reaches past the 404s.
"""

import os
import time

import pytest
import schemathesis
from django.core.wsgi import get_wsgi_application
from django.test import override_settings
from drf_spectacular.generators import SchemaGenerator
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from knox.models import AuthToken
from schemathesis.checks import not_a_server_error
from schemathesis.generation.modes import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
)

from migrations_app.models import ItemAttempt, PlanRun
from tests.factories import plan_make, plan_validate_stub

pytestmark = pytest.mark.django_db(transaction=True)

EXAMPLES = int(os.environ.get("FERRY_FUZZ_EXAMPLES", "12"))
# Rendering a PDF takes a while; a few examples show it never fails.
SLOW = {"/api/v1/plans/{id}/change-record/pdf/": 3}
CHECKS = [not_a_server_error, response_schema_conformance, content_type_conformance]


def openapi_schema():
    schema = SchemaGenerator().get_schema(request=None, public=True)
    loaded = schemathesis.openapi.from_dict(schema)
    loaded.app = get_wsgi_application()
    return loaded


def seed(make_user):
    """Objects for the fuzzed ids to find, authored by someone who is neither fuzzer."""
    from migrations_app.notifications.services import subscription_create
    from migrations_app.sharing.services import share_link_create

    author = make_user("fz-author", "planner")
    plans = [plan_make(author, items=2) for _ in range(2)]
    plan_validate_stub(plans[0])
    item = plans[0].items.first()
    run = PlanRun.objects.create(plan=plans[1], started_by=author)
    attempt = ItemAttempt.objects.create(
        run=run,
        item=plans[1].items.first(),
        driver=ItemAttempt.Driver.REHEARSAL,
        source_host=item.source_host,
        destination_host=item.destination_host,
    )
    link, _ = share_link_create(plan=plans[0], actor=author)
    # A receiver on loopback, which only an admin's allowlist opens (M2).
    with override_settings(FERRY_WEBHOOK_ALLOW_HOSTS=["127.0.0.1/32"]):
        sub = subscription_create(
            actor=author, kind="webhook", target="http://127.0.0.1:9/h", plan=plans[0]
        )
    return {
        "plans": [p.pk for p in plans],
        "items": [i.pk for p in plans for i in p.items.all()],
        "runs": [run.pk],
        "attempts": [attempt.pk],
        "share-links": [link.pk],
        "notification-subscriptions": [sub.pk],
        "hosts": [item.source_host_id, item.destination_host_id],
        "vms": [item.vm_id],
    }


def real_ids(path: str, ids: dict) -> dict[str, list[int]]:
    resource = path.split("/")[3]
    found = {}
    if "{id}" in path and resource in ids:
        found["id"] = ids[resource]
    if "{item_id}" in path:
        found["item_id"] = ids["items"]
    if "{plan_id}" in path:
        found["plan_id"] = ids["plans"]
    return found


def fuzz_operation(operation, headers, ids, stats):
    modes = [GenerationMode.POSITIVE, GenerationMode.NEGATIVE]
    strategies = []
    for mode in modes:
        try:
            strategies.append(operation.as_strategy(generation_mode=mode))
        except Exception:  # noqa: S112 - some operations have nothing to negate
            continue
    known = real_ids(operation.path, ids)

    @settings(
        max_examples=SLOW.get(operation.path, EXAMPLES),
        deadline=None,
        database=None,
        derandomize=True,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=st.one_of(strategies), data=st.data())
    def run(case, data):
        if known and data.draw(st.booleans(), label="use real ids"):
            for name, values in known.items():
                case.path_parameters[name] = data.draw(st.sampled_from(values), label=name)
        response = case.call(headers=headers)
        stats["examples"] += 1
        stats["codes"][response.status_code // 100] = (
            stats["codes"].get(response.status_code // 100, 0) + 1
        )
        case.validate_response(response, checks=CHECKS)

    run()


@pytest.mark.parametrize("role", ["admin", "viewer"])
def test_it_never_answers_5xx_or_off_schema_to_fuzzed_requests(role, make_user, capsys):
    ids = seed(make_user)
    user = make_user(f"fz-{role}", role)
    headers = {"Authorization": f"Token {AuthToken.objects.create(user=user)[1]}"}
    schema = openapi_schema()
    stats = {"operations": 0, "examples": 0, "codes": {}}
    failures = []
    started = time.monotonic()
    for result in schema.get_all_operations():
        operation = result.ok()
        stats["operations"] += 1
        try:
            fuzz_operation(operation, headers, ids, stats)
        except Exception as exc:  # noqa: BLE001 - collect every operation's failure
            failures.append(f"{operation.method.upper()} {operation.path}: {exc}")
    with capsys.disabled():
        codes = ", ".join(f"{k}xx: {v}" for k, v in sorted(stats["codes"].items()))
        print(
            f"\nschemathesis as {role}: {stats['operations']} operations fuzzed, "
            f"{stats['examples']} examples run ({codes}) in {time.monotonic() - started:.0f} s"
        )
    assert not failures, "\n\n".join(failures)
