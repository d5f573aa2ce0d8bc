"""network.attached, security.transport, convergence, window and affinity."""

import datetime as dt

from migrations_app.checks.network import check_network_attached
from migrations_app.checks.plan import check_affinity, check_convergence, check_window
from migrations_app.checks.security import check_security_transport
from migrations_app.checks.snapshot import NetworkInfo, NicInfo
from migrations_app.estimate import item_estimate
from migrations_app.policy import Policy
from tests.migrations_app.snapshots import ctx_of, make_item, make_snapshot, make_vm, two_hosts

T0 = dt.datetime(2030, 1, 5, 22, 0, tzinfo=dt.UTC)


def test_it_passes_when_the_destination_carries_every_network():
    snap, item, dest = two_hosts()
    assert check_network_attached(ctx_of(snap), item, dest).severity == "ok"


def test_it_blocks_a_missing_network_unless_the_item_maps_it():
    snap, item, dest = two_hosts(network_names={"dmz"})
    snap.networks["dmz"] = NetworkInfo(2, "dmz", "br-dmz", None, {2})
    finding = check_network_attached(ctx_of(snap), item, dest)
    assert finding.blocks and "'prod'" in finding.message
    item.network_map = {"prod": "dmz"}
    assert check_network_attached(ctx_of(snap), item, dest).severity == "ok"


def test_it_blocks_a_vlan_mismatch_and_warns_on_unknown_host_bridges():
    snap, item, dest = two_hosts()
    snap.networks["prod"].vlan = 120
    item.vm.nics = [NicInfo("52:54:00:00:00:02", "network", "prod", "br-prod", 130)]
    finding = check_network_attached(ctx_of(snap), item, dest)
    assert finding.blocks and "VLAN 130" in finding.message
    item.vm.nics = [NicInfo("52:54:00:00:00:03", "bridge", "", "br-legacy", None)]
    assert check_network_attached(ctx_of(snap), item, dest).severity == "warning"


def test_it_passes_transport_over_tls_and_blocks_plain_tcp_when_tls_is_required():
    snap, item, dest = two_hosts()
    assert check_security_transport(ctx_of(snap), item, dest).severity == "ok"
    dest.transport = "tcp"
    finding = check_security_transport(ctx_of(snap), item, dest)
    assert finding.blocks and "unauthenticated" in finding.message
    item.policy = Policy(require_tls=False)
    # Without TLS the destination's identity is unchecked: a blocker (security review M1)
    # unless an admin recorded an override for the plan (tests/security/test_rogue_host.py).
    assert check_security_transport(ctx_of(snap), item, dest).severity == "blocker"
    item.policy = Policy()
    dest.transport = "ssh"
    assert check_security_transport(ctx_of(snap), item, dest).severity == "warning"


def _estimated(snap, item):
    return ctx_of(snap, {item.id: item_estimate(snap, item)})


def test_it_passes_convergence_when_dirty_rate_is_well_below_bandwidth():
    snap, item, dest = two_hosts()
    finding = check_convergence(_estimated(snap, item), item, dest)
    assert finding.severity == "ok" and finding.evidence["dirty_rate_source"] == "assumed"


def test_it_blocks_convergence_when_the_policy_aborts_and_warns_when_it_throttles():
    snap, item, dest = two_hosts()
    item.vm.dirty_rate_mib_s = 500.0  # measured, far above 110 MiB/s
    item.policy = Policy(on_no_convergence="abort")
    finding = check_convergence(_estimated(snap, item), item, dest)
    assert finding.blocks and finding.evidence["dirty_rate_source"] == "measured"
    item.policy = Policy(on_no_convergence="auto_converge")
    finding = check_convergence(_estimated(snap, item), item, dest)
    assert finding.severity == "warning" and "throttling" in finding.message


def test_it_checks_the_estimated_finish_against_the_window():
    snap, item, dest = two_hosts()
    snap.plan.window_start, snap.plan.window_end = T0, T0 + dt.timedelta(hours=2)
    estimates = {item.id: item_estimate(snap, item)}
    estimates[item.id].end_s = 600
    assert check_window(ctx_of(snap, estimates), item, dest).severity == "ok"
    estimates[item.id].end_s = 3 * 3600
    finding = check_window(ctx_of(snap, estimates), item, dest)
    assert finding.blocks and "after the window closes" in finding.message
    snap.plan.window_end = None
    assert check_window(ctx_of(snap, estimates), item, dest).severity == "info"


def test_it_blocks_two_members_of_an_anti_affinity_group_on_one_host():
    snap, item, dest = two_hosts()
    item.vm.tags = ("db", "anti:db-cluster")
    assert check_affinity(ctx_of(snap), item, dest).severity == "ok"
    dest.anti_members["db-cluster"] = {99: "db-2"}
    finding = check_affinity(ctx_of(snap), item, dest)
    assert finding.blocks and "db-2" in finding.message
    ctx = ctx_of(snap)
    ctx.ledger.leaving.add(99)  # db-2 leaves that host in this plan: no clash
    assert check_affinity(ctx, item, dest).severity == "ok"
    other = make_item(make_vm(7, "db-3", tags=("anti:db-cluster",)), iid=2)
    ctx.ledger.add_inbound(make_snapshot([dest], [other]), other, dest)
    assert "db-3" in check_affinity(ctx, item, dest).message
