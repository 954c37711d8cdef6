"""The API's JSON body parser: DRF's, with bodies its decoder takes badly a 400 instead of a 500."""

import codecs
import math

from django.conf import settings
from rest_framework import parsers
from rest_framework.exceptions import ParseError
from rest_framework.utils import json


def _finite_float(text: str) -> float:
    """A JSON number as a float; one beyond a float's range (1e400) is refused: Python's decoder makes it infinity,
    which no field expects (an id lookup raised OverflowError, a 500)."""
    value = float(text)
    if math.isinf(value):
        raise ValueError(f"the number {text[:40]}{'…' if len(text) > 40 else ''} is out of range")
    return value


class JSONParser(parsers.JSONParser):
    def parse(self, stream, media_type=None, parser_context=None):
        # DRF's parse with a parse_float added.
        encoding = (parser_context or {}).get("encoding", settings.DEFAULT_CHARSET)
        try:
            decoded_stream = codecs.getreader(encoding)(stream)
            parse_constant = json.strict_constant if self.strict else None
            return json.load(decoded_stream, parse_constant=parse_constant, parse_float=_finite_float)
        except RecursionError:
            # e.g. "[" * 100_000: Python's decoder recurses once per level.
            raise ParseError("JSON parse error - nested too deeply.") from None
        except ValueError as exc:
            raise ParseError(f"JSON parse error - {exc}") from None
