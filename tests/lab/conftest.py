"""Fixtures for the real-libvirt lab tests (pure libvirt-python, no Django).

The session fixture brings the lab up once (or reuses one that is already
up) and takes it down at the end only if it brought it up. When the lab
cannot run here the tests are skipped with the reason, except under CI
(env CI set), where that is a failure.
"""

from __future__ import annotations

import json
import os
import sys
import time
import uuid
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
for _p in (REPO, Path(__file__).resolve().parent):  # `lab` and the tests' `labtools`
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))


def pytest_configure(config):
    config.addinivalue_line("markers", "lab: needs the real libvirt lab (root, netns, QEMU)")


def _unavailable(reason: str):
    if os.environ.get("CI"):
        pytest.fail(f"lab unavailable under CI: {reason}", pytrace=False)
    pytest.skip(f"lab unavailable: {reason}")


@pytest.fixture(scope="session")
def lab_env():
    """The lab's env() dict; the lab is up for the whole session."""
    from lab import labctl

    reason = labctl.preflight()
    if reason:
        _unavailable(reason)
    try:
        import libvirt  # noqa: F401
    except ImportError:
        _unavailable("libvirt-python is not installed in this Python")
    from lab.common import lab_in_use, op_lock, read_state, use_lab

    # hold the shared "users" lock for the whole session, so that neither a
    # concurrent session nor `labctl down` (without --force) pulls the lab away
    users = use_lab()
    was_up = labctl.is_up()
    t0 = time.monotonic()
    try:
        env = labctl.up(register=False, owner="pytest")
    except Exception as e:  # any reason at all: report it, do not hide it
        users.close()
        _unavailable(f"labctl up failed: {e}")
    print(f"\n[lab] {'reused' if was_up else 'started'} in {time.monotonic() - t0:.1f}s")
    yield env
    users.close()
    # the last session out takes down a lab that a test session started;
    # a lab started by hand (make lab-up) stays up
    with op_lock():
        if not lab_in_use() and (read_state() or {}).get("owner") == "pytest":
            labctl._down()


class _Conns(dict):
    """{host name: libvirt connection}; a connection that died (a test restarted that
    host's libvirtd or dropped its clients) is opened again on the next lookup."""

    def __init__(self, uris):
        import libvirt

        self._uris = uris
        super().__init__({name: libvirt.open(uri) for name, uri in uris.items()})

    def __getitem__(self, name):
        import libvirt

        c = super().__getitem__(name)
        try:
            alive = c.isAlive() and c.getLibVersion() > 0  # one cheap round trip
        except libvirt.libvirtError:
            alive = False
        if not alive:
            c = libvirt.open(self._uris[name])
            self[name] = c
        return c

    def items(self):
        return [(name, self[name]) for name in self.keys()]

    def values(self):
        return [self[name] for name in self.keys()]


@pytest.fixture(scope="session")
def conns(lab_env):
    """{host name: libvirt connection} through each host's unix socket."""
    import libvirt

    libvirt.registerErrorHandler(lambda *_: None, None)  # errors are raised; do not also print them
    out = _Conns({name: h["uri"] for name, h in lab_env["hosts"].items()})
    yield out
    for c in dict.values(out):
        try:
            c.close()
        except libvirt.libvirtError:
            pass


@pytest.fixture
def guest(lab_env):
    """Factory: guest(host='lab-a', **kw) -> name of a started guest (its facts from
    vm.guest_start in guest.facts[name]); all are destroyed after."""
    from lab.guest import vm

    made = []

    def start(host="lab-a", **kw):
        name = f"t-{uuid.uuid4().hex[:8]}"
        made.append(name)
        start.facts[name] = vm.guest_start(name, host=host, **kw)
        return name

    start.facts = {}

    yield start
    for name in made:
        vm.guest_destroy(name)


@pytest.fixture
def record(lab_env, request):
    """record(case, stats, wall_s, **extra): print a migration's figures and append them to measurements.jsonl."""

    def write(case: str, stats: dict, wall_s: float, **extra) -> dict:
        row = {
            "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "test": request.node.name,
            "case": case,
            "total_ms": stats.get("time_elapsed"),
            "downtime_ms": stats.get("downtime"),
            "setup_ms": stats.get("setup_time"),
            "iterations": stats.get("memory_iteration"),
            "data_total": stats.get("data_total"),
            "disk_total": stats.get("disk_total"),
            "wall_s": round(wall_s, 3),
            **extra,
        }
        print(
            f"\n[lab] {case}: total {row['total_ms']} ms, downtime {row['downtime_ms']} ms, "
            f"wall {row['wall_s']} s, iterations {row['iterations']}"
        )
        with open(lab_env["measurements"], "a") as f:
            f.write(json.dumps(row) + "\n")
        return row

    return write
