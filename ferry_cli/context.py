"""What every command shares: the one place errors become messages and exit codes, the
--json option, the API client of the saved login, and plan references by id or name."""

import json

import click
from rich.text import Text

from ferry_cli import config
from ferry_cli.client import FerryClient
from ferry_cli.errors import CliError, InputError
from ferry_cli.output import err, wants_json
from ferry_cli.reconcile import choose_plan


class FerryGroup(click.Group):
    """Shows a CliError as one message with its exit code (never a traceback)."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except CliError as exc:
            if wants_json(ctx):
                click.echo(json.dumps({"error": exc.message, "status": exc.status}))
            err.print(Text("Error: ", style="red") + Text(exc.message))
            ctx.exit(exc.exit_code)
        except KeyboardInterrupt:
            err.print("Stopped (the server carries on with anything already started).")
            ctx.exit(130)


def _set_json(ctx: click.Context, _param, value: bool) -> None:
    if value:
        ctx.ensure_object(dict)["json"] = True


json_option = click.option(
    "--json",
    "as_json",
    is_flag=True,
    expose_value=False,
    is_eager=True,
    callback=_set_json,
    help="Print JSON for scripts instead of tables.",
)


def client_of(ctx: click.Context) -> FerryClient:
    obj = ctx.ensure_object(dict)
    if "client" not in obj:
        settings = config.load()
        obj["client"] = FerryClient(settings.url, settings.token)
        ctx.call_on_close(obj["client"].close)
    return obj["client"]


def plan_id_of(client: FerryClient, ref: str) -> int:
    """A plan id from an id or a plan name (the open plan of that name, else the newest)."""
    if ref.isdigit():
        return int(ref)
    plans = [p for p in client.get_all("/api/v1/plans/") if p["name"] == ref]
    found = choose_plan(plans, f"named '{ref}'")
    if found is None:
        raise InputError(f"No plan is named '{ref}'.")
    return found["id"]
