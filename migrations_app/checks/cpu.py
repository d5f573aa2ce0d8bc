"""cpu.compat: can the guest's CPU run on the destination?

Offline (validation, placement) Ferry compares feature sets: host-passthrough guests see
the source host's CPU as-is, so the destination must be identical; host-model and custom
guests need every feature they require (their model's features, where libvirt's CPU map
knows the model, plus the features they require by name) on the destination. At preflight
the execution engine asks the live destination itself with `cpu_compare_live`, which uses
libvirt's compareHypervisorCPU (QEMU's own view, including microcode and nested details
the offline sets cannot see).
"""

from xml.etree.ElementTree import tostring

import libvirt

from inventory.xmlparse import UnsafeXML, parse_xml
from migrations_app.checks.base import BLOCKER, INFO, WARNING, Finding, ok

SAMPLE = 12  # features listed in a message before "and N more"


def _listed(names) -> str:
    names = sorted(names)
    head = ", ".join(names[:SAMPLE])
    return head + (f" and {len(names) - SAMPLE} more" if len(names) > SAMPLE else "")


def check_cpu_compat(ctx, item, dest) -> Finding:
    """cpu.compat, offline: feature expansion against the destination host's CPU."""
    vm = item.vm
    guest = vm.cpu
    source = ctx.snapshot.hosts.get(item.source_id)
    mode = guest.mode or "default"
    evidence = {
        "mode": mode,
        "guest_model": guest.model,
        "destination_model": dest.cpu.model,
        "destination_vendor": dest.cpu.vendor,
        "destination_model_known": dest.cpu.model_known,
    }
    if item.storage_only:
        return ok("cpu.compat", "Storage-only move: the VM keeps its CPU.", **evidence)
    if not dest.cpu.model and not dest.cpu.features:
        return Finding(
            "cpu.compat",
            WARNING,
            f"{dest.name}'s CPU is unknown; the CPU is compared on the live host at preflight.",
            f"Sync {dest.name} so its CPU capabilities are known.",
            evidence,
        )
    if mode in ("host-passthrough", "maximum"):
        if source is None or (not source.cpu.model and not source.cpu.features):
            return Finding(
                "cpu.compat",
                WARNING,
                "The source host's CPU is unknown; host-passthrough needs identical CPUs.",
                "Sync the source host.",
                evidence,
            )
        missing = source.cpu.features - dest.cpu.features
        extra = dest.cpu.features - source.cpu.features
        evidence.update(
            source_model=source.cpu.model,
            source_vendor=source.cpu.vendor,
            missing_on_destination=sorted(missing),
            extra_on_destination=sorted(extra),
        )
        same = (
            source.cpu.model == dest.cpu.model
            and source.cpu.vendor == dest.cpu.vendor
            and not missing
            and not extra
        )
        if not same:
            detail = f"{source.cpu.model} → {dest.cpu.model}"
            if missing:
                detail += f"; missing on destination: {_listed(missing)}"
            if extra:
                detail += f"; only on destination: {_listed(extra)}"
            return Finding(
                "cpu.compat",
                BLOCKER,
                f"{vm.name} uses host-passthrough, which needs identical host CPUs, but "
                f"{source.name} and {dest.name} differ ({detail}).",
                "Choose a destination with the same CPU model and features, or switch the "
                "guest to host-model or a named CPU model at its next reboot.",
                evidence,
            )
        return ok(
            "cpu.compat",
            f"host-passthrough: {source.name} and {dest.name} have identical CPUs "
            f"({dest.cpu.model}).",
            **evidence,
        )
    if vm.domain_type == "qemu":
        # TCG emulates every CPU feature in software: the host's own CPU does not limit
        # what the guest sees (the live compareHypervisorCPU at preflight still decides).
        return Finding(
            "cpu.compat",
            INFO,
            f"{vm.name} runs under QEMU's emulator (TCG), which does not depend on the "
            "host's CPU features.",
            "",
            evidence,
        )
    if mode == "default":
        return Finding(
            "cpu.compat",
            INFO,
            f"{vm.name} uses QEMU's default CPU model, which every x86-64 host runs.",
            "",
            evidence,
        )
    if mode == "host-model" and not guest.model:
        # An inactive host-model definition: the guest was started with the source host's
        # CPU as a named model plus features, i.e. (at most) the source's feature set.
        required = source.cpu.features if source else frozenset()
        basis = f"the source host's CPU ({source.cpu.model if source else '?'})"
    else:
        required = guest.required
        basis = f"model {guest.model}" if guest.model else "its required features"
    missing = required - dest.cpu.features
    forbidden = guest.forbidden & dest.cpu.features
    evidence.update(
        required_count=len(required),
        missing_on_destination=sorted(missing),
        forbidden_present=sorted(forbidden),
        guest_model_known=guest.model_known,
    )
    if missing or forbidden:
        parts = []
        if missing:
            parts.append(f"missing {_listed(missing)}")
        if forbidden:
            parts.append(f"has forbidden {_listed(forbidden)}")
        return Finding(
            "cpu.compat",
            BLOCKER,
            f"{vm.name} ({mode}, {basis}) cannot run on {dest.name} ({dest.cpu.model}): "
            f"{'; '.join(parts)}.",
            "Choose a destination whose CPU has these features, or give the guest an older "
            "CPU model (a common baseline of both hosts) at its next reboot.",
            evidence,
        )
    if not guest.model_known or not dest.cpu.model_known:
        return Finding(
            "cpu.compat",
            WARNING,
            f"CPU model {guest.model if not guest.model_known else dest.cpu.model} is not in "
            "libvirt's CPU map here, so only the named features were compared.",
            "The live comparison at preflight decides; run it early with a dry-run if unsure.",
            evidence,
        )
    return ok(
        "cpu.compat",
        f"{dest.name} ({dest.cpu.model}) offers all {len(required)} CPU features {vm.name} "
        f"needs ({basis}).",
        **evidence,
    )


def vm_cpu_xml(domain_xml: str) -> str:
    """The `<cpu>` element of a domain's XML, as text ('' when the domain has none)."""
    try:
        cpu = parse_xml(domain_xml).find("cpu")
    except UnsafeXML:
        return ""
    return tostring(cpu, encoding="unicode") if cpu is not None else ""


def guest_arch_and_type(domain_xml: str) -> tuple[str | None, str]:
    """(arch, virt type) of a domain's XML, for libvirt's CPU comparison of that guest."""
    try:
        root = parse_xml(domain_xml)
    except UnsafeXML:
        return None, "kvm"
    os_type = root.find("os/type")
    return (os_type.get("arch") if os_type is not None else None), root.get("type") or "kvm"


def cpu_compare_live(conn, vm_cpu_xml_text: str, *, arch=None, virttype=None) -> Finding:
    """cpu.compat on a live destination via compareHypervisorCPU (used at preflight).

    Pass the running guest's `<cpu>` (for host-passthrough guests, pass the source host's
    capabilities `<cpu>` instead: the guest sees exactly that CPU).
    """
    evidence = {"method": "compareHypervisorCPU", "cpu_xml": vm_cpu_xml_text[:2000]}
    if not vm_cpu_xml_text:
        return Finding(
            "cpu.compat", INFO, "The guest defines no CPU; QEMU's default runs anywhere.", ""
        )
    try:
        result = conn.compareHypervisorCPU(
            None,
            arch,
            None,
            virttype,
            vm_cpu_xml_text,
            libvirt.VIR_CONNECT_COMPARE_CPU_FAIL_INCOMPATIBLE,
        )
    except libvirt.libvirtError as exc:
        evidence["libvirt_error"] = exc.get_error_message()
        if exc.get_error_code() == libvirt.VIR_ERR_CPU_INCOMPATIBLE:
            return Finding(
                "cpu.compat",
                BLOCKER,
                f"The destination's hypervisor says the guest CPU is incompatible: "
                f"{exc.get_error_message()}",
                "Choose another destination, or give the guest a CPU model both hosts run.",
                evidence,
            )
        return Finding(
            "cpu.compat",
            WARNING,
            f"The destination could not compare CPUs: {exc.get_error_message()}",
            "The migration itself will refuse an incompatible CPU; watch the first attempt.",
            evidence,
        )
    evidence["result"] = {
        libvirt.VIR_CPU_COMPARE_IDENTICAL: "identical",
        libvirt.VIR_CPU_COMPARE_SUPERSET: "superset",
        libvirt.VIR_CPU_COMPARE_INCOMPATIBLE: "incompatible",
    }.get(result, str(result))
    if result == libvirt.VIR_CPU_COMPARE_INCOMPATIBLE:
        return Finding(
            "cpu.compat",
            BLOCKER,
            "The destination's hypervisor says the guest CPU is incompatible.",
            "Choose another destination, or give the guest a CPU model both hosts run.",
            evidence,
        )
    return ok(
        "cpu.compat",
        f"The live destination runs the guest CPU ({evidence['result']}).",
        **evidence,
    )
