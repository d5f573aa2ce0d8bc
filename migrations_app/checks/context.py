"""What checks read besides the snapshot: the plan's running capacity ledger and the
estimates. Validation fills the ledger item by item in plan order; placement fills it as
it chooses hosts, so both see "what this plan already sends there"."""

from collections import defaultdict
from dataclasses import dataclass, field

from migrations_app.checks.snapshot import HostInfo, ItemInfo, Snapshot
from migrations_app.checks.storage_paths import copied_disks


class Ledger:
    """Memory, vCPUs and pool space this plan sends to / takes from each host and pool."""

    def __init__(self):
        self.in_mem: dict = defaultdict(int)
        self.in_vcpus: dict = defaultdict(int)
        self.out_mem: dict = defaultdict(int)
        self.out_vcpus: dict = defaultdict(int)
        self.pool_copy: dict = defaultdict(int)  # bytes copied into a pool
        self.arriving: dict = defaultdict(lambda: defaultdict(dict))  # host -> group -> {id: name}
        # rule tag -> {vm id: (destination id, name)} of the VMs carrying a rule's tag sent so far
        self.arriving_tags: dict = defaultdict(dict)
        self.leaving: set = set()  # ids of VMs this plan moves off their host

    @staticmethod
    def moves(item: ItemInfo, dest: HostInfo | None) -> bool:
        return dest is not None and not item.storage_only and dest.id != item.source_id

    def add_outbound(self, item: ItemInfo, dest: HostInfo | None) -> None:
        """Credit the source with what leaves it."""
        if self.moves(item, dest):
            self.out_mem[item.source_id] += item.vm.memory_mib
            self.out_vcpus[item.source_id] += item.vm.vcpus
            self.leaving.add(item.vm.id)

    def add_inbound(self, snapshot: Snapshot, item: ItemInfo, dest: HostInfo | None) -> None:
        """Charge the destination (and target pools) with what arrives."""
        for disk, target in copied_disks(snapshot, item, dest):
            if target is not None:
                self.pool_copy[target] += disk.copy_bytes
        if not self.moves(item, dest):
            return
        self.in_mem[dest.id] += item.vm.memory_mib
        self.in_vcpus[dest.id] += item.vm.vcpus
        for group in item.vm.anti_groups:
            self.arriving[dest.id][group][item.vm.id] = item.vm.name
        if snapshot.rule_tags:
            for tag in item.vm.tags:
                if tag in snapshot.rule_tags:
                    self.arriving_tags[tag][item.vm.id] = (dest.id, item.vm.name)

    def add(self, snapshot: Snapshot, item: ItemInfo, dest: HostInfo | None) -> None:
        self.add_outbound(item, dest)
        self.add_inbound(snapshot, item, dest)

    def undo(self, snapshot: Snapshot, item: ItemInfo, dest: HostInfo | None) -> None:
        """The exact inverse of `add` (the balance planner tries moves and takes them back;
        tests hold the two together)."""
        if self.moves(item, dest):
            self.out_mem[item.source_id] -= item.vm.memory_mib
            self.out_vcpus[item.source_id] -= item.vm.vcpus
            self.leaving.discard(item.vm.id)
        self.remove_inbound(snapshot, item, dest)

    def remove_inbound(self, snapshot: Snapshot, item: ItemInfo, dest: HostInfo | None) -> None:
        """The exact inverse of `add_inbound` (placement tries a unit's host and may give
        it up)."""
        for disk, target in copied_disks(snapshot, item, dest):
            if target is not None:
                self.pool_copy[target] -= disk.copy_bytes
        if not self.moves(item, dest):
            return
        self.in_mem[dest.id] -= item.vm.memory_mib
        self.in_vcpus[dest.id] -= item.vm.vcpus
        for group in item.vm.anti_groups:
            self.arriving[dest.id][group].pop(item.vm.id, None)
        for tag in item.vm.tags:
            if tag in snapshot.rule_tags:
                self.arriving_tags[tag].pop(item.vm.id, None)


@dataclass
class CheckContext:
    """Everything a check may read: snapshot, ledger (before this item), estimates."""

    snapshot: Snapshot
    ledger: Ledger = field(default_factory=Ledger)
    estimates: dict = field(default_factory=dict)  # item id -> ItemEstimate
