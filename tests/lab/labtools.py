"""Helpers shared by the lab tests (libvirt-python only)."""

from __future__ import annotations

import fcntl
import os
import struct
import time

import libvirt

# peer-to-peer, live, persistent on the destination, source undefined
BASE = (
    libvirt.VIR_MIGRATE_LIVE
    | libvirt.VIR_MIGRATE_PEER2PEER
    | libvirt.VIR_MIGRATE_PERSIST_DEST
    | libvirt.VIR_MIGRATE_UNDEFINE_SOURCE
)


def wait_for(pred, timeout, interval=0.2, what="condition"):
    """Poll `pred` until it returns something true; returns that, or fails after `timeout` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def state(conns, host, name):
    """(state, reason) of domain `name` on `host`, or None when the host has no such domain."""
    try:
        return tuple(conns[host].lookupByName(name).state())
    except libvirt.libvirtError:
        return None


def wait_states(conns, name, expected: dict, timeout, what):
    """Wait until every host in `expected` ({host: (state, reason)}) reports that state."""
    return wait_for(
        lambda: all(state(conns, h, name) == s for h, s in expected.items()), timeout, what=what
    )


def lease_holder(path) -> int | None:
    """PID holding the POSIX write lock on byte 0 of `path` (where virtlockd's lease is)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        flock = struct.pack("hhqqi4x", fcntl.F_WRLCK, os.SEEK_SET, 0, 1, 0)
        kind, _, _, _, pid = struct.unpack("hhqqi4x", fcntl.fcntl(fd, fcntl.F_GETLK, flock))
        return None if kind == fcntl.F_UNLCK else pid
    finally:
        os.close(fd)
