"""The plan file: YAML that says what a plan should contain, checked here before anything
is sent, with messages that name the file, the place and what is wrong.

    name: Evacuate kvm-a1           # required; identifies the plan unless `key` is given
    key: evacuate-kvm-a1            # optional identity that survives a rename
    description: Kernel update
    change_ticket: CHG-1234
    window: {start: 2026-05-01T22:00:00Z, end: 2026-05-02T02:00:00Z}
    policy: {max_downtime_ms: 500}  # any policy fields; the server checks them
    items:
      - vm: api-a1-07               # a VM name or uuid
        destination: kvm-a2         # a host name; "auto" or left out: placement picks
        mode: live                  # live | live_copy | storage_only (default live)
        policy_overrides: {}        # optional, per item
      - db-a1-02                    # shorthand: a VM, placed automatically, mode live
"""

import json
import sys
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path

import yaml

from ferry_cli.errors import InputError

MODES = ("live", "live_copy", "storage_only")
AUTO = "auto"
PLAN_KEYS = {"name", "key", "description", "change_ticket", "window", "policy", "items"}
ITEM_KEYS = {"vm", "destination", "mode", "policy_overrides"}


@dataclass
class ItemSpec:
    vm: str
    destination: str | None  # None: placement chooses
    mode: str = "live"
    policy_overrides: dict = field(default_factory=dict)


@dataclass
class PlanSpec:
    name: str
    key: str | None = None
    description: str = ""
    change_ticket: str = ""
    window_start: datetime | None = None
    window_end: datetime | None = None
    policy: dict = field(default_factory=dict)
    items: list[ItemSpec] = field(default_factory=list)
    source: str = "plan file"

    @property
    def identity(self) -> str:
        return self.key or self.name


def _text(value, where: str, *, required: bool = False, limit: int | None = None) -> str:
    if value is None:
        if required:
            raise InputError(f"{where} is required.")
        return ""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise InputError(f"{where} must be text, not {type(value).__name__}.")
    text = str(value).strip()
    if required and not text:
        raise InputError(f"{where} must not be empty.")
    if limit is not None and len(text) > limit:
        raise InputError(f"{where} is longer than {limit} characters.")
    return text


def _time(value, where: str) -> datetime | None:
    """An aware datetime; YAML timestamps arrive parsed, quoted ones as text; no zone: UTC."""
    if value is None or value == "":
        return None
    if isinstance(value, date) and not isinstance(value, datetime):
        raise InputError(f"{where} needs a time of day, e.g. 2026-05-01T22:00:00Z.")
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            raise InputError(
                f"{where} is not a date and time like 2026-05-01T22:00:00Z: '{value}'."
            ) from None
    if not isinstance(value, datetime):
        raise InputError(f"{where} must be a date and time, not {type(value).__name__}.")
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _mapping(value, where: str, *, as_json: bool = True) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InputError(f"{where} must be a mapping of fields.")
    if not as_json:
        return dict(value)
    try:  # what goes to the server as JSON must be JSON (YAML also has dates, sets...)
        json.dumps(value)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{where} holds a value JSON cannot carry: {exc}.") from None
    return dict(value)


def _unknown(data: dict, known: set, where: str) -> None:
    extra = sorted(str(k) for k in data if k not in known)
    if extra:
        raise InputError(
            f"{where}: unknown field(s) {', '.join(extra)}; known: {', '.join(sorted(known))}."
        )


def _item(raw, where: str) -> ItemSpec:
    if isinstance(raw, str):
        raw = {"vm": raw}
    if not isinstance(raw, dict):
        raise InputError(f"{where} must be a VM name or a mapping with 'vm'.")
    _unknown(raw, ITEM_KEYS, where)
    vm = _text(raw.get("vm"), f"{where}.vm", required=True)
    destination = _text(raw.get("destination"), f"{where}.destination") or None
    if destination is not None and destination.lower() == AUTO:
        destination = None
    mode = _text(raw.get("mode"), f"{where}.mode") or "live"
    if mode not in MODES:
        raise InputError(f"{where}.mode must be one of {', '.join(MODES)} (got '{mode}').")
    if mode == "storage_only" and destination is not None:
        raise InputError(
            f"{where}: mode storage_only keeps the VM on its host; leave out destination."
        )
    overrides = _mapping(raw.get("policy_overrides"), f"{where}.policy_overrides")
    return ItemSpec(vm=vm, destination=destination, mode=mode, policy_overrides=overrides)


def parse(text: str, source: str = "plan file") -> PlanSpec:
    """The plan a YAML text describes, or an InputError saying what is wrong and where."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise InputError(f"{source} is not valid YAML{where}: {problem}.") from None
    if not isinstance(data, dict):
        raise InputError(f"{source} must be a mapping with at least 'name' and 'items'.")
    _unknown(data, PLAN_KEYS, source)
    window = _mapping(data.get("window"), f"{source}: window", as_json=False)
    _unknown(window, {"start", "end"}, f"{source}: window")
    start = _time(window.get("start"), f"{source}: window.start")
    end = _time(window.get("end"), f"{source}: window.end")
    if start and end and end <= start:
        raise InputError(f"{source}: window.end must come after window.start.")
    raw_items = data.get("items")
    if not isinstance(raw_items, list) or not raw_items:
        raise InputError(f"{source}: items must be a list with at least one VM.")
    items = [_item(raw, f"{source}: items[{n}]") for n, raw in enumerate(raw_items)]
    seen: dict[str, int] = {}
    for n, item in enumerate(items):
        if item.vm in seen:
            raise InputError(
                f"{source}: items[{n}] repeats VM '{item.vm}' (already items[{seen[item.vm]}])."
            )
        seen[item.vm] = n
    return PlanSpec(
        name=_text(data.get("name"), f"{source}: name", required=True, limit=200),
        key=_text(data.get("key"), f"{source}: key", limit=100) or None,
        description=_text(data.get("description"), f"{source}: description"),
        change_ticket=_text(data.get("change_ticket"), f"{source}: change_ticket", limit=100),
        window_start=start,
        window_end=end,
        policy=_mapping(data.get("policy"), f"{source}: policy"),
        items=items,
        source=source,
    )


def load(path: str) -> PlanSpec:
    """Read and parse a plan file ("-" reads standard input)."""
    if path == "-":
        return parse(sys.stdin.read(), "standard input")
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"Cannot read {path}: {exc}.") from None
    return parse(text, path)
