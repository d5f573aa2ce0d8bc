"""network.migration (where the data stream goes) and transfer.features (parallel
connections and compression the hosts can do)."""

import pytest

from migrations_app.checks.transfer import check_migration_network, check_transfer_features
from migrations_app.policy import Policy
from tests.migrations_app.snapshots import ctx_of, make_host, make_snapshot, two_hosts


def network(snap, item, dest):
    return check_migration_network(ctx_of(snap), item, dest)


def features(snap, item, dest):
    return check_transfer_features(ctx_of(snap), item, dest)


def test_it_sends_the_data_over_the_migration_network_and_names_the_tls_host():
    snap, item, dest = two_hosts(migration_network_address="10.78.0.2", hostname="dst.example")
    finding = network(snap, item, dest)
    assert finding.severity == "ok"
    assert finding.evidence["data_uri"] == "tcp://10.78.0.2"
    assert finding.evidence["tls_destination"] == "dst.example"


def test_it_informs_when_the_destination_has_no_migration_network_and_warns_when_one_side_has():
    snap, item, dest = two_hosts()
    finding = network(snap, item, dest)
    assert finding.severity == "info" and "follows the control connection" in finding.message
    snap.hosts[1].migration_network_address = "10.78.0.1"
    finding = network(snap, item, dest)
    assert finding.severity == "warning" and "management network" in finding.message


def test_it_blocks_a_destination_no_peer_can_reach_and_an_address_of_another_host():
    snap, item, dest = two_hosts(uri="qemu+unix://dst/system")
    finding = network(snap, item, dest)
    assert finding.blocks and "local socket" in finding.message
    dest.migration_address = "10.77.0.2"
    assert not network(snap, item, dest).blocks
    dest.migration_network_address = "10.78.0.9"
    third = make_host(3, "other", migration_network_address="10.78.0.9")
    snap = make_snapshot([snap.hosts[1], dest, third], [item])
    finding = network(snap, item, dest)
    assert finding.blocks and finding.evidence["same_address_as"] == ["other"]


def test_it_passes_a_single_connection_without_looking_at_versions():
    snap, item, dest = two_hosts(hypervisor_version=None)
    assert features(snap, item, dest).severity == "ok"


P4 = {"parallel_connections": 4}
ZSTD = {**P4, "compression": "zstd"}
POST = {**P4, "on_no_convergence": "postcopy"}
ZSTD_POST = {**ZSTD, "progress_timeout_action": "postcopy"}
NEW = (10_000_002, 11_003_000)  # the lab's QEMU and libvirt
CASES = [
    (P4, NEW, "ok", "4 parallel connections"),
    (P4, (3_001_000, 11_003_000), "blocker", "needs QEMU 4.0.0"),
    (P4, (5_002_000, 11_003_000), "blocker", "over TLS needs QEMU"),
    ({**P4, "require_tls": False}, (5_002_000, 11_003_000), "ok", ""),
    (P4, (10_000_002, 5_001_000), "blocker", "needs libvirt 5.2.0"),
    (ZSTD, (10_000_002, 9_000_000), "blocker", "compression of parallel connections needs libvirt"),
    (ZSTD, NEW, "ok", "zstd compression"),
    (POST, (8_002_000, 11_003_000), "blocker", "refuses together before 10.1.0"),
    (POST, NEW, "blocker", "refuses together before 10.1.0"),  # seen in the lab on 10.0.2
    (POST, (10_001_000, 11_003_000), "warning", "not proven"),
    (ZSTD_POST, NEW, "blocker", "post-copy and compresses"),
]


@pytest.mark.parametrize(("policy", "versions", "severity", "fragment"), CASES)
def test_it_blocks_what_the_hosts_cannot_do(policy, versions, severity, fragment):
    qemu, libvirt_version = versions
    snap, item, dest = two_hosts(hypervisor_version=qemu, libvirt_version=libvirt_version)
    snap.hosts[1].hypervisor_version = qemu
    snap.hosts[1].libvirt_version = libvirt_version
    item.policy = Policy.from_dict(policy)
    finding = features(snap, item, dest)
    assert finding.severity == severity, finding.message
    assert fragment in finding.message


def test_it_warns_when_a_version_is_unknown():
    snap, item, dest = two_hosts(libvirt_version=None)
    item.policy = Policy.from_dict({"parallel_connections": 2})
    assert features(snap, item, dest).severity == "warning"
