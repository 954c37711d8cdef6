"""Identifier normalisation and junk detection, in Python and as the equivalent SQL (for the bulk re-stitch).

Contracts (tests check the Python and SQL versions agree on arbitrary input):

- `normalize(normalizer, raw) -> str | None`: the normalised identifier value, or None when `raw` cannot be an
  identifier at all (missing, an object or list, a boolean, a non-integral number, a string that is not a phone
  number for the phone normaliser). Only JSON strings and integers are identifiers; an integer is its decimal text.
  Case folding is ASCII-only: locale-independent, so PostgreSQL (whatever its collation) and Python agree, and
  e-mail local parts outside ASCII are case-sensitive anyway (RFC 5321).
- `is_junk(value) -> str | None`: why a normalised value must never link events (None: it may link). The list
  is the one PostHog and Segment protect against (REFERENCES.md): empty, placeholders such as `null`,
  `undefined`, `[object Object]`, quoted variants, only zeros and dashes, NUL bytes, 400 characters or more
  (PostHog caps ids at 400; stored values are cut to 400).
"""

from __future__ import annotations

import re

from django.conf import settings

MAX_IDENTIFIER_LENGTH = 400
WHITESPACE = " \t\n\r\f\v"
JUNK_VALUES = frozenset(
    {
        "anonymous",
        "guest",
        "distinctid",
        "distinct_id",
        "id",
        "not_authenticated",
        "email",
        "undefined",
        "true",
        "false",
        "[object object]",
        "nan",
        "none",
        "null",
        "0",
        "-1",
    }
)
_ZEROS_AND_DASHES = re.compile(r"[0-]*")
_PHONE_CHARS = re.compile(r"[+]?[0-9 ()./-]+")
_NON_DIGITS = re.compile(r"[^0-9]")
_UPPER = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_ASCII_LOWER = str.maketrans(_UPPER, _UPPER.lower())
NORMALIZERS = ("email", "phone", "trim", "lower")


def default_country_code() -> str:
    """Country calling code for phone numbers written without one (setting STITCHING_DEFAULT_COUNTRY_CODE)."""
    return str(getattr(settings, "STITCHING_DEFAULT_COUNTRY_CODE", "420"))


def ascii_lower(text: str) -> str:
    return text.translate(_ASCII_LOWER)


def scalar_text(raw: object) -> str | None:
    """The text of a JSON scalar that can be an identifier: a string, or an integer (not a bool)."""
    if isinstance(raw, str):
        return raw
    if isinstance(raw, int) and not isinstance(raw, bool):
        return str(raw)
    return None


def phone_e164(text: str, *, country_code: str | None = None) -> str | None:
    """+<digits> (8 to 15 digits, no leading zero), from international (+, 00) or national forms."""
    text = text.strip(WHITESPACE)
    if not _PHONE_CHARS.fullmatch(text):
        return None
    digits = _NON_DIGITS.sub("", text)
    if text.startswith("+"):
        number = digits
    elif digits.startswith("00"):
        number = digits[2:]
    else:
        # A national number: the trunk prefix 0 goes, the default country code comes in front.
        number = (country_code or default_country_code()) + digits.lstrip("0")
    if not 8 <= len(number) <= 15 or number.startswith("0"):
        return None
    return "+" + number


def normalize(normalizer: str, raw: object) -> str | None:
    """The normalised identifier value of `raw` by a category's normaliser (see the module contract)."""
    text = scalar_text(raw)
    if text is None:
        return None
    if normalizer == "phone":
        return phone_e164(text)
    text = text.strip(WHITESPACE)
    if normalizer in ("email", "lower"):
        return ascii_lower(text)
    if normalizer == "trim":
        return text
    raise ValueError(f"unknown normalizer {normalizer!r}")


def is_junk(value: str) -> str | None:
    """Why this normalised value never links events, or None when it may."""
    if "\x00" in value:
        return "contains a NUL character"
    if len(value) >= MAX_IDENTIFIER_LENGTH:
        # Stored values are cut to 400 characters; ">=" keeps a cut value junk when it is checked again.
        return f"{MAX_IDENTIFIER_LENGTH} characters or longer"
    core = value.strip(WHITESPACE).strip("'\"").strip(WHITESPACE)
    if not core:
        return "empty"
    if ascii_lower(core) in JUNK_VALUES:
        return "placeholder value"
    if _ZEROS_AND_DASHES.fullmatch(core):
        return "only zeros and dashes"
    return None


# --- SQL equivalents (used by the bulk re-stitch; parameters are bound, never formatted in) ---------------------

# chr() rather than an E'' string: PostgreSQL has no \v escape.
_SQL_WS = "(' ' || chr(9) || chr(10) || chr(11) || chr(12) || chr(13))"


def sql_scalar_text(json_expr: str) -> str:
    """SQL: the identifier text of a jsonb expression (strings and integers only), else NULL."""
    return (
        f"(CASE jsonb_typeof({json_expr}) WHEN 'string' THEN {json_expr} #>> '{{}}' "
        f"WHEN 'number' THEN (CASE WHEN ({json_expr} #>> '{{}}') ~ '^-?[0-9]+$' THEN {json_expr} #>> '{{}}' END) END)"
    )


def _sql_ascii_lower(text_expr: str) -> str:
    """SQL: `ascii_lower`. lower() under the "C" collation changes ASCII letters only (translate() with the
    alphabet did the same, 25 times slower); the result gets the default collation back."""
    return f'(lower(({text_expr}) COLLATE "C") COLLATE "default")'


def sql_normalize(normalizer: str, text_expr: str, *, country_code: str | None = None) -> str:
    """SQL expression: `normalize(normalizer, ...)` of a text expression (NULL in, NULL out)."""
    if normalizer == "trim":
        return f"btrim({text_expr}, {_SQL_WS})"
    if normalizer in ("email", "lower"):
        return _sql_ascii_lower(f"btrim({text_expr}, {_SQL_WS})")
    if normalizer == "phone":
        code = country_code or default_country_code()
        if not code.isdigit():
            raise ValueError("STITCHING_DEFAULT_COUNTRY_CODE must be digits")
        # SQL has no local variables: every mention below is evaluated again, so each is kept cheap. Where the
        # result is not NULL the text matched the pattern, so its non-digits are among "+ ()./-": translate()
        # drops them (a regexp_replace per mention made a phone cost 25 us); `= ANY` and NOT LIKE read the number
        # once (BETWEEN would read it twice).
        t = f"btrim({text_expr}, {_SQL_WS})"
        digits = f"translate({t}, '+ ()./-', '')"
        number = (
            f"(CASE WHEN {t} LIKE '+%' THEN {digits} WHEN {digits} LIKE '00%' THEN substr({digits}, 3) "
            f"ELSE '{code}' || ltrim({digits}, '0') END)"
        )
        # Nested CASEs: the number is not computed for a NULL or a text that is no phone number (an AND goes on
        # evaluating after a NULL operand).
        return (
            f"(CASE WHEN {t} ~ '^[+]?[0-9 ()./-]+$' THEN (CASE WHEN length({number}) "
            f"= ANY('{{8,9,10,11,12,13,14,15}}') AND {number} NOT LIKE '0%' THEN '+' || {number} END) END)"
        )
    raise ValueError(f"unknown normalizer {normalizer!r}")


def sql_junk_core(value_expr: str) -> str:
    """SQL expression: the value without surrounding whitespace and quotes (what `sql_junk_reason` tests)."""
    return f"btrim(btrim(btrim({value_expr}, {_SQL_WS}), '''\"'), {_SQL_WS})"


def sql_junk_reason(value_expr: str) -> str:
    """SQL expression: `is_junk(...)` of a normalised text value (NULL when it may link)."""
    core = sql_junk_core(value_expr)
    junk = ", ".join("'" + v.replace("'", "''") + "'" for v in sorted(JUNK_VALUES))
    # A first, cheap test clears nearly every real value (the bulk re-stitch tests every pair): with whitespace,
    # quotes, zeros and dashes taken off both ends (at least what the core loses), more characters are left than
    # the longest placeholder has. The core holds them, so it is no placeholder, not empty, not zeros and dashes.
    longest = max(len(v) for v in JUNK_VALUES)
    return (
        f"(CASE WHEN length({value_expr}) < {MAX_IDENTIFIER_LENGTH} "
        f"AND length(btrim({value_expr}, {_SQL_WS} || '''\"0-')) > {longest} THEN NULL "
        # No NUL test: PostgreSQL text cannot hold one (ingestion rejects \\u0000).
        f"WHEN length({value_expr}) >= {MAX_IDENTIFIER_LENGTH} "
        f"THEN '{MAX_IDENTIFIER_LENGTH} characters or longer' "
        f"WHEN {core} = '' THEN 'empty' "
        f"WHEN {_sql_ascii_lower(core)} IN ({junk}) THEN 'placeholder value' "
        f"WHEN btrim({core}, '0-') = '' THEN 'only zeros and dashes' END)"  # (a regular expression cost more)
    )
