"""The libvirt driver: real hosts. A live move (live, live_copy) is a LiveMigrationSession,
a storage-only move a BlockCopySession; both share drivers.libvirt.common."""

from migrations_app.execution.drivers.base import Context, Session
from migrations_app.execution.drivers.libvirt.blockcopy import BlockCopySession
from migrations_app.execution.drivers.libvirt.live import LiveMigrationSession

__all__ = ["BlockCopySession", "LiveMigrationSession", "libvirt_session"]


def libvirt_session(ctx: Context) -> Session:
    """The session for the attempt's mode."""
    if ctx.mode == "storage_only":
        return BlockCopySession(ctx)
    return LiveMigrationSession(ctx)
