"""Load inputs of the balance planner: what each VM and host uses, and where the figure
comes from.

Expected inputs (the stats sampler averages its short history into these):
- `VmLoad.cpu_cores`: busy physical cores, from libvirt's vCPU time deltas over the
  sampling window (`vcpu.N.time` of getAllDomainStats, summed over vCPUs, divided by the
  wall time between samples): 1.0 = one core busy all the time. A host's CPU use is the
  sum over its VMs divided by its logical CPUs, so it is a fraction of the host's cores.
- `VmLoad.memory_used_mib`: guest memory in use: balloon `current − unused` when the
  balloon driver reports it, else the QEMU process's `rss`.
- `HostLoad` (optional): the host's own measured totals. Whatever they hold beyond the
  sum of its VMs (the hypervisor, page cache, QEMU overhead) stays on the host when VMs
  move, so it is kept as a constant base.

Without a measurement a figure falls back, labelled as such: memory to the `rss` that the
last sync stored on the VM, then to the configured memory; CPU to the VM's vCPU count
(every vCPU busy: the pessimistic allocation view).
"""

import math
from dataclasses import dataclass

from migrations_app.errors import PlanError

MEASURED = "measured"
RSS_AT_SYNC = "rss at last sync"
ALLOCATED = "allocated"


class BalanceInputError(PlanError):
    """A balance input that cannot be used (bad load figure, unknown group, bad target)."""


@dataclass(frozen=True, slots=True)
class VmLoad:
    """Measured use of one VM over the sampling window (None: not measured)."""

    cpu_cores: float | None = None
    memory_used_mib: float | None = None


@dataclass(frozen=True, slots=True)
class HostLoad:
    """Measured totals of one host over the sampling window (None: not measured)."""

    cpu_cores: float | None = None
    memory_used_mib: float | None = None


def _figure(value, what: str) -> float | None:
    if value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise BalanceInputError(f"{what} must be a number, not {value!r}.") from None
    if math.isnan(number) or math.isinf(number) or number < 0:
        raise BalanceInputError(f"{what} must be a finite number ≥ 0, not {value!r}.")
    return number


def vm_load(vm, load: VmLoad | None) -> tuple[float, str, float, str]:
    """(memory MiB, its source, CPU cores, its source) for one VM."""
    load = load or VmLoad()
    memory = _figure(load.memory_used_mib, f"Memory in use of {vm.name}")
    memory_source = MEASURED
    if memory is None and vm.memory_rss_mib:
        memory, memory_source = float(vm.memory_rss_mib), RSS_AT_SYNC
    if memory is None:
        memory, memory_source = float(vm.memory_mib or 0), ALLOCATED
    cpu = _figure(load.cpu_cores, f"CPU use of {vm.name}")
    cpu_source = MEASURED
    if cpu is None:
        cpu, cpu_source = float(vm.vcpus or 0), ALLOCATED
    return memory, memory_source, cpu, cpu_source


def host_base(host, load: HostLoad | None, vm_memory: float, vm_cpu: float) -> tuple:
    """What a host uses beyond its VMs (kept when VMs move): (memory MiB, CPU cores)."""
    if load is None:
        return 0.0, 0.0
    memory = _figure(load.memory_used_mib, f"Memory in use of host {host.name}")
    cpu = _figure(load.cpu_cores, f"CPU use of host {host.name}")
    # A host total below the sum of its VMs means the samples are not from the same
    # moment; the VMs' own figures win and the base is zero.
    return (
        max(0.0, memory - vm_memory) if memory is not None else 0.0,
        max(0.0, cpu - vm_cpu) if cpu is not None else 0.0,
    )
