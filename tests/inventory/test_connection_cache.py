"""Idle libvirt connections are reused by the next session only while they are alive."""

from inventory import libvirt_client
from inventory.libvirt_client import ConnectionCache


class FakeConn:
    def __init__(self, name, alive=True):
        self.name, self.alive, self.closed = name, alive, False

    def isAlive(self):  # noqa: N802 - libvirt's name
        return 1 if self.alive else 0

    def getLibVersion(self):  # noqa: N802
        return 11_003_000

    def close(self):
        self.closed = True


def test_it_hands_back_an_idle_live_connection_and_replaces_a_dead_one(monkeypatch):
    opened = []

    def fake_open(uri, timeout):
        conn = FakeConn(f"{uri}#{len(opened)}")
        opened.append(conn)
        return conn

    monkeypatch.setattr(libvirt_client, "open_connection", fake_open)
    cache = ConnectionCache()
    uri = "qemu+tls://h1/system"
    first = cache.take(uri, 1)
    cache.give_back(uri, first)
    assert cache.take(uri, 1) is first and len(opened) == 1  # reused, not reopened
    first.alive = False
    cache.give_back(uri, first)
    fresh = cache.take(uri, 1)
    assert fresh is not first and first.closed and len(opened) == 2


def test_it_opens_both_hosts_at_once_and_reports_each_failure(monkeypatch):
    def fake_open(uri, timeout):
        if "down" in uri:
            raise libvirt_client.HostUnreachable(f"No answer from {uri}")
        return FakeConn(uri)

    monkeypatch.setattr(libvirt_client, "open_connection", fake_open)
    src, dst = ConnectionCache().take_many(["qemu+tls://up/system", "qemu+tls://down/system"], 1)
    assert isinstance(src, FakeConn)
    assert isinstance(dst, libvirt_client.HostUnreachable)


def test_it_never_keeps_test_driver_connections_or_more_than_its_limit():
    cache = ConnectionCache()
    test_conn = FakeConn("test")
    cache.give_back("test:///default", test_conn)
    assert test_conn.closed
    conns = [FakeConn(str(i)) for i in range(ConnectionCache.MAX_IDLE + 1)]
    for conn in conns:
        cache.give_back("qemu+tls://h/system", conn)
    assert [c.closed for c in conns] == [False] * ConnectionCache.MAX_IDLE + [True]
