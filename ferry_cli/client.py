"""HTTP to a Ferry server: one client with the API token, readable errors, all pages of a
list, and the sign-in that turns a user name and password into an API token."""

import html
import re
from typing import Any
from urllib.parse import urlsplit

import httpx

from ferry_cli.errors import ApiError, CliError, NetworkError

USER_AGENT = "ferry-cli/0.1"
# DRF's words when the token itself is the problem (not the role).
_AUTH_FAILURES = ("Invalid token", "credentials were not provided", "User inactive")
PAGE_SIZE = 500  # the API's ceiling


def origin_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def _flatten(errors, prefix: str = "") -> list[str]:
    if isinstance(errors, dict):
        out: list[str] = []
        for key, value in errors.items():
            label = "" if key in ("detail", "non_field_errors") else f"{prefix}{key}"
            out += _flatten(value, f"{label}." if label else "")
        return out
    if isinstance(errors, list):
        return [line for value in errors for line in _flatten(value, prefix)]
    return [f"{prefix[:-1]}: {errors}" if prefix else str(errors)]


def detail_of(response: httpx.Response) -> str:
    """The server's own words for an error answer: its `detail`, else its field errors."""
    try:
        body = response.json()
    except ValueError:
        return f"HTTP {response.status_code} {response.reason_phrase} from the server."
    if isinstance(body, dict) and isinstance(body.get("detail"), str):
        return body["detail"]
    lines = _flatten(body)
    return "; ".join(lines) if lines else f"HTTP {response.status_code} from the server."


def _network_error(url: str, exc: httpx.HTTPError) -> NetworkError:
    if isinstance(exc, httpx.TimeoutException):
        return NetworkError(f"{url} did not answer in time.")
    reason = str(exc) or exc.__class__.__name__
    return NetworkError(f"Cannot reach {url}: {reason}")


class FerryClient:
    """The REST API with an API token; every failure is a CliError with one message."""

    def __init__(self, url: str, token: str, *, timeout: float = 30.0):
        self.url = url
        self.token = token
        self.http = httpx.Client(
            base_url=url,
            headers={
                "Authorization": f"Token {token}",
                "Accept": "application/json",
                "User-Agent": USER_AGENT,
            },
            timeout=timeout,
            follow_redirects=False,
        )

    def close(self) -> None:
        self.http.close()

    def request(self, method: str, path: str, *, json=None, params=None) -> Any:
        try:
            response = self.http.request(method, path, json=json, params=params)
        except httpx.HTTPError as exc:
            raise _network_error(self.url, exc) from None
        if response.status_code >= 400:
            detail = detail_of(response)
            if response.status_code in (401, 403) and any(m in detail for m in _AUTH_FAILURES):
                detail += " Run `ferry login` to get a new token."
            raise ApiError(detail, status=response.status_code)
        if response.status_code >= 300:
            raise ApiError(
                f"The server redirected {path} to {response.headers.get('location', '?')}: "
                "is the URL a Ferry server's address?",
                status=response.status_code,
            )
        if response.status_code == 204 or not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            raise ApiError(
                f"The answer to {path} is not JSON: is {self.url} a Ferry server?",
                status=response.status_code,
            ) from None

    def get(self, path: str, **params) -> Any:
        return self.request("GET", path, params=params or None)

    def post(self, path: str, body: dict | None = None) -> Any:
        return self.request("POST", path, json=body if body is not None else {})

    def patch(self, path: str, body: dict) -> Any:
        return self.request("PATCH", path, json=body)

    def delete(self, path: str) -> Any:
        return self.request("DELETE", path)

    def get_all(self, path: str, **params) -> list:
        """Every row of a paginated list (pages are counted here: `next` links carry the
        server's idea of its own address, which a proxy may not share)."""
        rows: list = []
        page = 1
        while True:
            body = self.get(path, page=page, page_size=PAGE_SIZE, **params)
            if isinstance(body, list):  # an unpaginated list
                return body
            rows += body.get("results", [])
            if not body.get("next"):
                return rows
            page += 1


_CSRF_FIELD = re.compile(r'name="csrfmiddlewaretoken"\s+value="([^"]+)"')
_FORM_ERROR = re.compile(r'<p class="error">(.*?)</p>', re.S)


def token_from_password(url: str, username: str, password: str, *, timeout: float = 30.0) -> str:
    """Sign in through the login page (lockout and the audit of sign-ins apply as for a
    person), ask for a new API token, and sign the session out again."""
    origin = origin_of(url)
    login_url = f"{url}/login/"
    headers = {"User-Agent": USER_AGENT, "Referer": login_url, "Origin": origin}
    try:
        with httpx.Client(base_url=url, timeout=timeout, headers=headers) as web:
            page = web.get("/login/")
            if page.status_code != 200:
                raise ApiError(
                    f"{login_url} answered HTTP {page.status_code}: is the URL a Ferry server?",
                    status=page.status_code,
                )
            found = _CSRF_FIELD.search(page.text)
            if found is None:
                raise ApiError(f"{login_url} has no sign-in form: is the URL a Ferry server?")
            form = {
                "username": username,
                "password": password,
                "csrfmiddlewaretoken": found.group(1),
                "next": "/",
            }
            answer = web.post("/login/", data=form)
            if answer.status_code == 403:
                raise ApiError(
                    "The server refused the sign-in form (CSRF check): use the address the "
                    "server knows itself by, or add it to CSRF_TRUSTED_ORIGINS.",
                    status=403,
                )
            if answer.status_code != 302:
                error = _FORM_ERROR.search(answer.text)
                message = html.unescape(error.group(1)).strip() if error else ""
                raise ApiError(
                    f"Sign-in refused: {message or 'check your user name and password.'}",
                    status=answer.status_code,
                )
            csrf = {"X-CSRFToken": web.cookies.get("csrftoken") or ""}
            created = web.post(
                "/api/v1/auth/token/", headers={**csrf, "Accept": "application/json"}
            )
            if created.status_code != 201:
                raise ApiError(detail_of(created), status=created.status_code)
            key = created.json().get("key", "")
            web.post("/logout/", data={"csrfmiddlewaretoken": csrf["X-CSRFToken"]})
    except httpx.HTTPError as exc:
        raise _network_error(url, exc) from None
    if not key:
        raise CliError("The server did not return a token.")
    return key
