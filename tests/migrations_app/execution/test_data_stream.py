"""The data stream's flags and parameters a live move passes to libvirt: the migration
network (VIR_MIGRATE_PARAM_URI, and with TLS the host name the certificate is checked
against), parallel connections and zstd compression. On real hosts:
tests/lab/test_network_lab.py."""

import libvirt

from migrations_app.execution.drivers.libvirt.live import LiveMigrationSession
from migrations_app.migration_network import data_uri, peer_address, tls_name
from migrations_app.policy import Policy


def data_stream(policy, address="", tls_host="lab-b", tls=True):
    session = LiveMigrationSession.__new__(LiveMigrationSession)
    session.ctx = type(
        "Ctx",
        (),
        {"policy": policy, "destination_data_address": address, "destination_tls_name": tls_host},
    )()
    flags = libvirt.VIR_MIGRATE_LIVE | (libvirt.VIR_MIGRATE_TLS if tls else 0)
    params, names, evidence = {}, [], {}
    flags = session._data_stream(flags, params, names, evidence)
    return flags, params, names, evidence


def test_it_sends_the_data_to_the_migration_network_and_checks_tls_against_the_host_name():
    flags, params, names, evidence = data_stream(Policy(), "10.78.0.2")
    assert params == {
        libvirt.VIR_MIGRATE_PARAM_URI: "tcp://10.78.0.2",
        libvirt.VIR_MIGRATE_PARAM_TLS_DESTINATION: "lab-b",
    }
    assert evidence["data_path"] == "migration network" and names == []


def test_it_names_no_tls_host_without_tls_and_no_data_uri_without_an_address():
    _, params, _, _ = data_stream(Policy(require_tls=False), "10.78.0.2", tls=False)
    assert params == {libvirt.VIR_MIGRATE_PARAM_URI: "tcp://10.78.0.2"}
    _, params, _, evidence = data_stream(Policy(), "")
    assert params == {} and evidence["data_path"] == "control connection"


def test_it_asks_for_parallel_connections_and_zstd_on_them():
    policy = Policy.from_dict({"parallel_connections": 4, "compression": "zstd"})
    flags, params, names, _ = data_stream(policy)
    assert flags & libvirt.VIR_MIGRATE_PARALLEL and flags & libvirt.VIR_MIGRATE_COMPRESSED
    assert params[libvirt.VIR_MIGRATE_PARAM_PARALLEL_CONNECTIONS] == 4
    assert params[libvirt.VIR_MIGRATE_PARAM_COMPRESSION] == "zstd"
    assert names == ["PARALLEL", "COMPRESSED"]
    flags, params, names, _ = data_stream(Policy.from_dict({"parallel_connections": 2}))
    assert not flags & libvirt.VIR_MIGRATE_COMPRESSED and names == ["PARALLEL"]


def test_it_builds_the_addresses_from_the_host_record():
    assert data_uri("fd00::2") == "tcp://[fd00::2]"
    assert data_uri("mig-b.example") == "tcp://mig-b.example"
    assert peer_address("qemu+unix://lab-b/system", "") == ""
    assert peer_address("qemu+unix://lab-b/system", "10.77.0.2") == "10.77.0.2"
    assert peer_address("qemu+tls://kvm2.example/system", "") == "kvm2.example"
    assert tls_name("qemu+tls://10.0.0.2/system", "kvm2.example", "") == "kvm2.example"
    assert tls_name("qemu+tls://kvm2.example/system", "", "") == "kvm2.example"


def test_it_names_the_migration_network_when_the_data_stream_cannot_connect():
    from migrations_app.execution import errors

    session = LiveMigrationSession.__new__(LiveMigrationSession)
    session.ctx = type(
        "Ctx", (), {"destination_data_address": "10.78.0.254", "destination_host": "lab-b"}
    )()
    raw = "unable to connect to '10.78.0.254:49152': Connection refused"
    named = session._data_path_named(
        errors.ExecutionError(errors.CONNECTION_LOST, "Migration failed: lost", raw)
    )
    assert named.error_class == errors.CONNECTION_LOST
    assert "lab-b's migration network address 10.78.0.254" in named.message
    other = session._data_path_named(
        errors.ExecutionError(errors.CONNECTION_LOST, "Migration failed: lost", "broken pipe")
    )
    assert other.message == "Migration failed: lost"
