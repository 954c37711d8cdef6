"""Normalisers and junk detection; the SQL twins (bulk re-stitch) agree with Python on arbitrary input."""

from __future__ import annotations

import pytest
from django.db import connection
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stitching.normalizers import is_junk, normalize, sql_junk_reason, sql_normalize


@pytest.mark.parametrize(
    ("normalizer", "raw", "expected"),
    [
        ("email", "  Jana.Novak@Example.COM ", "jana.novak@example.com"),
        ("lower", "ABC", "abc"),
        ("trim", "  Abc ", "Abc"),
        ("trim", 12345, "12345"),
        ("trim", True, None),
        ("trim", 1.5, None),
        ("trim", {"a": 1}, None),
        ("trim", None, None),
        ("phone", "+420 601 234 567", "+420601234567"),
        ("phone", "00420601234567", "+420601234567"),
        ("phone", "601-234-567", "+420601234567"),
        ("phone", "(601) 234 567", "+420601234567"),
        ("phone", "call me", None),
        ("phone", "12", None),
    ],
)
def test_normalize(normalizer, raw, expected):
    assert normalize(normalizer, raw) == expected


@pytest.mark.parametrize(
    "value",
    [
        "",
        "   ",
        "null",
        "NULL",
        "Undefined",
        '"null"',
        "'none'",
        "[object Object]",
        "NaN",
        "0",
        "-1",
        "0000",
        "--",
        "id",
    ],
)
def test_junk_values_are_refused_with_a_reason(value):
    assert is_junk(value)


@pytest.mark.parametrize("value", ["u_0001", "jana@example.com", "+420601234567", "10", "nullable"])
def test_real_identifiers_are_not_junk(value):
    assert is_junk(value) is None


def test_over_long_and_nul_values_are_junk():
    assert is_junk("x" * 400) == "400 characters or longer"
    assert is_junk("a\x00b") == "contains a NUL character"


# Text PostgreSQL can store (no NUL, no lone surrogates), weighted toward the characters the rules care about.
TEXT = st.text(
    alphabet=st.one_of(
        st.sampled_from(list(" \t\n\r\x0b\x0c+-()./0123456789'\"aAzZ@_")),
        st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
    ),
    max_size=24,
) | st.sampled_from(
    [
        "null", ' "Undefined" ', "[object Object]", "+420 601 234 567", "00-0", "00420601234567",
        # Around the cheap first test of the SQL junk test (more than 17 characters left after stripping).
        '"' + "0-" * 12 + '"', "  '\tnot_authenticated'  " + " " * 10, "'" * 20 + "x", "0" * 17 + "x", "x" * 399,
        "y" * 400, "-" * 18 + "a" * 17, "ab" + "\v" * 30,
    ]
)  # fmt: skip


@pytest.mark.django_db
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(raw=TEXT, normalizer=st.sampled_from(["email", "phone", "trim", "lower"]))
def test_sql_normalisers_and_junk_test_agree_with_python(raw, normalizer):
    value = normalize(normalizer, raw)
    with connection.cursor() as cursor:
        expression = sql_normalize(normalizer, "t.x").replace("%", "%%")
        junk = sql_junk_reason("t.y").replace("%", "%%")
        cursor.execute(
            f"SELECT {expression}, {junk} FROM (SELECT %s::text AS x, %s::text AS y) t",
            [raw, value if value is not None else "a"],
        )
        sql_value, sql_junk = cursor.fetchone()
    assert sql_value == value
    if value is not None:
        assert sql_junk == is_junk(value)
