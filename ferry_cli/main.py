"""The `ferry` command: log in, list hosts, and draft, check, approve, run and follow plans
over Ferry's REST API and plan websockets. Exit codes are listed in ferry_cli.errors."""

import sys

import click

from ferry_cli import config
from ferry_cli.client import FerryClient, token_from_password
from ferry_cli.context import FerryGroup, client_of, json_option
from ferry_cli.output import gib, print_json, say, table, wants_json, when
from ferry_cli.plan_commands import plan


@click.group(cls=FerryGroup, context_settings={"help_option_names": ["-h", "--help"]})
@json_option
@click.pass_context
def cli(ctx: click.Context):
    """Ferry from the command line: plans of live VM migrations, checked, approved by a
    second person, run and followed live.

    Log in once with `ferry login`; FERRY_URL and FERRY_TOKEN override the saved login.
    """
    ctx.ensure_object(dict)


# --------------------------------------------------------------------------- login


@cli.command()
@click.option("--url", envvar="FERRY_URL", help="The server, e.g. https://ferry.example.org")
@click.option("--user", "username", envvar="FERRY_USER", help="Your Ferry user name.")
@click.option(
    "--password-stdin", is_flag=True, help="Read the password from standard input (scripts)."
)
@click.option("--token", help="Use this existing API token instead of a password.")
@json_option
@click.pass_context
def login(ctx, url, username, password_stdin, token):
    """Get an API token and save it (with the URL) for the next commands.

    With a user name and password Ferry signs you in like the web page does (lockout and
    the sign-in audit apply) and makes you a new token; your previous token stops
    working. The file is $XDG_CONFIG_HOME/ferry/config.json, readable by you only.
    """
    url = config.normalize_url(url or config.read_file().get("url") or click.prompt("Server URL"))
    if token:
        client = FerryClient(url, token)
        try:
            client.get("/api/v1/auth/token/")
        finally:
            client.close()
        username = username or ""
    else:
        username = username or click.prompt("User name")
        if password_stdin:
            password = sys.stdin.readline().rstrip("\n")
        else:
            password = click.prompt("Password", hide_input=True)
        token = token_from_password(url, username, password)
    path = config.save(config.Settings(url=url, token=token, user=username))
    if wants_json(ctx):
        print_json({"url": url, "user": username, "config": str(path)})
    else:
        who = f" as {username}" if username else ""
        say(f"Logged in to {url}{who}; the token is saved in {path}.")


@cli.command()
@json_option
@click.pass_context
def logout(ctx):
    """Revoke your API token on the server and forget it here."""
    client_of(ctx).delete("/api/v1/auth/token/")
    config.forget()
    if wants_json(ctx):
        print_json({"revoked": True})
    else:
        say("Token revoked and forgotten.")


# --------------------------------------------------------------------------- inventory


HOST_COLUMNS = {
    "ID": "id",
    "NAME": "name",
    "STATE": "state",
    "GROUP": "group",
    "CPU": "cpu_model",
    "MEM FREE/TOTAL GiB": lambda h: (
        f"{gib(h.get('memory_free_mib'))}/{gib(h.get('memory_total_mib'))}"
    ),
    "VMS": "vm_count",
    "LAST SYNC": lambda h: when(h.get("last_sync_at")),
}


@cli.command()
@click.option("--group", help="Only hosts of this group.")
@json_option
@click.pass_context
def hosts(ctx, group):
    """List the hypervisor hosts Ferry knows."""
    params = {"group": group} if group else {}
    rows = client_of(ctx).get_all("/api/v1/hosts/", **params)
    if wants_json(ctx):
        print_json(rows)
        return
    table(HOST_COLUMNS, rows)


cli.add_command(plan)


def app() -> None:
    """The console script's entry point."""
    cli(obj={})
