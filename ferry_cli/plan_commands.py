"""`ferry plan ...`: list, show, create, validate, the workflow's actions, watch, apply."""

import json

import click

from ferry_cli import planfile, reconcile
from ferry_cli.client import FerryClient
from ferry_cli.context import client_of, json_option, plan_id_of
from ferry_cli.errors import EXIT_OUTCOME, CliError
from ferry_cli.live import Follower, PlanView
from ferry_cli.output import out, print_json, say, table, wants_json, when
from ferry_cli.render import renderer_for


@click.group()
def plan():
    """Draft, check, approve, run and follow migration plans."""


def plan_command(name: str, *options, help: str | None = None):
    """A `ferry plan NAME PLAN` command: PLAN (an id or a name), the options, --json."""

    def decorate(function):
        function = json_option(click.pass_context(function))
        for option in reversed(options):
            function = option(function)
        function = click.argument("plan_ref", metavar="PLAN")(function)
        return plan.command(name, help=help)(function)

    return decorate


PLAN_COLUMNS = {
    "ID": "id",
    "NAME": "name",
    "STATUS": "status",
    "ITEMS": "item_count",
    "UNPLACED": "unplaced_count",
    "AUTHOR": "author_name",
    "TICKET": "change_ticket",
    "UPDATED": lambda p: when(p.get("updated_at")),
}
ITEM_COLUMNS = {
    "ITEM": "id",
    "VM": "vm_name",
    "FROM": "source_host_name",
    "TO": lambda i: i.get("destination_host_name") or "(to place)",
    "MODE": "mode",
    "STATUS": "status",
}


@plan.command("list")
@click.option("--status", help="Only plans in this status (draft, submitted, running...).")
@json_option
@click.pass_context
def plan_list(ctx, status):
    """List plans, newest first."""
    rows = client_of(ctx).get_all("/api/v1/plans/")
    if status:
        rows = [p for p in rows if p["status"] == status]
    if wants_json(ctx):
        print_json(rows)
        return
    table(PLAN_COLUMNS, rows)


def _latest_validation(client: FerryClient, plan_id: int) -> dict | None:
    try:
        return client.get(f"/api/v1/plans/{plan_id}/validations/latest/")
    except CliError as exc:
        if exc.status == 404:
            return None
        raise


def _print_validation(run: dict) -> None:
    verdict = "passed" if not run["blockers"] else "did not pass"
    say(
        f"Validation {run['id']} (plan version {run['plan_version']}) {verdict}: "
        f"{run['blockers']} blocker(s), {run['warnings']} warning(s)."
    )
    for result in run.get("results", []):
        if result["severity"] in ("blocker", "warning"):
            remedy = f" — {result['remedy']}" if result.get("remedy") else ""
            say(f"  [{result['severity']}] {result['message']}{remedy}")


@plan_command("show")
def plan_show(ctx, plan_ref):
    """Show a plan (by id or name): fields, items and its latest validation."""
    client = client_of(ctx)
    plan_id = plan_id_of(client, plan_ref)
    detail = client.get(f"/api/v1/plans/{plan_id}/")
    items = client.get_all(f"/api/v1/plans/{plan_id}/items/")
    validation = _latest_validation(client, plan_id)
    if wants_json(ctx):
        print_json({"plan": detail, "items": items, "validation": validation})
        return
    say(f": {detail['status']}", bold=f"Plan {detail['id']} '{detail['name']}'")
    if detail.get("status_reason"):
        say(f"  reason: {detail['status_reason']}")
    window = f"{when(detail.get('window_start')) or '-'} → {when(detail.get('window_end')) or '-'}"
    for label, value in (
        ("author", detail.get("author_name")),
        ("change ticket", detail.get("change_ticket")),
        ("window (UTC)", window),
        ("version", detail.get("version")),
        ("content hash", detail.get("content_hash") or "(not submitted)"),
        ("hold", "yes" if detail.get("hold") else "no"),
    ):
        say(f"  {label}: {value}")
    table(ITEM_COLUMNS, items)
    if validation:
        _print_validation(validation)
    else:
        say("Not validated yet.")


@plan.command("create")
@click.option("-f", "--file", "path", required=True, help="The plan file (YAML; - for stdin).")
@json_option
@click.pass_context
def plan_create(ctx, path):
    """Create a new draft plan from a plan file (see docs/cli.md for the format)."""
    spec = planfile.load(path)
    summary = _print_converged(ctx, reconcile.plan_create_new(client_of(ctx), spec))
    if wants_json(ctx):
        print_json(summary)


def _print_converged(ctx, outcome: reconcile.Outcome, extra: list[str] | None = None) -> dict:
    p = outcome.plan
    summary = {
        "type": "apply",
        "plan": p,
        "created": outcome.created,
        "changed": outcome.changed,
        "actions": extra or [],
        "placement": outcome.placement,
    }
    if wants_json(ctx):
        return summary
    what = "; ".join([*outcome.changed, *(extra or [])]) or "up to date, nothing to change"
    say(f"Plan {p['id']} '{p['name']}' ({p['status']}): {what}.")
    unplaced = (outcome.placement or {}).get("unplaced")
    if unplaced:
        say(f"  {unplaced} item(s) could not be placed: see `ferry plan validate {p['id']}`.")
    return summary


@plan_command("validate")
def plan_validate(ctx, plan_ref):
    """Run every check on every item; exit code 3 when there are blockers."""
    client = client_of(ctx)
    run = client.post(f"/api/v1/plans/{plan_id_of(client, plan_ref)}/validate/")
    if wants_json(ctx):
        print_json(run)
    else:
        _print_validation(run)
    if run["blockers"]:
        ctx.exit(EXIT_OUTCOME)


def _workflow(ctx, plan_ref: str, action: str, body: dict) -> None:
    client = client_of(ctx)
    answer = client.post(f"/api/v1/plans/{plan_id_of(client, plan_ref)}/{action}/", body)
    if wants_json(ctx):
        print_json(answer)
        return
    say(
        f"{answer['detail']} (status {answer['status']}, "
        f"approvals {answer['approvals']}/{answer['approvals_required']})"
    )


REASON = click.option("--reason", default="", help="Why (required by the server).")
# The workflow's actions: one POST each, with the body fields the API takes.
WORKFLOW_ACTIONS = {
    "submit": ("Submit a validated draft for approval (freezes its content).", []),
    "approve": (
        "Approve a submitted plan (four eyes: never your own).",
        [
            click.option("--comment", default="", help="Why you approve (kept in the audit)."),
            click.option(
                "--content-hash",
                default="",
                help="The content hash you reviewed (`ferry plan show`): refused if the plan "
                "changed since.",
            ),
        ],
    ),
    "reject": ("Reject a submitted plan.", [REASON]),
    "start": (
        "Start an approved plan.",
        [
            click.option(
                "--override-reason",
                default="",
                help="Required to start outside the maintenance window.",
            )
        ],
    ),
    "pause": ("Pause a running plan (items in flight finish).", []),
    "resume": ("Resume a paused plan.", []),
    "cancel": ("Cancel a plan (running items are aborted; VMs stay on their source).", [REASON]),
}


def _workflow_command(action: str, help_text: str, options: list) -> click.Command:
    def command(ctx, plan_ref, **body):
        _workflow(ctx, plan_ref, action, body)

    return plan_command(action, *options, help=help_text)(command)


for _action, (_help, _options) in WORKFLOW_ACTIONS.items():
    _workflow_command(_action, _help, _options)


# --------------------------------------------------------------------------- following

wait_options = [
    click.option("--timeout", type=click.FloatRange(min=1), help="Give up after this many s."),
    click.option("--poll", is_flag=True, help="Poll over REST instead of the websocket."),
]


def _with(options):
    def decorate(function):
        for option in reversed(options):
            function = option(function)
        return function

    return decorate


def _follow(ctx, client: FerryClient, plan_id: int, *, timeout, poll, on_view=None) -> PlanView:
    renderer = renderer_for(out, wants_json(ctx))

    def on_update(view: PlanView, event):
        renderer.update(view, event)
        if on_view is not None:
            on_view(view)

    follower = Follower(client, plan_id, on_update=on_update, poll_only=poll)
    renderer.start()
    try:
        view = follower.follow(lambda v: v.outcome() is not None, timeout=timeout)
    finally:
        renderer.stop(follower.view)
    if not wants_json(ctx):
        ended = view.outcome()
        verdict = "every item completed" if view.succeeded() else f"ended as {ended}"
        if ended == "waiting_for_operator":
            verdict = (
                "its run stopped with items that did not complete; an operator retries them "
                "or finishes the run"
            )
        say(f"Plan {plan_id}: {verdict}.")
    return view


@plan_command("watch", *wait_options)
def plan_watch(ctx, plan_ref, timeout, poll):
    """Follow a plan live until it ends; exit code 0 only when every item completed."""
    client = client_of(ctx)
    view = _follow(ctx, client, plan_id_of(client, plan_ref), timeout=timeout, poll=poll)
    ctx.exit(0 if view.succeeded() else EXIT_OUTCOME)


@plan.command("apply")
@click.option("-f", "--file", "path", required=True, help="The plan file (YAML; - for stdin).")
@click.option("--submit/--no-submit", default=True, help="Validate and submit a draft (default).")
@click.option("--wait", is_flag=True, help="Follow the plan until it ends.")
@click.option("--start", "start_it", is_flag=True, help="Start it once approved (operators).")
@click.option("--override-reason", default="", help="With --start outside the window.")
@_with(wait_options)
@json_option
@click.pass_context
def plan_apply(ctx, path, submit, wait, start_it, override_reason, timeout, poll):
    """Create or update the plan a file describes, idempotently.

    The plan is found by the file's `key` (or its name). Nothing is written when it
    already matches the file. A changed plan is updated, which sends a submitted or
    approved plan back to draft and voids its approvals (the server decides). A draft is
    then validated and submitted. With --wait the command follows the plan until it ends
    and exits 0 only when every item completed.
    """
    spec = planfile.load(path)
    client = client_of(ctx)
    outcome = reconcile.plan_converge(client, spec)
    plan_id = outcome.plan["id"]
    actions: list[str] = []
    run = None
    if outcome.plan["status"] == "draft" and submit:
        run = client.post(f"/api/v1/plans/{plan_id}/validate/")
        actions.append(f"validated ({run['blockers']} blocker(s), {run['warnings']} warning(s))")
        if not run["blockers"]:
            client.post(f"/api/v1/plans/{plan_id}/submit/")
            actions.append("submitted for approval")
        outcome.plan = client.get(f"/api/v1/plans/{plan_id}/")
    started = []

    def start_when_approved(view: PlanView) -> None:
        if start_it and not started and view.plan.get("status") in ("approved", "scheduled"):
            started.append(True)
            client.post(f"/api/v1/plans/{plan_id}/start/", {"override_reason": override_reason})

    if not wait and start_it and outcome.plan["status"] in ("approved", "scheduled"):
        client.post(f"/api/v1/plans/{plan_id}/start/", {"override_reason": override_reason})
        actions.append("started")
    summary = _print_converged(ctx, outcome, actions)
    summary["validation"] = run
    if wants_json(ctx):
        click.echo(json.dumps(summary, default=str) if wait else json.dumps(summary, indent=2))
    blocked = run is not None and run["blockers"]
    if blocked:
        if not wants_json(ctx):
            _print_validation(run)
        ctx.exit(EXIT_OUTCOME)
    if not wait:
        return
    view = _follow(ctx, client, plan_id, timeout=timeout, poll=poll, on_view=start_when_approved)
    ctx.exit(0 if view.succeeded() else EXIT_OUTCOME)
