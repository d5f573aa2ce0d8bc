"""How a followed plan is shown: a live table with a progress bar per item on a terminal,
one line per change in a log (not a terminal), one JSON object per line with --json."""

import json
import time

from rich.console import Console, Group
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from ferry_cli.live import PlanView

STATUS_STYLE = {
    "completed": "green",
    "failed": "red",
    "cancelled": "yellow",
    "needs_attention": "red",
    "running": "cyan",
}


def item_percent(item: dict) -> float:
    """How far an item is: 100 when completed, else the share sent of what its mode moves
    (memory for live, disks then memory for live_copy, disks for storage_only) as left in
    the current pass; never 100 before it completed."""
    if item.get("status") == "completed":
        return 100.0
    sample = item.get("sample") or {}
    mode = item.get("mode")
    parts = [] if mode == "storage_only" else ["memory"]
    if mode in ("live_copy", "storage_only"):
        parts.append("disk")
    total = sum(sample.get(f"{part}_total") or 0 for part in parts)
    if not total:
        return 0.0
    left = sum(sample.get(f"{part}_remaining") or 0 for part in parts)
    return max(0.0, min(99.0, 100.0 * (1 - left / total)))


def item_state(item: dict) -> str:
    attempt = item.get("attempt") or {}
    status = item.get("status") or ""
    rehearsal = " (rehearsal)" if attempt.get("driver") == "rehearsal" else ""
    if status == "running" and attempt.get("phase"):
        sample = item.get("sample") or {}
        passes = attempt["phase"] in ("transfer", "converge") and sample.get("iteration")
        extra = f" pass {sample['iteration']}" if passes else ""
        return f"{attempt['phase']}{extra}{rehearsal}"
    if status == "completed" and attempt.get("downtime_ms") is not None:
        return f"completed, downtime {attempt['downtime_ms']} ms{rehearsal}"
    if item.get("status_reason") and status != "completed":
        return f"{status}: {item['status_reason']}"
    return status


def plan_line(view: PlanView) -> str:
    plan = view.plan
    run = f", run {view.run['status']}" if view.run else ""
    reason = f" ({plan['status_reason']})" if plan.get("status_reason") else ""
    return f"Plan {plan.get('id')} '{plan.get('name')}': {plan.get('status')}{reason}{run}"


def result_of(view: PlanView) -> dict:
    """The summary a script reads at the end."""
    return {
        "type": "result",
        "plan": view.plan.get("id"),
        "name": view.plan.get("name"),
        "status": view.plan.get("status"),
        "outcome": view.outcome(),
        "ok": view.succeeded(),
        "items": [
            {
                "id": item["id"],
                "vm": item["vm"],
                "source": item.get("source"),
                "destination": item.get("destination"),
                "mode": item.get("mode"),
                "driver": (item.get("attempt") or {}).get("driver"),
                "status": item.get("status"),
                "status_reason": item.get("status_reason") or "",
                "downtime_ms": (item.get("attempt") or {}).get("downtime_ms"),
                "total_time_ms": (item.get("attempt") or {}).get("total_time_ms"),
            }
            for item in view.items.values()
        ],
    }


class JsonLines:
    """Every snapshot and event as received, one JSON object per line."""

    def start(self) -> None:
        pass

    def update(self, view: PlanView, event: dict | None) -> None:
        if event is None:
            body = {"type": "snapshot", "plan": view.plan, "run": view.run}
            body["last_seq"] = view.last_seq
            body["items"] = list(view.items.values())
        else:
            body = {"type": "event", **event}
        print(json.dumps(body, default=str), flush=True)

    def stop(self, view: PlanView) -> None:
        print(json.dumps(result_of(view), default=str), flush=True)


class LogLines:
    """A line when the plan or an item changes state (and per quarter of progress)."""

    def __init__(self, console: Console):
        self.console = console
        self.seen: dict = {}

    def start(self) -> None:
        pass

    def _say(self, key, value, text: str) -> None:
        if self.seen.get(key) != value:
            self.seen[key] = value
            self.console.print(Text(f"{time.strftime('%H:%M:%S')} {text}"))

    def update(self, view: PlanView, event: dict | None) -> None:
        self._say("plan", plan_line(view), plan_line(view))
        for item in view.items.values():
            route = f"{item.get('source')} → {item.get('destination') or '?'}"
            state = item_state(item)
            self._say(("item", item["id"]), state, f"  {item['vm']} ({route}): {state}")
            quarter = int(item_percent(item) // 25)
            if item.get("status") == "running" and quarter:
                self._say(("pct", item["id"]), quarter, f"  {item['vm']}: {quarter * 25} % sent")

    def stop(self, view: PlanView) -> None:
        pass


class LiveTable:
    """A table redrawn in place: one row per item with its progress bar."""

    def __init__(self, console: Console):
        self.console = console
        self.live = Live(console=console, auto_refresh=False, transient=False)

    def start(self) -> None:
        self.live.start()

    def render(self, view: PlanView):
        table = Table(expand=False, box=None, padding=(0, 1))
        for column in ("VM", "from → to", "mode", "progress", "", "state"):
            table.add_column(column)
        for item in view.items.values():
            pct = item_percent(item)
            style = STATUS_STYLE.get(item.get("status"), "")
            table.add_row(
                Text(item["vm"]),
                Text(f"{item.get('source')} → {item.get('destination') or '?'}"),
                Text(item.get("mode") or ""),
                ProgressBar(
                    total=100,
                    completed=pct,
                    width=30,
                    complete_style="cyan",
                    finished_style="green",
                ),
                f"{pct:5.1f} %",
                Text(item_state(item), style=style),
            )
        return Group(Text(plan_line(view), style="bold"), table)

    def update(self, view: PlanView, event: dict | None) -> None:
        self.live.update(self.render(view), refresh=True)

    def stop(self, view: PlanView) -> None:
        self.live.update(self.render(view), refresh=True)
        self.live.stop()


def renderer_for(console: Console, as_json: bool):
    if as_json:
        return JsonLines()
    return LiveTable(console) if console.is_terminal else LogLines(console)
