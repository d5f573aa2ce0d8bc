"""Planned changes to a host's memory, as the apps that plan them describe them.

Inventory does not know about plans; an app that moves VMs registers a source here (in
its AppConfig.ready()), and the host page draws "memory after each planned change".
"""

from collections.abc import Callable

# host -> [(label, memory change in MiB)], one entry per planned change touching the host
_SOURCES: list[Callable] = []


def planned_memory_source_register(source: Callable) -> None:
    """Add a source of planned memory changes (called once per app at start)."""
    if source not in _SOURCES:
        _SOURCES.append(source)


def planned_memory_changes(host) -> list[tuple[str, int]]:
    """Every registered source's planned changes to `host`, in registration order."""
    return [change for source in _SOURCES for change in source(host)]
