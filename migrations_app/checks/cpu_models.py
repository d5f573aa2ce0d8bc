"""CPU model feature sets from libvirt's own CPU map, and the parsing of host and guest
CPU descriptions into plain feature sets the cpu.compat check compares offline.

libvirt's capabilities name a host CPU as a base model plus the features it has beyond
that model, so comparing two hosts (or a guest's custom model with a host) needs the
model's own features: those come from the `cpu_map` directory libvirt installs. When the
map is missing (a Ferry server without libvirt's data files), models count as unknown and
the check says so instead of guessing.
"""

import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from inventory.xmlparse import UnsafeXML, parse_xml

CPU_MAP_DIR = Path(os.environ.get("FERRY_CPU_MAP_DIR", "/usr/share/libvirt/cpu_map"))


def relevant(features) -> frozenset[str]:
    """Feature names that matter for migration compatibility.

    `vmx-*` features describe nested virtualization controls; libvirt lists them only
    for hosts with VMX and they never decide whether an ordinary guest can run, so they
    are left to the live compareHypervisorCPU at preflight.
    """
    return frozenset(f for f in features if f and not f.startswith("vmx-"))


@lru_cache(maxsize=1)
def _cpu_map() -> dict[str, dict]:
    """model name -> {"parent": name | None, "vendor": str, "add": [...], "remove": [...]}."""
    models: dict[str, dict] = {}
    if not CPU_MAP_DIR.is_dir():
        return models
    for path in sorted(CPU_MAP_DIR.glob("x86_*.xml")):
        if path.name in ("x86_features.xml", "x86_vendors.xml"):
            continue
        try:
            root = parse_xml(path.read_text())
        except (OSError, UnsafeXML):
            continue
        for model in root.findall("model"):
            entry = {"parent": None, "vendor": "", "add": [], "remove": []}
            for child in model:
                if child.tag == "model":
                    entry["parent"] = child.get("name")
                elif child.tag == "vendor":
                    entry["vendor"] = child.get("name", "")
                elif child.tag == "feature":
                    key = "remove" if child.get("removed") == "yes" else "add"
                    entry[key].append(child.get("name", ""))
            models[model.get("name", "")] = entry
    return models


@lru_cache(maxsize=512)
def model_features(name: str) -> frozenset[str] | None:
    """The features a named CPU model implies (None when the model is unknown)."""
    models = _cpu_map()
    chain, seen = [], set()
    while name and name in models and name not in seen:
        seen.add(name)
        chain.append(models[name])
        name = models[name]["parent"]
    if not chain or name:  # unknown model, or a parent missing from the map
        return None
    features: set[str] = set()
    for entry in reversed(chain):  # parents first, so a child's removals win
        features.update(entry["add"])
        features.difference_update(entry["remove"])
    return relevant(features)


@dataclass(frozen=True, slots=True)
class HostCpu:
    """A host CPU as Ferry compares it: model, vendor, and every feature it offers."""

    model: str
    vendor: str
    listed: frozenset[str]  # features named in the XML beyond the model
    features: frozenset[str]  # model features + listed ones
    model_known: bool


@lru_cache(maxsize=4096)
def host_cpu(cpu_xml: str, cpu_model: str, cpu_vendor: str, cpu_features: tuple) -> HostCpu:
    """Parse a host's `<cpu>` capabilities XML (falling back to the synced fields)."""
    model, vendor, listed = cpu_model, cpu_vendor, set(cpu_features)
    if cpu_xml and "<model" in cpu_xml:
        try:
            root = parse_xml(cpu_xml)
        except UnsafeXML:
            root = None
        if root is not None:
            model = (root.findtext("model") or model or "").strip()
            vendor = (root.findtext("vendor") or vendor or "").strip()
            listed = {
                f.get("name", "")
                for f in root.findall("feature")
                if f.get("policy", "require") in ("require", "force", "optional")
            }
    base = model_features(model) if model else None
    return HostCpu(
        model=model,
        vendor=vendor,
        listed=relevant(listed),
        features=relevant(listed) | (base or frozenset()),
        model_known=base is not None,
    )


@dataclass(frozen=True, slots=True)
class GuestCpu:
    """What a guest's CPU definition requires of the host it runs on."""

    mode: str
    model: str
    required: frozenset[str]  # model features (when known) + require/force features
    forbidden: frozenset[str]
    disabled: frozenset[str]
    model_known: bool


@lru_cache(maxsize=4096)
def guest_cpu(mode: str, model: str, features: tuple) -> GuestCpu:
    """A guest's requirement from its cpu mode, model and `(name, policy)` features."""
    required = {n for n, p in features if p in ("require", "force")}
    forbidden = {n for n, p in features if p == "forbid"}
    disabled = {n for n, p in features if p in ("disable", "forbid")}
    base = model_features(model) if model else None
    if base:
        required |= base - disabled
    return GuestCpu(
        mode=mode or "",
        model=model,
        required=relevant(required),
        forbidden=relevant(forbidden),
        disabled=relevant(disabled),
        model_known=base is not None or not model,
    )
