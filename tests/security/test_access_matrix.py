"""Every role × every API operation and page: allowed ones are never refused, the rest are,
nothing is written by a refused request, list endpoints show only what a role may read, and
nobody ever gets a 500.

Operations come from the OpenAPI schema and pages from the URL resolver, so a new endpoint
is covered the day it is added: one without an entry in EXPECTED still gets the generic
rules (anonymous and role-less users refused, never a 500) and is listed in the output.
Each request runs in a savepoint that is rolled back, so every pair sees the same data.
"""

import json
import re

import pytest
from django.contrib.auth.models import AnonymousUser
from django.db import transaction
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver
from rest_framework.test import APIClient

from dashboard.audit.models import AuditEvent
from dashboard.permissions import ROLES, can
from migrations_app.models import ItemAttempt, PlanRun, RunEvent
from tests.factories import plan_make

pytestmark = pytest.mark.django_db

SUBJECTS = (*ROLES, "norole", "anonymous")
REFUSED = {401, 403, 404}

# (METHOD, path template) -> who may: a matrix action, a tuple of actions (any of them), or
# "authenticated" (anyone signed in, role or not).
EXPECTED: dict[tuple[str, str], str | tuple[str, ...]] = {
    ("GET", "/api/v1/attempts/{id}/"): "plan.view",
    ("GET", "/api/v1/attempts/{id}/samples/"): "plan.view",
    ("GET", "/api/v1/audit-events/"): ("audit.view", "audit.view_own"),
    ("GET", "/api/v1/audit-events/{sequence}/"): ("audit.view", "audit.view_own"),
    ("GET", "/api/v1/audit-events/export/"): ("audit.view", "audit.view_own"),
    ("GET", "/api/v1/auth/token/"): "authenticated",
    ("POST", "/api/v1/auth/token/"): "authenticated",
    ("DELETE", "/api/v1/auth/token/"): "authenticated",
    ("GET", "/api/v1/hosts/"): "inventory.view",
    ("POST", "/api/v1/hosts/"): "host.register",
    ("GET", "/api/v1/hosts/{id}/"): "inventory.view",
    ("PATCH", "/api/v1/hosts/{id}/"): "inventory.manage",
    ("POST", "/api/v1/hosts/{id}/sync/"): "inventory.manage",
    ("POST", "/api/v1/items/{id}/cancel/"): "plan.run",
    ("POST", "/api/v1/items/{id}/force-complete/"): "plan.run",
    ("POST", "/api/v1/items/{id}/retry/"): "plan.run",
    ("GET", "/api/v1/live/dashboard/"): "plan.view",
    ("GET", "/api/v1/live/plans/{plan_id}/"): "plan.view",
    ("GET", "/api/v1/networks/"): "inventory.view",
    ("GET", "/api/v1/networks/{id}/"): "inventory.view",
    ("GET", "/api/v1/notification-deliveries/"): "notification.manage",
    ("GET", "/api/v1/notification-deliveries/{id}/"): "notification.manage",
    ("GET", "/api/v1/notification-subscriptions/"): "notification.manage",
    ("POST", "/api/v1/notification-subscriptions/"): "notification.manage",
    ("GET", "/api/v1/notification-subscriptions/{id}/"): "notification.manage",
    ("DELETE", "/api/v1/notification-subscriptions/{id}/"): "notification.manage",
    ("GET", "/api/v1/plans/"): "plan.view",
    ("POST", "/api/v1/plans/"): "plan.edit",
    ("GET", "/api/v1/plans/{id}/"): "plan.view",
    ("PATCH", "/api/v1/plans/{id}/"): "plan.edit",
    ("DELETE", "/api/v1/plans/{id}/"): "plan.edit",
    ("POST", "/api/v1/plans/{id}/approve/"): "plan.approve",
    ("POST", "/api/v1/plans/{id}/cancel/"): ("plan.run", "plan.edit"),
    ("GET", "/api/v1/plans/{id}/change-record/"): "plan.view",
    ("GET", "/api/v1/plans/{id}/change-record/pdf/"): "plan.view",
    ("GET", "/api/v1/plans/{id}/estimate/"): "plan.view",
    ("POST", "/api/v1/plans/{id}/evacuate/"): "plan.edit",
    ("POST", "/api/v1/plans/{id}/hold/"): "plan.run",
    ("GET", "/api/v1/plans/{id}/items/"): "plan.view",
    ("POST", "/api/v1/plans/{id}/items/"): "plan.edit",
    ("GET", "/api/v1/plans/{id}/items/{item_id}/"): "plan.view",
    ("PATCH", "/api/v1/plans/{id}/items/{item_id}/"): "plan.edit",
    ("DELETE", "/api/v1/plans/{id}/items/{item_id}/"): "plan.edit",
    ("GET", "/api/v1/plans/{id}/hooks/"): "plan.view",
    ("POST", "/api/v1/plans/{id}/hooks/"): "plan.edit",
    ("DELETE", "/api/v1/plans/{id}/hooks/{hook_id}/"): "plan.edit",
    ("POST", "/api/v1/plans/{id}/move-to-group/"): "plan.edit",
    ("POST", "/api/v1/plans/{id}/pause/"): "plan.run",
    ("POST", "/api/v1/plans/{id}/place/"): "plan.edit",
    ("POST", "/api/v1/plans/{id}/reject/"): "plan.approve",
    ("POST", "/api/v1/plans/{id}/release/"): "plan.run",
    ("POST", "/api/v1/plans/{id}/resume/"): "plan.run",
    ("POST", "/api/v1/plans/{id}/rerun-failed/"): "plan.run",
    ("GET", "/api/v1/plans/{id}/share-links/"): "sharelink.manage",
    ("POST", "/api/v1/plans/{id}/share-links/"): "sharelink.manage",
    ("POST", "/api/v1/plans/{id}/start/"): "plan.run",
    ("POST", "/api/v1/plans/{id}/submit/"): "plan.submit",
    ("POST", "/api/v1/plans/{id}/transport-override/"): "plan.transport_override",
    ("POST", "/api/v1/plans/{id}/validate/"): "plan.edit",
    ("GET", "/api/v1/plans/{id}/validations/latest/"): "plan.view",
    ("GET", "/api/v1/runs/"): "plan.view",
    ("GET", "/api/v1/runs/{id}/"): "plan.view",
    ("GET", "/api/v1/runs/{id}/events/"): "plan.view",
    ("POST", "/api/v1/runs/{id}/finish/"): "plan.run",
    ("GET", "/api/v1/share-links/"): "sharelink.manage",
    ("GET", "/api/v1/share-links/{id}/"): "sharelink.manage",
    ("POST", "/api/v1/share-links/{id}/revoke/"): "sharelink.manage",
    ("GET", "/api/v1/storage-pools/"): "inventory.view",
    ("GET", "/api/v1/storage-pools/{id}/"): "inventory.view",
    ("PATCH", "/api/v1/storage-pools/{id}/"): "inventory.manage",
    ("GET", "/api/v1/vms/"): "inventory.view",
    ("GET", "/api/v1/vms/{id}/"): "inventory.view",
    ("GET", "/api/v1/history/"): "plan.view",
    ("GET", "/api/v1/plans/{id}/report.{kind}"): "plan.view",
    ("POST", "/api/v1/plans/balance/"): "plan.edit",
    ("POST", "/api/v1/plans/{id}/balance/"): "plan.edit",
    ("GET", "/api/v1/placement-rules/"): "plan.view",
    ("POST", "/api/v1/placement-rules/"): "plan.edit",
    ("GET", "/api/v1/placement-rules/{id}/"): "plan.view",
    ("PATCH", "/api/v1/placement-rules/{id}/"): "plan.edit",
    ("DELETE", "/api/v1/placement-rules/{id}/"): "plan.edit",
    ("GET", "/api/v1/users/{username}/roles/"): "users.manage",
    ("PUT", "/api/v1/users/{username}/roles/"): "users.manage",
    ("POST", "/api/v1/hosts/{id}/maintenance/"): "host.maintenance",
    ("GET", "/api/v1/campaigns/"): "plan.view",
    ("POST", "/api/v1/campaigns/"): "plan.edit",
    ("GET", "/api/v1/campaigns/{id}/"): "plan.view",
    ("POST", "/api/v1/campaigns/{id}/hooks/"): "plan.edit",
    ("POST", "/api/v1/campaigns/{id}/transport-override/"): "plan.transport_override",
    ("POST", "/api/v1/campaigns/{id}/submit/"): "plan.submit",
    ("POST", "/api/v1/campaigns/{id}/approve/"): "plan.approve",
    ("POST", "/api/v1/campaigns/{id}/reject/"): "plan.approve",
    ("POST", "/api/v1/campaigns/{id}/start/"): "plan.run",
    ("POST", "/api/v1/campaigns/{id}/pause/"): "plan.run",
    ("POST", "/api/v1/campaigns/{id}/resume/"): "plan.run",
    ("POST", "/api/v1/campaigns/{id}/cancel/"): "plan.run",
    ("GET", "/api/v1/campaigns/{id}/timeline/"): "plan.view",
    ("GET", "/api/v1/campaigns/{id}/change-record/"): "plan.view",
    ("GET", "/api/v1/campaigns/{id}/change-record/pdf/"): "plan.view",
    ("GET", "/api/v1/campaigns/{id}/share-links/"): "sharelink.manage",
    ("POST", "/api/v1/campaigns/{id}/share-links/"): "sharelink.manage",
}

# URL name -> (method, who may). Pages are signed-in only; "public" pages need no login.
PAGES: dict[str, tuple[str, str | tuple[str, ...]]] = {
    "home": ("GET", "inventory.view"),
    "login": ("GET", "public"),
    "inventory:host-list": ("GET", "inventory.view"),
    "inventory:host-detail": ("GET", "inventory.view"),
    "inventory:host-sync": ("POST", "inventory.manage"),
    "inventory:host-add": ("POST", "host.register"),
    "inventory:vm-detail": ("GET", "inventory.view"),
    "plans:plan-list": ("GET", "plan.view"),
    "plans:plan-create": ("POST", "plan.edit"),
    "plans:plan-detail": ("GET", "plan.view"),
    "plans:plan-add": ("POST", "plan.edit"),
    "plans:plan-evacuate": ("POST", "plan.edit"),
    "plans:plan-place": ("POST", "plan.edit"),
    "plans:plan-validate": ("POST", "plan.edit"),
    "plans:plan-item-update": ("POST", "plan.edit"),
    "plans:plan-item-remove": ("POST", "plan.edit"),
    "plans:history": ("GET", "plan.view"),
    "plans:plan-balance-new": ("POST", "plan.edit"),
    "plans:rule-create": ("POST", "plan.edit"),
    "plans:rule-toggle": ("POST", "plan.edit"),
    "plans:rule-delete": ("POST", "plan.edit"),
    "plans:campaign-list": ("GET", "plan.view"),
    "plans:campaign-create": ("POST", "plan.edit"),
    "plans:campaign-change-record": ("GET", "plan.view"),
    "plans:campaign-change-record-pdf": ("GET", "plan.view"),
    "plans:campaign-sharelink-create": ("POST", "sharelink.manage"),
    "audit-list": ("GET", ("audit.view", "audit.view_own")),
    "audit-export": ("GET", ("audit.view", "audit.view_own")),
    "audit-plan-timeline": ("GET", "plan.view"),
    "change-record": ("GET", "plan.view"),
    "change-record-pdf": ("GET", "plan.view"),
    "sharelink-create": ("POST", "sharelink.manage"),
    "sharelink-revoke": ("POST", "sharelink.manage"),
    "plan-workflow/submit": ("POST", "plan.submit"),
    "plan-workflow/approve": ("POST", "plan.approve"),
    "plan-workflow/reject": ("POST", "plan.approve"),
    "plan-workflow/start": ("POST", "plan.run"),
    "plan-workflow/pause": ("POST", "plan.run"),
    "plan-workflow/resume": ("POST", "plan.run"),
    "plan-workflow/hold": ("POST", "plan.run"),
    "plan-workflow/release": ("POST", "plan.run"),
    "plan-workflow/cancel": ("POST", ("plan.run", "plan.edit")),
    "plan-rerun-failed": ("POST", "plan.run"),
}
# The workflow buttons leave the decision to the service and answer every refusal with a
# redirect back to the plan page and a message: for them "refused" means nothing written.
REDIRECT_REFUSALS = {"plan-workflow"}
# Not role pages: the API (covered above, and by its schema), Django's admin (staff only),
# the schema and docs, /metrics (scraper token or address), status links (token), logout.
PAGES_SKIPPED = {
    "logout",
    "schema",
    "api-docs",
    "metrics",
    "status-page",
    "status-snapshot",  # the status page's JSON twin, guarded by the same link token
    "live-plan",
    # Single sign-on's redirect and callback (tests/sso): 404 unless OIDC is configured.
    "oidc_authentication_init",
    "oidc_authentication_callback",
}


def allowed(user, rule) -> bool:
    if rule == "public":
        return True
    if not user.is_authenticated:
        return False
    if rule == "authenticated":
        return True
    rules = rule if isinstance(rule, tuple) else (rule,)
    return any(can(user, action) for action in rules)


@pytest.fixture
def world(make_user, settings):
    """One of everything, plus a user per role; authors are distinct people."""
    settings.FERRY_WEBHOOK_ALLOW_HOSTS = ["127.0.0.1/32"]  # loopback receivers (M2)
    from migrations_app.notifications.services import subscription_create
    from migrations_app.sharing.services import share_link_create

    users = {role: make_user(f"m-{role}", role) for role in ROLES}
    users["norole"] = make_user("m-norole")
    users["anonymous"] = AnonymousUser()
    author = make_user("m-author", "planner")
    plan = plan_make(author, items=2)
    item = plan.items.order_by("position").first()
    run = PlanRun.objects.create(plan=plan, started_by=author)
    attempt = ItemAttempt.objects.create(
        run=run,
        item=item,
        driver=ItemAttempt.Driver.REHEARSAL,
        source_host=item.source_host,
        destination_host=item.destination_host,
    )
    RunEvent.objects.create(run=run, seq=1, kind="item.phase", item=item, payload={})
    PlanRun.objects.filter(pk=run.pk).update(event_seq=1)
    link, token = share_link_create(plan=plan, actor=author, label="matrix")
    admin = users["admin"]
    global_sub = subscription_create(
        actor=admin, kind="webhook", target="http://127.0.0.1:9/hook", plan=None
    )
    plan_sub = subscription_create(
        actor=author, kind="webhook", target="http://127.0.0.1:9/plan", plan=plan
    )
    from migrations_app.models.notifications import NotificationDelivery

    delivery = NotificationDelivery.objects.create(
        subscription=plan_sub, event="plan.submitted", plan_id=plan.pk, body="{}"
    )
    from inventory.models import Network, StoragePool

    pool = StoragePool.objects.create(name="pool-m", pool_type="dir", identity="dir:/m")
    network = Network.objects.create(name="net-m")
    from migrations_app.services.rules import rule_create

    rule = rule_create(actor=admin, name="rule-m", kind="anti-affinity", tag="m")
    from migrations_app.campaigns.services import campaign_create

    campaign = campaign_create(actor=author, name="campaign-m", hosts=[item.source_host.name])
    campaign_link, _ = share_link_create(campaign=campaign, actor=author, label="matrix")
    event = AuditEvent.objects.order_by("sequence").first()
    return {
        "users": users,
        "author": author,
        "plan": plan,
        "item": item,
        "run": run,
        "attempt": attempt,
        "link": link,
        "token": token,
        "global_sub": global_sub,
        "plan_sub": plan_sub,
        "delivery": delivery,
        "pool": pool,
        "network": network,
        "rule": rule,
        "campaign": campaign,
        "campaign_link": campaign_link,
        "event": event,
    }


RESOURCE_IDS = {
    "attempts": lambda w: w["attempt"].pk,
    "campaigns": lambda w: w["campaign"].pk,
    "audit-events": lambda w: w["event"].sequence,
    "hosts": lambda w: w["item"].source_host_id,
    "items": lambda w: w["item"].pk,
    "networks": lambda w: w["network"].pk,
    "notification-deliveries": lambda w: w["delivery"].pk,
    "notification-subscriptions": lambda w: w["plan_sub"].pk,
    "plans": lambda w: w["plan"].pk,
    "placement-rules": lambda w: w["rule"].pk,
    "live": lambda w: w["plan"].pk,
    "runs": lambda w: w["run"].pk,
    "share-links": lambda w: w["link"].pk,
    "storage-pools": lambda w: w["pool"].pk,
    "vms": lambda w: w["item"].vm_id,
    "users": lambda w: w["users"]["viewer"].username,
}


def fill(template: str, world) -> str:
    resource = template.split("/")[3]

    def value(match):
        name = match.group(1)
        if name == "item_id":
            return str(world["item"].pk)
        if name == "plan_id":
            return str(world["plan"].pk)
        if name == "kind":
            return "json"
        return str(RESOURCE_IDS[resource](world))

    return re.sub(r"{(\w+)}", value, template)


def schema_operations(client) -> list[tuple[str, str]]:
    response = client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert response.status_code == 200
    schema = json.loads(response.content)
    return [
        (method.upper(), path)
        for path, ops in schema["paths"].items()
        for method in ops
        if method in ("get", "post", "put", "patch", "delete")
    ]


def api_client(user) -> APIClient:
    client = APIClient()
    if user.is_authenticated:
        client.force_authenticate(user)
    return client


def request_in_savepoint(client, method: str, url: str, data=None):
    """One request whose writes are rolled back; returns (status, body, audit rows added)."""
    before = AuditEvent.objects.count()
    with transaction.atomic():
        kwargs = {"format": "json"} if isinstance(client, APIClient) else {}
        if method in ("POST", "PATCH", "PUT"):
            response = getattr(client, method.lower())(url, data or {}, **kwargs)
        else:
            response = getattr(client, method.lower())(url)
        added = AuditEvent.objects.count() - before
        transaction.set_rollback(True)
    return response, added


def test_it_allows_and_refuses_every_api_operation_as_the_matrix_says(world, capsys):
    operations = schema_operations(api_client(world["users"]["admin"]))
    unknown = sorted(set(operations) - set(EXPECTED))
    gone = sorted(set(EXPECTED) - set(operations))
    assert not gone, f"operations in EXPECTED but not in the schema any more: {gone}"
    failures, pairs = [], 0
    for method, template in operations:
        url = fill(template, world)
        rule = EXPECTED.get((method, template))
        for subject in SUBJECTS:
            user = world["users"][subject]
            response, audited = request_in_savepoint(api_client(user), method, url)
            code = response.status_code
            pairs += 1
            where = f"{subject:9} {method:6} {template} -> {code}"
            if code >= 500:
                failures.append(f"{where}: server error")
            elif rule is None:
                if subject in ("anonymous", "norole") and code not in REFUSED:
                    failures.append(f"{where}: unlisted operation not refused")
            elif allowed(user, rule):
                if code in (401, 403):
                    failures.append(f"{where}: refused, but the matrix allows it")
            elif code not in REFUSED:
                failures.append(f"{where}: allowed, but the matrix refuses it")
            elif audited:
                failures.append(f"{where}: refused but wrote {audited} audit event(s)")
    with capsys.disabled():
        print(
            f"\naccess matrix: {pairs} role × API operation pairs checked "
            f"({len(operations)} operations × {len(SUBJECTS)} subjects)"
        )
        if unknown:
            print(
                f"access matrix: operations without a declared rule (generic checks only): "
                f"{unknown}"
            )
    assert not failures, "\n".join(failures)


def page_patterns():
    """(url name, route kwargs) for every named page route outside the API and admin."""
    found = []

    def walk(patterns, prefix="", namespace=""):
        for entry in patterns:
            if isinstance(entry, URLResolver):
                route = str(entry.pattern)
                if route.startswith(("api/", "admin/")):
                    continue
                ns = entry.namespace or ""
                walk(entry.url_patterns, prefix + route, f"{namespace}{ns}:" if ns else namespace)
            elif isinstance(entry, URLPattern) and entry.name:
                name = f"{namespace}{entry.name}"
                if str(entry.pattern).startswith("api/"):
                    continue
                kwargs = list(entry.pattern.converters)
                if "action" in kwargs:
                    from migrations_app.views.workflow import _WORKFLOW

                    found.extend((f"{name}/{verb}", kwargs) for verb in _WORKFLOW)
                else:
                    found.append((name, kwargs))

    walk(get_resolver().url_patterns)
    return found


def page_url(name: str, kwarg_names, world) -> str:
    from django.urls import reverse

    values = {
        "pk": world["plan"].pk,
        "item_id": world["item"].pk,
        "link_id": world["link"].pk,
        "rule_id": world["rule"].pk,
        "fmt": "csv",
        "token": world["token"],
    }
    name, _, values["action"] = name.partition("/")
    if name in ("inventory:host-detail", "inventory:host-sync"):
        values["pk"] = world["item"].source_host_id
    if name == "inventory:vm-detail":
        values["pk"] = world["item"].vm_id
    if name.startswith("plans:campaign-") and "pk" in kwarg_names:
        values["pk"] = world["campaign"].pk
    return reverse(name, kwargs={k: values[k] for k in kwarg_names})


def test_it_allows_and_refuses_every_page_as_the_matrix_says(world, capsys):
    pages = [(n, k) for n, k in page_patterns() if n not in PAGES_SKIPPED]
    names = {n for n, _ in pages}
    gone = sorted(set(PAGES) - names)
    assert not gone, f"pages in PAGES but not routed any more: {gone}"
    failures, pairs = [], 0
    for name, kwarg_names in pages:
        url = page_url(name, kwarg_names, world)
        method, rule = PAGES.get(name, ("GET", None))
        for subject in SUBJECTS:
            user = world["users"][subject]
            client = Client()
            if user.is_authenticated:
                client.force_login(user)
            response, audited = request_in_savepoint(client, method, url)
            code = response.status_code
            pairs += 1
            where = f"{subject:9} {method:4} {name} ({url}) -> {code}"
            to_login = code == 302 and "/login/" in response.get("Location", "")
            if code >= 500:
                failures.append(f"{where}: server error")
            elif rule is None:
                if subject == "anonymous" and not (to_login or code in REFUSED):
                    failures.append(f"{where}: unlisted page open to anonymous users")
            elif allowed(user, rule):
                if code in (401, 403) or to_login:
                    failures.append(f"{where}: refused, but the matrix allows it")
            elif not (code in REFUSED or to_login):
                redirect_ok = name.partition("/")[0] in REDIRECT_REFUSALS and code == 302
                if not redirect_ok or audited:
                    failures.append(f"{where}: allowed, but the matrix refuses it")
            elif audited:
                failures.append(f"{where}: refused but wrote {audited} audit event(s)")
    with capsys.disabled():
        print(f"\naccess matrix: {pairs} role × page pairs checked")
        unlisted = sorted(names - set(PAGES))
        if unlisted:
            print(f"access matrix: pages without a declared rule (generic checks only): {unlisted}")
    assert not failures, "\n".join(failures)


def test_it_shows_each_role_only_the_audit_events_it_may_read(world):
    """Non-auditors see their own actions and plan/inventory objects, nothing else."""
    from migrations_app.sharing.services import share_link_revoke

    share_link_revoke(link=world["link"], actor=world["author"])  # a dashboard.* event
    total = AuditEvent.objects.count()
    for subject in SUBJECTS:
        user = world["users"][subject]
        response = api_client(user).get("/api/v1/audit-events/", {"page_size": 500})
        if not user.is_authenticated or not (
            can(user, "audit.view") or can(user, "audit.view_own")
        ):
            assert response.status_code in REFUSED, subject
            continue
        assert response.status_code == 200, (subject, response.content[:300])
        rows = response.json()["results"]
        if can(user, "audit.view"):
            assert response.json()["count"] == total, subject
            continue
        for row in rows:
            own = row["actor_user_id"] == user.pk and row["actor_type"] == "user"
            assert own or row["object_type"].startswith(("migrations_app.", "inventory.")), (
                subject,
                row,
            )
        assert response.json()["count"] < total, subject


def test_it_never_shows_a_global_webhook_secret_to_non_admins(world):
    """A subscription's HMAC secret lets a holder forge signed notifications: it is shown
    once, in the answer to its creation (L2), and never listed again, to anyone."""
    secrets = (world["global_sub"].secret, world["plan_sub"].secret)
    for subject in ("planner", "operator", "admin"):
        client = api_client(world["users"][subject])
        listing = client.get("/api/v1/notification-subscriptions/")
        assert listing.status_code == 200
        assert not [s for s in secrets if s in listing.content.decode()], subject
        detail = client.get(f"/api/v1/notification-subscriptions/{world['global_sub'].pk}/")
        assert detail.status_code in REFUSED or not [
            s for s in secrets if s in detail.content.decode()
        ], subject


def test_it_never_shows_a_status_link_token_after_creation(world):
    for subject in ("planner", "operator", "admin"):
        client = api_client(world["users"][subject])
        for url in (
            "/api/v1/share-links/",
            f"/api/v1/share-links/{world['link'].pk}/",
            f"/api/v1/plans/{world['plan'].pk}/share-links/",
        ):
            response = client.get(url)
            assert response.status_code == 200, (subject, url)
            assert world["token"] not in response.content.decode(), (subject, url)


# -- the scope dimension: every role again, held for one host group only -----------------
# The world's hosts are in site-a. "<role>@site-a" must be allowed what the role allows;
# "<role>@site-b" must find every host, VM, plan, item, run and attempt of site-a absent
# (404, nothing written) and lists without them.
SCOPED_RESOURCES = {"hosts", "vms", "plans", "items", "runs", "attempts", "live", "campaigns"}
SCOPED_LISTS = (
    "/api/v1/campaigns/",
    "/api/v1/hosts/",
    "/api/v1/vms/",
    "/api/v1/plans/",
    "/api/v1/runs/",
    "/api/v1/share-links/",
)


@pytest.fixture
def scoped(world, make_user):
    from dashboard.accounts.roles import user_roles_set
    from inventory.models import Host

    plan = world["plan"]
    host_ids = {plan.items.first().source_host_id, plan.items.first().destination_host_id}
    Host.objects.filter(pk__in=host_ids).update(group="site-a")
    admin = world["users"]["admin"]
    users = {}
    for role in ROLES:
        for site in ("site-a", "site-b"):
            user = make_user(f"s-{role}-{site}")
            user_roles_set(actor=admin, user=user, roles={role: [site]})
            users[f"{role}@{site}"] = user
    return users


def test_it_scopes_every_api_operation_to_the_roles_host_groups(world, scoped, capsys):
    operations = schema_operations(api_client(world["users"]["admin"]))
    failures, pairs = [], 0
    for method, template in operations:
        resource = template.split("/")[3]
        rule = EXPECTED.get((method, template))
        if rule is None:
            continue
        url = fill(template, world)
        for subject, user in scoped.items():
            response, audited = request_in_savepoint(api_client(user), method, url)
            code = response.status_code
            pairs += 1
            where = f"{subject:18} {method:6} {template} -> {code}"
            if code >= 500:
                failures.append(f"{where}: server error")
            elif subject.endswith("@site-a"):
                if allowed(user, rule) and code in (401, 403):
                    failures.append(f"{where}: refused inside the role's scope")
            elif resource in SCOPED_RESOURCES and "{" in template:
                if code not in REFUSED:
                    failures.append(f"{where}: an object outside the scope was reachable")
                elif audited:
                    failures.append(f"{where}: refused but wrote {audited} audit event(s)")
    for subject, user in scoped.items():
        inside = subject.endswith("@site-a")
        events = api_client(user).get("/api/v1/audit-events/", {"page_size": 500})
        if events.status_code == 200 and not can(user, "audit.view"):
            others = [e for e in events.json()["results"] if e["actor_user_id"] != user.pk]
            if others:
                failures.append(f"{subject} reads {len(others)} audit event(s) of others")
        for url in SCOPED_LISTS:
            response = api_client(user).get(url)
            if response.status_code != 200:
                continue  # a list the role may not read at all (checked above)
            body = response.json()
            rows = body.get("results", body) if isinstance(body, dict) else body
            if not inside and rows:
                failures.append(f"{subject} GET {url}: lists {len(rows)} row(s) of site-a")
            if inside and not rows:
                failures.append(f"{subject} GET {url}: hides rows of its own group")
    with capsys.disabled():
        print(f"\naccess matrix: {pairs} scoped role × API operation pairs checked")
    assert not failures, "\n".join(failures)


def test_it_hides_pages_outside_the_roles_host_groups(world, scoped):
    from django.urls import reverse

    failures = []
    pages = {
        "inventory:host-detail": world["item"].source_host_id,
        "inventory:vm-detail": world["item"].vm_id,
        "plans:plan-detail": world["plan"].pk,
        "change-record": world["plan"].pk,
        "audit-plan-timeline": world["plan"].pk,
        "plans:campaign-detail": world["campaign"].pk,
        "plans:campaign-change-record": world["campaign"].pk,
        "plans:campaign-change-record-pdf": world["campaign"].pk,
    }
    for name, pk in pages.items():
        url = reverse(name, kwargs={"pk": pk})
        for subject, user in scoped.items():
            if not allowed(user, PAGES.get(name, ("GET", "plan.view"))[1]):
                continue
            client = Client()
            client.force_login(user)
            code = client.get(url).status_code
            if subject.endswith("@site-a") and code != 200:
                failures.append(f"{subject} {name}: {code} inside its scope")
            if subject.endswith("@site-b") and code != 404:
                failures.append(f"{subject} {name}: {code} outside its scope")
    # Revoking a status link (a POST page): a role outside the link's host groups gets a
    # 404 and the link stays as it was.
    revoke = reverse("sharelink-revoke", kwargs={"link_id": world["link"].pk})
    for subject, user in scoped.items():
        if subject.endswith("@site-b") and allowed(user, "sharelink.manage"):
            client = Client()
            client.force_login(user)
            code = client.post(revoke).status_code
            world["link"].refresh_from_db()
            if code != 404 or world["link"].revoked_at is not None:
                failures.append(f"{subject} sharelink-revoke: {code} outside its scope")
    for subject, user in scoped.items():
        client = Client()
        client.force_login(user)
        for name in ("inventory:host-list", "plans:plan-list", "home"):
            html = client.get(reverse(name)).content.decode()
            shown = world["plan"].name in html or world["item"].source_host.name in html
            if subject.endswith("@site-b") and shown:
                failures.append(f"{subject} {name}: shows site-a objects")
    assert not failures, "\n".join(failures)
