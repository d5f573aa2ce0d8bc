"""Budgets: how many moves may run at once, across every running plan, not per plan only.

A move loads its source host (outbound), its destination host (inbound), the link between
the two, and the storage pools its copied disks are read from and written to. Each has a
budget (Nova has one per compute host; vMotion per host and per datastore):

- host outbound / inbound: Host.max_outbound / max_inbound, else FERRY_HOST_MAX_OUTBOUND /
  FERRY_HOST_MAX_INBOUND;
- link (source → destination): floor(link bandwidth ÷ the move's bandwidth cap), 1–8, the
  link bandwidth being the smaller Host.link_bandwidth_mib_s of the two hosts, else the
  policy's assumed_bandwidth_mib_s; an uncapped move fills the link by itself (1);
- pool: StoragePool.max_copies, else FERRY_POOL_MAX_COPIES, counting each move that copies
  a disk out of or into the pool once.

The plan's own limits (policy max_concurrent, outbound/inbound per host) still apply
within the plan. The scheduler asks `held_by` before it starts an item and the estimate's
timeline asks the same object, so the plan's timeline follows the rules the run follows.
`held_by` names the budget that holds an item back, for the plan page.
"""

from dataclasses import dataclass, field

from django.conf import settings

from inventory.models import Host, StoragePool
from migrations_app.policy import AUTO_MAX_PER_HOST, Policy


@dataclass(frozen=True)
class Move:
    """What one move loads."""

    plan: int
    source: int
    destination: int | None  # None: storage only (no network between hosts)
    pools: frozenset = frozenset()  # pools its copied disks are read from or written to


@dataclass(frozen=True)
class Hold:
    """A budget that holds a move back: its kind (plan, outbound, inbound, link, pool), which
    one (host id, (source, destination), pool id) and what to tell a person."""

    kind: str
    key: object
    text: str

    def covers(self, move: Move) -> bool:
        """Whether `move` counts against this budget (freeing it would help)."""
        if self.kind == "outbound":
            return move.source == self.key
        if self.kind == "inbound":
            return move.destination == self.key
        if self.kind == "link":
            return (move.source, move.destination) == self.key
        if self.kind == "pool":
            return self.key in move.pools
        return False


@dataclass
class HostLimits:
    name: str
    max_outbound: int | None = None
    max_inbound: int | None = None
    link_bandwidth_mib_s: int | None = None


@dataclass
class PoolLimits:
    name: str
    max_copies: int | None = None


@dataclass
class Budgets:
    hosts: dict = field(default_factory=dict)  # host id -> HostLimits
    pools: dict = field(default_factory=dict)  # pool id -> PoolLimits
    outbound: dict = field(default_factory=dict)  # host id -> running moves
    inbound: dict = field(default_factory=dict)
    links: dict = field(default_factory=dict)  # (source, destination) -> running moves
    copies: dict = field(default_factory=dict)  # pool id -> running moves
    plan_total: dict = field(default_factory=dict)  # plan id -> running moves
    plan_out: dict = field(default_factory=dict)  # (plan, host) -> running moves
    plan_in: dict = field(default_factory=dict)
    reach: dict = field(default_factory=dict)  # host id -> pools it reaches (estimate only)

    # ------------------------------------------------------------------ limits

    def host_outbound_limit(self, host_id: int) -> int:
        limits = self.hosts.get(host_id)
        return (limits and limits.max_outbound) or settings.FERRY_HOST_MAX_OUTBOUND

    def host_inbound_limit(self, host_id: int) -> int:
        limits = self.hosts.get(host_id)
        return (limits and limits.max_inbound) or settings.FERRY_HOST_MAX_INBOUND

    def link_limit(self, move: Move, policy: Policy) -> int:
        if move.destination is None or not policy.bandwidth_mib_s:
            return 1 if move.destination is not None else AUTO_MAX_PER_HOST
        speeds = [
            limits.link_bandwidth_mib_s
            for limits in (self.hosts.get(move.source), self.hosts.get(move.destination))
            if limits is not None and limits.link_bandwidth_mib_s
        ]
        bandwidth = min(speeds) if speeds else policy.assumed_bandwidth_mib_s
        return max(1, min(AUTO_MAX_PER_HOST, int(bandwidth // policy.bandwidth_mib_s)))

    def pool_limit(self, pool_id: int) -> int:
        limits = self.pools.get(pool_id)
        return (limits and limits.max_copies) or settings.FERRY_POOL_MAX_COPIES

    def _host(self, host_id) -> str:
        limits = self.hosts.get(host_id)
        return limits.name if limits else f"host {host_id}"

    # ------------------------------------------------------------------ asking

    def held_by(self, move: Move, policy: Policy) -> str:
        """The budget that keeps this move from starting now ("" when none does)."""
        hold = self.hold(move, policy)
        return hold.text if hold else ""

    def hold(self, move: Move, policy: Policy) -> "Hold | None":
        """The first budget that keeps this move from starting now, or None."""
        found = self.blocking(move, policy)
        return None if found is None else self._hold_of(found, move, policy)

    def allows(self, move: Move, policy: Policy) -> bool:
        """Whether no budget keeps this move from starting now (`hold` without the text:
        the estimate's timeline asks this ~10^5 times for a 10,000-item plan)."""
        return self.blocking(move, policy) is None

    def blocking(self, move: Move, policy: Policy) -> "tuple | None":
        """(check, key) of the first budget that is full for `move`, or None. The key is
        the host id (plan_out, outbound: the source; plan_in, inbound: the destination),
        (source, destination) for a link, the pool id for a pool, None for plan_total."""
        plan, src, dst = move.plan, move.source, move.destination
        if self.plan_total.get(plan, 0) >= policy.concurrent_limit:
            return ("plan_total", None)
        if self.plan_out.get((plan, src), 0) >= policy.outbound_limit:
            return ("plan_out", src)
        if dst is not None and self.plan_in.get((plan, dst), 0) >= policy.inbound_limit:
            return ("plan_in", dst)
        if self.outbound.get(src, 0) >= self.host_outbound_limit(src):
            return ("outbound", src)
        if dst is not None:
            if self.inbound.get(dst, 0) >= self.host_inbound_limit(dst):
                return ("inbound", dst)
            if self.links.get((src, dst), 0) >= self.link_limit(move, policy):
                return ("link", (src, dst))
        for pool in sorted(move.pools):
            if self.copies.get(pool, 0) >= self.pool_limit(pool):
                return ("pool", pool)
        return None

    def _hold_of(self, found: tuple, move: Move, policy: Policy) -> Hold:
        check, key = found
        if check == "plan_total":
            return Hold(
                "plan", None, f"the plan's limit of {policy.concurrent_limit} moves at once"
            )
        if check == "plan_out":
            return Hold(
                "plan",
                None,
                f"the plan's limit of {policy.outbound_limit} moves out of {self._host(key)}",
            )
        if check == "plan_in":
            return Hold(
                "plan",
                None,
                f"the plan's limit of {policy.inbound_limit} moves into {self._host(key)}",
            )
        if check == "outbound":
            limit = self.host_outbound_limit(key)
            return Hold(
                "outbound",
                key,
                f"{self._host(key)}'s outbound budget ({self.outbound[key]}/{limit}, all plans)",
            )
        if check == "inbound":
            limit = self.host_inbound_limit(key)
            return Hold(
                "inbound",
                key,
                f"{self._host(key)}'s inbound budget ({self.inbound[key]}/{limit}, all plans)",
            )
        if check == "link":
            src, dst = key
            return Hold(
                "link",
                key,
                f"the link {self._host(src)} → {self._host(dst)} ({self.links[key]}/"
                f"{self.link_limit(move, policy)}: link bandwidth ÷ the per-migration cap, "
                "all plans)",
            )
        name = self.pools[key].name if key in self.pools else f"pool {key}"
        return Hold(
            "pool",
            key,
            f"pool {name}'s copy budget ({self.copies[key]}/{self.pool_limit(key)}, all plans)",
        )

    def take(self, move: Move) -> None:
        self._count(move, +1)

    def release(self, move: Move) -> None:
        self._count(move, -1)

    def _count(self, move: Move, step: int) -> None:
        def bump(table, key):
            table[key] = table.get(key, 0) + step

        bump(self.plan_total, move.plan)
        bump(self.plan_out, (move.plan, move.source))
        bump(self.outbound, move.source)
        if move.destination is not None:
            bump(self.plan_in, (move.plan, move.destination))
            bump(self.inbound, move.destination)
            bump(self.links, (move.source, move.destination))
        for pool in move.pools:
            bump(self.copies, pool)


def budgets_load(host_ids=None, pool_ids=None) -> Budgets:
    """The budgets' limits from the inventory (all hosts and pools, or the given ones)."""
    hosts = Host.objects.all()
    pools = StoragePool.objects.all()
    if host_ids is not None:
        hosts = hosts.filter(pk__in=list(host_ids))
    if pool_ids is not None:
        pools = pools.filter(pk__in=list(pool_ids))
    return Budgets(
        hosts={
            row["id"]: HostLimits(
                row["name"], row["max_outbound"], row["max_inbound"], row["link_bandwidth_mib_s"]
            )
            for row in hosts.values(
                "id", "name", "max_outbound", "max_inbound", "link_bandwidth_mib_s"
            )
        },
        pools={
            row["id"]: PoolLimits(row["name"], row["max_copies"])
            for row in pools.values("id", "name", "max_copies")
        },
    )


def move_pools(mode: str, storage_map: dict, disks: list, destination_pools: set) -> frozenset:
    """Pools a move's copied disks are read from and written to.

    `disks`: (pool id or None) of the VM's disks; `destination_pools`: pools the
    destination reaches. storage_only copies the disks of mapped pools into the mapped
    ones; live_copy copies every disk the destination does not reach (into the mapped pool,
    else the pool of the same name the runner picks, which the budget does not know: only
    the source side counts then)."""
    mapped = {}
    for key, value in (storage_map or {}).items():
        try:
            mapped[int(key)] = int(value)
        except (TypeError, ValueError):
            continue
    pools: set = set()
    if mode == "storage_only":
        for pool in disks:
            if pool in mapped:
                pools.update((pool, mapped[pool]))
    elif mode == "live_copy":
        for pool in disks:
            if pool is None:
                continue
            if pool in mapped:
                pools.update((pool, mapped[pool]))
            elif pool not in destination_pools:
                pools.add(pool)
    return frozenset(pools)
