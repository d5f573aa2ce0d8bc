"""Names in a plan file turned into the ids the API takes, through the list endpoints."""

import re

from ferry_cli.client import FerryClient
from ferry_cli.errors import InputError
from ferry_cli.planfile import PlanSpec

UUID = re.compile(r"^[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$")
BULK_FROM = 20  # more VMs than this: read the whole VM list once instead of one query each


class Resolver:
    """Hosts by name and VMs by name or uuid, each looked up once."""

    def __init__(self, client: FerryClient):
        self.client = client
        self._hosts: dict[str, dict] | None = None
        self._vms: list[dict] | None = None

    def host(self, name: str, where: str) -> dict:
        if self._hosts is None:
            self._hosts = {h["name"]: h for h in self.client.get_all("/api/v1/hosts/")}
        host = self._hosts.get(name)
        if host is None:
            known = ", ".join(sorted(self._hosts)) or "none"
            raise InputError(f"{where}: Ferry knows no host named '{name}' (known: {known}).")
        return host

    def _candidates(self, ref: str) -> list[dict]:
        is_uuid = bool(UUID.match(ref))
        if self._vms is not None:
            rows = self._vms
        elif is_uuid:
            rows = self.client.get_all("/api/v1/vms/", search=ref)
        else:
            rows = self.client.get_all("/api/v1/vms/", name=ref)
        if is_uuid:
            return [vm for vm in rows if str(vm.get("uuid", "")).lower() == ref.lower()]
        return [vm for vm in rows if vm.get("name") == ref]

    def vm(self, ref: str, where: str) -> dict:
        found = self._candidates(ref)
        present = [vm for vm in found if not vm.get("missing")]
        found = present or found
        if not found:
            raise InputError(f"{where}: Ferry knows no VM named or with uuid '{ref}'.")
        if len(found) > 1:
            hosts = ", ".join(sorted(str(vm.get("host_name") or vm.get("host")) for vm in found))
            raise InputError(
                f"{where}: {len(found)} VMs are named '{ref}' (on {hosts}); use the VM's uuid."
            )
        return found[0]

    def plan_targets(self, spec: PlanSpec) -> dict[int, tuple[int | None, str, dict]]:
        """{VM id: (destination host id or None for placement, mode, overrides)}."""
        if len(spec.items) > BULK_FROM:
            self._vms = self.client.get_all("/api/v1/vms/")
        out: dict[int, tuple[int | None, str, dict]] = {}
        for n, item in enumerate(spec.items):
            where = f"{spec.source}: items[{n}]"
            vm = self.vm(item.vm, where)
            if vm["id"] in out:
                raise InputError(f"{where}: '{item.vm}' is a VM already listed in the file.")
            dest = self.host(item.destination, where)["id"] if item.destination else None
            out[vm["id"]] = (dest, item.mode, item.policy_overrides)
        return out
