"""Validation after switchover: is the VM really serving on its destination?

Per plan or item (policy.validation): the guest agent answers guest-ping through the
destination's libvirt connection, TCP ports are reachable from the worker, HTTP health URLs
answer 2xx. Each check has a timeout and is tried `retries` more times `delay_s` apart (a
service may need a moment after the switchover). The TCP and HTTP targets pass the same
outbound rules as webhooks (notifications.webhook_guard: public addresses only unless an
admin allowlisted them, never link-local or metadata); a refused target is a failed check,
never a connection. What people read of a network error is its class (the raw text could
describe internal networks); the refusal text is Ferry's own.
"""

import socket
import time
from collections.abc import Callable

from migrations_app.notifications.webhook_guard import (
    WebhookRefused,
    classify_network_error,
    outbound_addresses,
    outbound_request,
)

WHAT = "health check"


def validation_run(spec: dict, session, beat: Callable[[], object]) -> dict:
    """Run every check of `spec` (policy.validation_spec); `beat` renews the lease between
    tries. Returns {"ok", "checks": [{check, target, ok, tries, problem, duration_ms}], …}."""
    timeout = int(spec["timeout_s"])
    probes: list[tuple[str, str, Callable[[], str]]] = []
    if spec.get("guest_agent"):
        probes.append(("guest_agent", "guest-ping", lambda: session.guest_ping(timeout)))
    for target in spec.get("tcp") or []:
        host, port = target["host"], int(target["port"])
        probes.append(("tcp", f"{host}:{port}", lambda h=host, p=port: tcp_probe(h, p, timeout)))
    for url in spec.get("http") or []:
        probes.append(("http", url, lambda u=url: http_probe(u, timeout)))
    checks = [_tried(kind, target, probe, spec, beat) for kind, target, probe in probes]
    return {
        "ok": all(c["ok"] for c in checks),
        "checks": checks,
        "on_failure": spec["on_failure"],
        "timeout_s": timeout,
        "retries": spec["retries"],
    }


def _tried(kind: str, target: str, probe, spec: dict, beat) -> dict:
    started = time.monotonic()
    tries = 0
    problem = ""
    for number in range(int(spec["retries"]) + 1):
        beat()
        tries += 1
        try:
            problem = probe()
        except WebhookRefused as exc:
            # The outbound rules refuse the target: asking again gives the same answer.
            problem = str(exc)
            break
        except Exception as exc:  # a probe must never end the attempt
            problem = f"{type(exc).__name__}: {classify_network_error(exc)}"
        if not problem or number == int(spec["retries"]):
            break
        _sleep(float(spec["delay_s"]), beat)
    return {
        "check": kind,
        "target": target,
        "ok": not problem,
        "tries": tries,
        "problem": problem,
        "duration_ms": int((time.monotonic() - started) * 1000),
    }


def _sleep(seconds: float, beat) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        time.sleep(min(1.0, max(0.0, deadline - time.monotonic())))
        beat()


def tcp_probe(host: str, port: int, timeout: float) -> str:
    """'' when a TCP connection to host:port opens (to an address the rules allow)."""
    addresses = outbound_addresses(host, port, what=WHAT)
    try:
        with socket.create_connection((addresses[0], port), timeout=timeout):
            return ""
    except OSError as exc:
        return f"TCP {host}:{port}: {classify_network_error(exc)}"


def http_probe(url: str, timeout: float) -> str:
    """'' when a GET of `url` answers 2xx (no redirects followed)."""
    try:
        status, reason, _body = outbound_request("GET", url, timeout=timeout, what=WHAT)
    except WebhookRefused:
        raise
    except Exception as exc:
        return f"GET {url}: {classify_network_error(exc)}"
    if 200 <= status < 300:
        return ""
    return f"GET {url} answered {status} {reason}"


def validation_summary(result: dict) -> str:
    """One sentence for people: which checks failed and why."""
    failed = [c for c in result.get("checks", []) if not c["ok"]]
    if not failed:
        return "Validation after switchover passed."
    return "Validation after switchover failed: " + "; ".join(
        f"{c['check']} {c['target']}: {c['problem']} (after {c['tries']} tries)" for c in failed
    )
