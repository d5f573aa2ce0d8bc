"""Hooks that can block: an HTTP POST signed like the webhooks (same outbound rules:
migrations_app.notifications.webhook_guard) that must answer 2xx within its timeout, or,
set up by an admin only, a command from FERRY_HOOK_COMMAND_DIR run on the worker with a
timeout and no shell.

Every call is recorded (HookCall: duration, classified outcome; the raw answer is kept for
admins only) and audited with the classified outcome, never the remote text.
"""

import http.client
import json
import os
import secrets
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import PermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.serializers.json import DjangoJSONEncoder
from django.core.validators import URLValidator
from django.db.models import Q

from dashboard.audit.record import Actor, as_actor, audit_record
from dashboard.errors import InputError
from dashboard.permissions import can
from migrations_app.models import Hook, HookCall, MigrationPlan
from migrations_app.notifications.services import SIGNATURE_HEADER, signature_of
from migrations_app.notifications.webhook_guard import (
    classify_network_error,
    webhook_post,
    webhook_target_resolve,
)

MAX_TIMEOUT_S = 3600
PLAN_EVENTS = (Hook.Event.PRE_MIGRATION, Hook.Event.POST_MIGRATION)
CAMPAIGN_EVENTS = tuple(Hook.Event.values)


class HookError(InputError):
    """A hook that cannot be set up as asked (HTTP 400)."""


@dataclass
class HookResult:
    """What one call of a hook came to."""

    ok: bool
    outcome: str
    code: int | None = None
    duration_ms: int = 0
    call_id: int | None = None


def _command_path(command: str) -> Path:
    """The command inside the allowlisted directory, or HookError (no paths, no escapes)."""
    base = getattr(settings, "FERRY_HOOK_COMMAND_DIR", "") or ""
    if not base:
        raise HookError("Command hooks are off: FERRY_HOOK_COMMAND_DIR is not set.")
    name = (command or "").strip()
    if not name or "/" in name or name in (".", "..") or "\0" in name:
        raise HookError("A command hook names a file in the hook directory, without a path.")
    root = Path(base).resolve()
    path = (root / name).resolve()
    if path.parent != root:
        raise HookError(f"'{name}' is not inside the hook directory.")
    if not path.is_file() or not os.access(path, os.X_OK):
        raise HookError(f"'{name}' is not an executable file in the hook directory.")
    return path


def hook_create(
    *,
    actor,
    event: str,
    kind: str,
    campaign=None,
    plan=None,
    url: str = "",
    command: str = "",
    args=None,
    timeout_s: int = 30,
    on_failure: str = Hook.OnFailure.CONTINUE,
) -> Hook:
    """Validate and store a hook on a campaign or a plan (the caller audits the edit as a
    content change of its owner)."""
    allowed = CAMPAIGN_EVENTS if campaign is not None else PLAN_EVENTS
    if event not in allowed:
        raise HookError(f"'{event}' is not a hook event here; use one of {', '.join(allowed)}.")
    if on_failure not in Hook.OnFailure.values:
        raise HookError("on_failure is 'continue' or 'pause'.")
    try:
        timeout_s = int(timeout_s)
    except (TypeError, ValueError):
        raise HookError("timeout_s is a number of seconds.") from None
    if not 1 <= timeout_s <= MAX_TIMEOUT_S:
        raise HookError(f"timeout_s is between 1 and {MAX_TIMEOUT_S} seconds.")
    hook = Hook(
        campaign=campaign,
        plan=plan,
        event=event,
        kind=kind,
        timeout_s=timeout_s,
        on_failure=on_failure,
        created_by_name=as_actor(actor).name[:150],
    )
    if kind == Hook.Kind.HTTP:
        url = (url or "").strip()
        try:
            URLValidator(schemes=["http", "https"])(url)
        except DjangoValidationError:
            raise HookError("An HTTP hook needs an http(s) URL.") from None
        webhook_target_resolve(url)  # the webhooks' outbound rules (raises WebhookRefused)
        hook.url = url
        hook.secret = secrets.token_hex(32)
    elif kind == Hook.Kind.COMMAND:
        if isinstance(actor, AbstractBaseUser) and not can(actor, "hook.command"):
            raise PermissionDenied("Only an admin may set up a command hook.")
        _command_path(command)
        if args is None:
            args = []
        if (
            not isinstance(args, list)
            or len(args) > 20
            or not all(isinstance(a, str) and len(a) <= 500 and "\0" not in a for a in args)
        ):
            raise HookError("args is a list of at most 20 strings.")
        hook.command = command.strip()
        hook.args = args
    else:
        raise HookError("A hook's kind is 'http' or 'command'.")
    hook.save()
    return hook


def hook_content(hook: Hook) -> dict:
    """What an approval of the hook's owner covers (never its secret)."""
    return {
        "event": hook.event,
        "kind": hook.kind,
        "url": hook.url,
        "command": hook.command,
        "args": hook.args,
        "timeout_s": hook.timeout_s,
        "on_failure": hook.on_failure,
    }


def _call_http(hook: Hook, payload: dict) -> tuple[bool, int | None, str, str]:
    body = json.dumps(payload, cls=DjangoJSONEncoder, sort_keys=True).encode("utf-8")
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "Ferry-Hook/1",
        "X-Ferry-Event": f"hook.{hook.event}",
        SIGNATURE_HEADER: signature_of(hook.secret, body),
    }
    try:
        code, reason = webhook_post(hook.url, body, headers, hook.timeout_s)
    except (OSError, ValueError, http.client.HTTPException) as exc:
        return False, None, classify_network_error(exc), f"{type(exc).__name__}: {exc}"[:2000]
    if 200 <= code < 300:
        return True, code, f"HTTP {code}", ""
    return False, code, f"HTTP {code}", f"HTTP {code} {reason}"[:2000]


def _call_command(hook: Hook, payload: dict) -> tuple[bool, int | None, str, str]:
    try:
        path = _command_path(hook.command)
    except HookError as exc:
        return False, None, "command not allowed", str(exc)
    env = {"PATH": "/usr/bin:/bin", "FERRY_HOOK_EVENT": hook.event}
    for key in ("host", "host_uri", "vm", "vm_uuid", "campaign", "plan"):
        if payload.get(key) is not None:
            env[f"FERRY_{key.upper()}"] = str(payload[key])
    try:
        done = subprocess.run(  # noqa: S603 - an allowlisted file, argv list, no shell
            [str(path), *hook.args],
            input=json.dumps(payload, cls=DjangoJSONEncoder).encode("utf-8"),
            capture_output=True,
            timeout=hook.timeout_s,
            env=env,
            cwd=str(path.parent),
            check=False,
        )
    except subprocess.TimeoutExpired:
        return False, None, f"timed out after {hook.timeout_s} s", ""
    except OSError as exc:
        return False, None, "could not run the command", str(exc)[:2000]
    tail = (done.stdout[-1000:] + done.stderr[-1000:]).decode("utf-8", "replace")
    if done.returncode == 0:
        return True, 0, "exit 0", tail
    return False, done.returncode, f"exit {done.returncode}", tail


def hook_call(hook: Hook, *, payload: dict, obj, campaign=None, plan=None, item=None, host=None):
    """Call a hook once, record and audit the call; returns a HookResult."""
    started = time.monotonic()
    if hook.kind == Hook.Kind.HTTP:
        ok, code, outcome, detail = _call_http(hook, payload)
    else:
        ok, code, outcome, detail = _call_command(hook, payload)
    duration_ms = int((time.monotonic() - started) * 1000)
    call = HookCall.objects.create(
        hook=hook,
        event=hook.event,
        campaign=campaign,
        plan=plan,
        item=item,
        host=host,
        ok=ok,
        code=code,
        outcome=outcome[:200],
        detail=detail,
        duration_ms=duration_ms,
    )
    audit_record(
        actor=Actor.system("hooks"),
        action="hook.called" if ok else "hook.failed",
        obj=obj,
        after={
            "hook": hook.pk,
            "event": hook.event,
            "kind": hook.kind,
            "target": hook.url or hook.command,
            "ok": ok,
            "code": code,
            "outcome": outcome,
            "duration_ms": duration_ms,
            "call": call.pk,
            **({"host": host.name} if host is not None else {}),
            **({"vm": item.vm.name} if item is not None else {}),
        },
    )
    return HookResult(ok, outcome, code, duration_ms, call.pk)


def hooks_run(hooks, **kwargs) -> tuple[bool, str, str]:
    """Call hooks in order until one fails: (all ok, what failed, its on_failure policy)."""
    for hook in hooks:
        result = hook_call(hook, **kwargs)
        if not result.ok:
            return False, f"{hook.event} hook failed: {result.outcome}", hook.on_failure
    return True, "", ""


def plan_hooks(plan_id: int, event: str) -> list[Hook]:
    """The hooks of a plan for `event`, and those of the campaign that generated it."""
    plan = MigrationPlan.objects.filter(pk=plan_id).values("campaign_id").first() or {}
    query = Q(plan_id=plan_id)
    if plan.get("campaign_id"):
        query |= Q(campaign_id=plan["campaign_id"])
    return list(Hook.objects.filter(query, event=event).order_by("id"))
