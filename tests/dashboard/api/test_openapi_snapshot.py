"""The OpenAPI schema is committed (docs/openapi.yaml), so every API change shows in review.

A change to a path, a parameter, a serializer field or an operation's description changes
the served schema; this test then fails until the file is regenerated on purpose with
`make openapi` and the diff is read like any other change of the API's contract.
"""

import yaml

from tests.conftest import REPO

SNAPSHOT = REPO / "docs" / "openapi.yaml"
# Integer bounds DRF takes from the database backend (PositiveIntegerField is 2^31 - 1 and
# PositiveSmallIntegerField 2^15 - 1 on PostgreSQL, both 2^63 - 1 on SQLite): the contract
# is the same API on either.
_BACKEND_LIMITS = {2**15 - 1, 2**31 - 1, 2**63 - 1, -(2**15), -(2**31), -(2**63)}


def _portable(node):
    """The schema without the integer bounds and formats that depend on the database."""
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            if key in ("maximum", "minimum") and value in _BACKEND_LIMITS:
                continue
            if key == "format" and value in ("int32", "int64"):
                continue
            out[key] = _portable(value)
        return out
    if isinstance(node, list):
        return [_portable(value) for value in node]
    return node


def test_it_serves_exactly_the_committed_schema_when_a_user_asks(api_as):
    client = api_as("viewer")
    response = client.get("/api/schema/", {"format": "json"})
    assert response.status_code == 200
    served = _portable(response.json())
    committed = _portable(yaml.safe_load(SNAPSHOT.read_text(encoding="utf-8")))
    if served != committed:
        changed = sorted(set(served.get("paths", {})) ^ set(committed.get("paths", {}))) or sorted(
            path
            for path in served.get("paths", {})
            if served["paths"][path] != committed["paths"].get(path)
        )
        raise AssertionError(
            "The served OpenAPI schema differs from docs/openapi.yaml "
            f"(first differing paths: {changed[:5] or 'components or info'}). If the API "
            "change is intended, run `make openapi` and review the diff."
        )
