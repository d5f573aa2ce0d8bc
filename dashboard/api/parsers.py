"""Request body parsers of the API."""

from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser


class SafeJSONParser(JSONParser):
    """DRF's JSON parser, with absurdly nested bodies answered 400 instead of 500.

    json.loads raises RecursionError (not ValueError) on a body like '[[[[…' a hundred
    thousand deep, which DRF's parser lets through as a server error.
    """

    def parse(self, stream, media_type=None, parser_context=None):
        try:
            return super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise ParseError("JSON parse error - the body is nested too deeply.") from None
