"""Balance through the service, and placement rules in every plan builder.

The inventory is built in the database (hosts with full facts, a shared pool, a network),
the measured load as load samples, so the service runs exactly as in production: it
reads the group, averages the samples, asks the planner, writes the plan. Validation of
the resulting plan is the independent judge of "constraints never violated"; the band is
recomputed here from the samples.
"""

import datetime as dt
import itertools
import uuid

import pytest
from django.test import Client
from django.utils import timezone

from dashboard.audit.models import AuditEvent
from inventory.models import (
    Host,
    Network,
    StoragePool,
    VirtualDisk,
    VirtualMachine,
    VirtualNIC,
    VmLoadSample,
)
from migrations_app.models import BalanceRun, MigrationPlan, PlacementRule, PlanItem
from migrations_app.services.balancing import plan_balance, plan_create_balanced
from migrations_app.services.plans import (
    plan_add_vms,
    plan_create,
    plan_evacuate_host,
    plan_move_to_group,
)
from migrations_app.services.rules import rule_create
from migrations_app.services.validation import plan_validate

pytestmark = pytest.mark.django_db
GIB = 1024
_macs = itertools.count(1)


class Site:
    """Hosts with every fact the checks read, on one shared pool and network."""

    def __init__(self):
        self.pool = StoragePool.objects.create(
            name="shared",
            pool_type="netfs",
            identity="nfs:/vms",
            shared=True,
            available_bytes=10 * 1024**4,
        )
        self.net = Network.objects.create(name="prod", bridge="br0")
        self.hosts = {}

    def host(self, name, group="g1", *, memory_gib=64, cpus=16):
        host = Host.objects.create(
            name=name,
            uri=f"qemu+tls://{name}/system",
            transport="tls",
            group=group,
            hypervisor_type="QEMU",
            hypervisor_version=8_002_000,
            libvirt_version=10_000_000,
            arch="x86_64",
            cpu_vendor="Intel",
            cpu_model="Skylake-Server",
            cpus=cpus,
            memory_total_mib=memory_gib * GIB,
            memory_free_mib=memory_gib * GIB,
            machine_types=["pc-q35-8.2"],
            domain_types=["kvm"],
        )
        self.pool.hosts.add(host)
        self.net.hosts.add(host)
        self.hosts[name] = host
        return host

    def vm(self, name, host, *, memory_gib=4, vcpus=2, tags=()):
        vm = VirtualMachine.objects.create(
            uuid=uuid.uuid4(),
            name=name,
            host=host,
            state="running",
            vcpus=vcpus,
            memory_mib=memory_gib * GIB,
            cpu_mode="host-model",
            machine_type="pc-q35-8.2",
            arch="x86_64",
            domain_type="kvm",
            tags=list(tags),
        )
        VirtualDisk.objects.create(
            vm=vm,
            target="vda",
            device="disk",
            source_type="file",
            source=f"/vms/{name}.qcow2",
            pool=self.pool,
            capacity_bytes=10 * 1024**3,
        )
        VirtualNIC.objects.create(
            vm=vm,
            mac=f"52:54:00:00:00:{next(_macs):02x}",
            source_type="network",
            network=self.net,
            network_name="prod",
        )
        Host.objects.filter(pk=host.pk).update(memory_free_mib=host.memory_free_mib - vm.memory_mib)
        host.refresh_from_db()
        return vm

    @staticmethod
    def measure(vm, *, cpu, memory_gib):
        """Two samples in the load window: what the sampler would have stored."""
        now = timezone.now()
        for minutes in (2, 12):
            VmLoadSample.objects.create(
                vm=vm,
                host=vm.host,
                at=now - dt.timedelta(minutes=minutes),
                cpu_cores=cpu,
                memory_used_mib=memory_gib * GIB,
            )


@pytest.fixture
def site():
    return Site()


@pytest.fixture
def skewed(site):
    """g1: h1 carries most of the load, h2 and h3 little; one anti-affinity rule on 'db'."""
    h1, h2, h3 = (site.host(n) for n in ("h1", "h2", "h3"))
    vms = {}
    for i in range(6):
        vms[f"app{i}"] = site.vm(f"app{i}", h1, memory_gib=6)
        site.measure(vms[f"app{i}"], cpu=1.5, memory_gib=5)
    vms["db1"] = site.vm("db1", h1, memory_gib=8, tags=["db"])
    site.measure(vms["db1"], cpu=2.0, memory_gib=7)
    vms["db2"] = site.vm("db2", h2, memory_gib=8, tags=["db"])
    site.measure(vms["db2"], cpu=0.5, memory_gib=7)
    vms["small"] = site.vm("small", h3, memory_gib=2)
    site.measure(vms["small"], cpu=0.2, memory_gib=1)
    rule_create(actor=None, name="db apart", kind="anti-affinity", tag="db")
    return vms


def _final_hosts(plan):
    where = dict(VirtualMachine.objects.values_list("pk", "host_id"))
    for vm_id, dest in PlanItem.objects.filter(plan=plan).values_list(
        "vm_id", "destination_host_id"
    ):
        where[vm_id] = dest
    return where


def _band(site, where, target):
    """Per host (memory %, CPU %) of the measured load after the plan, and the means."""
    load = {}
    for s in VmLoadSample.objects.all():
        cpu, mem, n = load.get(s.vm_id, (0.0, 0.0, 0))
        load[s.vm_id] = (cpu + s.cpu_cores, mem + s.memory_used_mib, n + 1)
    used = {h.pk: [0.0, 0.0] for h in site.hosts.values()}
    for vm_id, (cpu, mem, n) in load.items():
        used[where[vm_id]][0] += mem / n
        used[where[vm_id]][1] += cpu / n
    caps = {h.pk: (h.memory_total_mib, h.cpus) for h in site.hosts.values()}
    mean_m = sum(u[0] for u in used.values()) / sum(c[0] for c in caps.values())
    mean_c = sum(u[1] for u in used.values()) / sum(c[1] for c in caps.values())
    return {
        hid: (u[0] / caps[hid][0] - mean_m, u[1] / caps[hid][1] - mean_c) for hid, u in used.items()
    }


def test_it_builds_a_plan_that_reaches_the_band_and_passes_validation(site, skewed, people):
    plan, run = plan_create_balanced(actor=people["planner"], group="g1", target_pct=10)
    assert run.reached and run.moves == PlanItem.objects.filter(plan=plan).count() > 0
    # Within ±10 points on both resources, recomputed from the samples, not the planner.
    for dm, dc in _band(site, _final_hosts(plan), 10).values():
        assert abs(dm) <= 0.10 + 1e-9 and abs(dc) <= 0.10 + 1e-9
    # Every check (capacity, rules, storage, CPU...) accepts the plan: nothing violated.
    validation = plan_validate(plan=plan, actor=people["planner"])
    assert validation.blockers == 0, list(
        validation.results.filter(severity="blocker").values_list("message", flat=True)
    )
    where = _final_hosts(plan)
    assert where[skewed["db1"].pk] != where[skewed["db2"].pk]
    for item in PlanItem.objects.filter(plan=plan).select_related("vm"):
        note = item.placement_note
        assert item.destination_chosen_by == "balance" and note["strategy"] == "balance"
        assert note["reason"] and note["memory_source"] == "measured"
        assert note["chosen"] == item.destination_host.name
    assert run.result["load_sources"]["cpu"] == {"measured": 9}
    assert AuditEvent.objects.filter(action="plan.balanced", object_id=str(plan.pk)).exists()


def test_it_says_why_when_the_budget_stops_it(site, skewed, people):
    plan, run = plan_create_balanced(
        actor=people["planner"], group="g1", target_pct=5, max_moves=1, name="tight"
    )
    assert not run.reached and run.moves <= 1
    why = " ".join(run.result["why_not"])
    assert "move budget ran out" in why and "Still outside the band" in why
    client = Client()
    client.force_login(people["viewer"])
    page = client.get(f"/plans/{plan.pk}/").content.decode()
    assert "target not reached" in page and "move budget ran out" in page


def test_it_names_the_anti_affinity_rule_that_kept_a_vm_off_a_host(site, people):
    # The planner's own scenario (test_balance): db1 would best go to h2, where db2 lives.
    h1, h2, h3 = (site.host(n) for n in ("h1", "h2", "h3"))
    placed = [("db1", h1, 16, ["db"]), ("v2", h1, 4, []), ("v3", h1, 4, []), ("v4", h1, 4, [])]
    placed += [("db2", h2, 2, ["db"]), ("v6", h3, 8, []), ("v7", h3, 8, [])]
    for name, host, gib, tags in placed:
        site.measure(site.vm(name, host, memory_gib=gib, tags=tags), cpu=0.5, memory_gib=gib)
    rule_create(actor=None, name="db apart", kind="anti-affinity", tag="db")
    plan, run = plan_create_balanced(actor=people["planner"], group="g1")
    where = _final_hosts(plan)
    db = {vm.name: where[vm.pk] for vm in VirtualMachine.objects.filter(name__startswith="db")}
    assert db["db1"] != db["db2"]
    reasons = " ".join(i.placement_note["reason"] for i in plan.items.all())
    passed_over = [p for i in plan.items.all() for p in i.placement_note["passed_over"]]
    assert any(
        p["vm"] == "db1"
        and p["host"] == "h2"
        and "anti-affinity rule 'db apart'" in p["refused_by"][0]["message"]
        for p in passed_over
    ), passed_over
    assert "rule.anti-affinity" in reasons
    assert plan_validate(plan=plan, actor=people["planner"]).blockers == 0


def test_it_balances_into_an_empty_draft_and_refuses_a_draft_with_items(site, skewed, people):
    plan = plan_create(actor=people["planner"], name="mine")
    run = plan_balance(plan=plan, actor=people["planner"], group="g1")
    assert BalanceRun.objects.get(plan=plan) == run and run.moves > 0
    with pytest.raises(Exception, match="already has items"):
        plan_balance(plan=plan, actor=people["planner"], group="g1")


@pytest.mark.parametrize(
    "body, message",
    [
        ({"group": "nope"}, "No host is in group 'nope'. Known groups: g1"),
        ({"group": "g1", "target_pct": 0}, "target_pct"),
        ({"group": "g1", "max_moves": -1}, "max_moves"),
        ({"group": "g1", "policy": {"colour": "red"}}, "Unknown policy field"),
        ({}, "group"),
    ],
)
def test_it_refuses_bad_balance_input_with_a_400(site, skewed, api_as, body, message):
    answer = api_as("planner").post("/api/v1/plans/balance/", body, format="json")
    assert answer.status_code == 400 and message in answer.json()["detail"]
    assert not MigrationPlan.objects.exists()


def test_it_builds_a_balance_plan_through_the_api_and_the_form(site, skewed, api_as, people):
    client = api_as("planner")
    answer = client.post(
        "/api/v1/plans/balance/",
        {"group": "g1", "target_pct": 10, "change_ticket": "CHG-BAL"},
        format="json",
    )
    assert answer.status_code == 201, answer.content
    body = answer.json()
    assert body["plan"]["name"] == "Balance g1" and body["plan"]["change_ticket"] == "CHG-BAL"
    assert body["balance"]["reached"] and body["balance"]["moves"] > 0
    items = client.get(f"/api/v1/plans/{body['plan']['id']}/items/").json()["results"]
    assert all(i["placement_note"]["reason"] for i in items)
    assert api_as("viewer").post("/api/v1/plans/balance/", {"group": "g1"}).status_code == 403
    # Its VMs are in that open plan now (the checks keep them there); drop it for the form.
    assert client.delete(f"/api/v1/plans/{body['plan']['id']}/").status_code == 204

    browser = Client()
    browser.force_login(people["planner"])
    page = browser.post("/plans/balance/", {"group": "g1", "name": "from the form"}, follow=True)
    text = page.content.decode()
    assert "from the form" in text and "Balance of group g1" in text and "target reached" in text
    bad = browser.post("/plans/balance/", {"group": "g1", "max_moves": "many"}, follow=True)
    assert "Most moves: &#x27;many&#x27; is not a whole number." in bad.content.decode()
    for huge in ("inf", "1e400", "-3"):
        bad = browser.post("/plans/balance/", {"group": "g1", "max_moved_gib": huge}, follow=True)
        assert (
            bad.status_code == 200 and "is not a number between 0 and 2^40" in bad.content.decode()
        )


# -- placement rules in evacuation and move-to-group ------------------------------------


@pytest.fixture
def apart(site):
    """h1 to evacuate with db2 on it; h2 roomier than h3 but holding db1."""
    h1, h2, h3 = site.host("h1"), site.host("h2", memory_gib=256), site.host("h3")
    site.vm("db1", h2, tags=["db"])
    site.vm("db2", h1, tags=["db"])
    return h1, h2, h3


def test_evacuation_keeps_an_anti_affinity_rule_and_names_it(site, apart, people):
    h1, h2, h3 = apart
    plan = plan_create(actor=people["planner"], name="evac")
    plan_evacuate_host(plan=plan, host=h1, actor=people["planner"])
    item = PlanItem.objects.get(plan=plan, vm__name="db2")
    assert item.destination_host == h2  # spread: the roomiest host, no rule yet
    rule_create(actor=None, name="db apart", kind="anti-affinity", tag="db")
    plan2 = plan_create(actor=people["planner"], name="evac2")
    PlanItem.objects.filter(plan=plan).delete()
    plan_evacuate_host(plan=plan2, host=h1, actor=people["planner"])
    item = PlanItem.objects.get(plan=plan2, vm__name="db2")
    assert item.destination_host == h3
    assert "Anti-affinity rule 'db apart' ruled out h2" in item.placement_note["reason"]
    assert item.placement_note["rules"] == {"anti-affinity rule 'db apart'": ["h2"]}


def test_move_to_group_keeps_an_anti_affinity_rule_and_names_it(site, people):
    src = site.host("src", group="old")
    h2, h3 = site.host("h2", group="new", memory_gib=256), site.host("h3", group="new")
    site.vm("db1", h2, tags=["db"])
    db2 = site.vm("db2", src, tags=["db"])
    rule_create(actor=None, name="db apart", kind="anti-affinity", tag="db")
    plan = plan_create(actor=people["planner"], name="to new")
    plan_move_to_group(plan=plan, vms=[db2.pk], group="new", actor=people["planner"])
    item = PlanItem.objects.get(plan=plan)
    assert item.destination_host == h3
    assert "anti-affinity rule 'db apart' ruled out h2" in item.placement_note["reason"].lower()


def test_every_builder_leaves_a_vm_unplaced_when_only_the_rule_forbids_it(site, people):
    src = site.host("src", group="old")
    h2 = site.host("h2", group="new")
    site.vm("db1", h2, tags=["db"])
    db2 = site.vm("db2", src, tags=["db"])
    rule_create(actor=None, name="db apart", kind="anti-affinity", tag="db")
    plan = plan_create(actor=people["planner"], name="to new")
    result = plan_move_to_group(plan=plan, vms=[db2.pk], group="new", actor=people["planner"])
    assert result["placed"] == 0
    assert "anti-affinity rule 'db apart' ruled out h2" in result["unplaced"][0]["reason"].lower()


def test_validation_blocks_a_hand_made_destination_that_breaks_a_rule(site, apart, people):
    h1, h2, _h3 = apart
    rule_create(actor=None, name="db apart", kind="anti-affinity", tag="db")
    plan = plan_create(actor=people["planner"], name="by hand")
    plan_add_vms(
        plan=plan,
        vms=[VirtualMachine.objects.get(name="db2").pk],
        destination=h2,
        actor=people["planner"],
    )
    run = plan_validate(plan=plan, actor=people["planner"])
    blocker = run.results.get(check_id="rule.anti-affinity")
    assert blocker.severity == "blocker" and "anti-affinity rule 'db apart': db1" in blocker.message
    # A disabled rule binds nothing.
    PlacementRule.objects.update(enabled=False)
    assert (
        plan_validate(plan=plan, actor=people["planner"])
        .results.get(check_id="rule.anti-affinity")
        .severity
        == "ok"
    )


def test_evacuation_moves_an_affinity_group_together(site, people):
    h1 = site.host("h1")
    h2, h3 = site.host("h2", memory_gib=256), site.host("h3", memory_gib=128)
    for name in ("web1", "web2", "web3"):
        site.vm(name, h1, memory_gib=8, tags=["web"])
    # h2 is the roomiest but holds a big VM whose vCPUs leave room for only two of the web VMs.
    site.vm("big", h2, memory_gib=8, vcpus=60)
    rule_create(actor=None, name="web tier", kind="affinity", tag="web")
    plan = plan_create(actor=people["planner"], name="evac")
    result = plan_evacuate_host(plan=plan, host=h1, actor=people["planner"])
    assert result["placed"] == 3
    items = PlanItem.objects.filter(plan=plan, vm__tags__icontains='"web"')
    assert {i.destination_host_id for i in items} == {h3.pk}
    note = items.first().placement_note
    assert (
        note["together"] == ["web1", "web2", "web3"]
        and "affinity rule 'web tier'" in note["reason"]
    )
    assert plan_validate(plan=plan, actor=people["planner"]).blockers == 0


def test_moving_part_of_an_affinity_group_is_refused_with_the_rule_named(site, people):
    src = site.host("src", group="old")
    site.host("h2", group="new")
    web1 = site.vm("web1", src, tags=["web"])
    site.vm("web2", src, tags=["web"])
    rule_create(actor=None, name="web tier", kind="affinity", tag="web")
    plan = plan_create(actor=people["planner"], name="half")
    result = plan_move_to_group(plan=plan, vms=[web1.pk], group="new", actor=people["planner"])
    assert result["placed"] == 0
    assert "affinity rule 'web tier' ruled out h2" in result["unplaced"][0]["reason"].lower()


def test_the_rules_api_adds_changes_and_removes_rules_with_audit(api_as):
    planner = api_as("planner")
    made = planner.post(
        "/api/v1/placement-rules/",
        {"name": "db apart", "kind": "anti-affinity", "tag": "db"},
        format="json",
    )
    assert made.status_code == 201, made.content
    rule_id = made.json()["id"]
    again = planner.post(
        "/api/v1/placement-rules/",
        {"name": "other", "kind": "anti-affinity", "tag": "db"},
        format="json",
    )
    assert again.status_code == 400 and "exists already" in again.json()["detail"]
    bad = planner.post(
        "/api/v1/placement-rules/", {"name": "x", "kind": "sometimes", "tag": "db"}, format="json"
    )
    assert bad.status_code == 400
    anti = planner.post(
        "/api/v1/placement-rules/",
        {"name": "y", "kind": "affinity", "tag": "anti:z"},
        format="json",
    )
    assert anti.status_code == 400 and "anti:" in anti.json()["detail"]
    off = planner.patch(f"/api/v1/placement-rules/{rule_id}/", {"enabled": False}, format="json")
    assert off.status_code == 200 and off.json()["enabled"] is False
    viewer = api_as("viewer")
    assert viewer.get("/api/v1/placement-rules/").json()["count"] == 1
    assert viewer.delete(f"/api/v1/placement-rules/{rule_id}/").status_code == 403
    assert planner.delete(f"/api/v1/placement-rules/{rule_id}/").status_code == 204
    actions = list(
        AuditEvent.objects.filter(action__startswith="rule.").values_list("action", flat=True)
    )
    assert sorted(actions) == ["rule.created", "rule.deleted", "rule.updated"]


@pytest.mark.parametrize("seed", range(6))
def test_random_groups_are_balanced_without_breaking_a_check_or_say_why(site, people, seed):
    import random

    rng = random.Random(seed)
    hosts = [
        site.host(f"h{i}", memory_gib=rng.choice((64, 128)), cpus=rng.choice((16, 32)))
        for i in range(rng.randint(3, 5))
    ]
    hot = hosts[0]
    for n in range(rng.randint(8, 16)):
        host = hot if rng.random() < 0.5 else rng.choice(hosts)
        if host.memory_free_mib < 20 * GIB:
            host = max(hosts, key=lambda h: h.memory_free_mib)
        tags = rng.choice(([], [], ["db"], ["web"]))
        gib = rng.choice((2, 4, 8, 12))
        vm = site.vm(f"vm{n}", host, memory_gib=gib, vcpus=rng.choice((1, 2, 4)), tags=tags)
        site.measure(
            vm, cpu=round(rng.uniform(0.1, 3.0), 2), memory_gib=gib * rng.uniform(0.4, 1.0)
        )
    rule_create(actor=None, name="db apart", kind="anti-affinity", tag="db")
    rule_create(actor=None, name="web tier", kind="affinity", tag="web")
    target = rng.choice((5, 10, 15))
    plan, run = plan_create_balanced(actor=people["planner"], group="g1", target_pct=target)
    validation = plan_validate(plan=plan, actor=people["planner"])
    assert validation.blockers == 0, list(
        validation.results.filter(severity="blocker").values_list("message", flat=True)
    )
    if run.reached:
        for dm, dc in _band(site, _final_hosts(plan), target).values():
            assert abs(dm) <= target / 100 + 1e-9 and abs(dc) <= target / 100 + 1e-9
    else:
        assert run.result["why_not"], run.result


def test_the_plans_page_lists_adds_switches_and_removes_rules(people):
    client = Client()
    client.force_login(people["planner"])
    page = client.post(
        "/plans/rules/", {"name": "db apart", "kind": "anti-affinity", "tag": "db"}, follow=True
    ).content.decode()
    assert "Rule &#x27;db apart&#x27; added" in page and "<code>db</code>" in page
    rule = PlacementRule.objects.get()
    client.post(f"/plans/rules/{rule.pk}/toggle/")
    assert not PlacementRule.objects.get().enabled
    bad = client.post("/plans/rules/", {"name": "", "kind": "affinity", "tag": "x"}, follow=True)
    assert "A rule needs a name." in bad.content.decode()
    client.post(f"/plans/rules/{rule.pk}/remove/")
    assert not PlacementRule.objects.exists()
    viewer = Client()
    viewer.force_login(people["viewer"])
    assert (
        viewer.post("/plans/rules/", {"name": "x", "kind": "affinity", "tag": "x"}).status_code
        == 403
    )
    assert "Placement rules" in viewer.get("/plans/").content.decode()
