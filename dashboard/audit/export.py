"""Exports of a filtered audit view as CSV or JSON, streamed row by row."""

import csv
import json

from django.core.serializers.json import DjangoJSONEncoder
from django.http import StreamingHttpResponse

from dashboard.audit.record import HASHED_FIELDS

# Every hashed field plus the hash itself, in the chain's order: an export can be
# re-verified line by line with the same canonical serialization.
EXPORT_FIELDS = (*HASHED_FIELDS, "hash")
# Spreadsheets run cells that start with these as formulas; an audit export must not.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


class _Echo:
    def write(self, value):
        return value


def csv_cell(value) -> str:
    """One CSV cell: JSON for structures, ISO for times, formulas defused."""
    if value is None:
        return ""
    if isinstance(value, dict | list):
        value = json.dumps(value, cls=DjangoJSONEncoder, sort_keys=True)
    elif hasattr(value, "isoformat"):
        value = value.isoformat()
    text = str(value)
    return "'" + text if text.startswith(_FORMULA_START) else text


def _rows(events):
    return events.values_list(*EXPORT_FIELDS).iterator(chunk_size=2000)


def audit_export_csv(events, filename: str) -> StreamingHttpResponse:
    """The events as CSV (header row first)."""
    writer = csv.writer(_Echo())

    def lines():
        yield writer.writerow(EXPORT_FIELDS)
        for row in _rows(events):
            yield writer.writerow([csv_cell(value) for value in row])

    response = StreamingHttpResponse(lines(), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{filename}.csv"'
    return response


def audit_export_json(events, filename: str) -> StreamingHttpResponse:
    """The events as one JSON array of objects."""

    def chunks():
        yield "["
        for index, row in enumerate(_rows(events)):
            prefix = "," if index else ""
            yield prefix + json.dumps(dict(zip(EXPORT_FIELDS, row)), cls=DjangoJSONEncoder)
        yield "]"

    response = StreamingHttpResponse(chunks(), content_type="application/json")
    response["Content-Disposition"] = f'attachment; filename="{filename}.json"'
    return response
