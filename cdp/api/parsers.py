"""The API's JSON body parser: DRF's, with a body nested too deeply for the decoder a 400 instead of a 500."""

from rest_framework import parsers
from rest_framework.exceptions import ParseError


class JSONParser(parsers.JSONParser):
    def parse(self, stream, media_type=None, parser_context=None):
        try:
            return super().parse(stream, media_type, parser_context)
        except RecursionError:
            # e.g. "[" * 100_000: Python's decoder recurses once per level.
            raise ParseError("JSON parse error - nested too deeply.") from None
