"""Hostile input to the segments, segment exports / destinations / schedules and Audience (/wbs) APIs is a 4xx
whose message names the problem, never a 500: condition trees (operators per data type, values of the wrong
type, reversed ranges, out-of-range numbers and dates, regex-special text, deep and wide trees), wrong JSON types
for every field, NUL characters, lone surrogates, 100k-character texts, ids beyond bigint, pagination garbage,
destination configs of the wrong shape, invalid schedules, exports of segments the user may not see, and /wbs
with missing, garbage or huge parameters.

Each test sends a batch of requests and lists every one that broke the rule (the checker of the issue-3 fuzz
test), so one run shows them all."""

from __future__ import annotations

import json
import secrets
from typing import Any
from urllib.parse import quote

import pytest
from django.test import Client

from cdp.features import Feature
from cdp.ratelimit import rate_limit_setting_forget
from cdp.services.auth import role_update
from cdp.services.global_settings import global_setting_set
from segments.exports.models import ExportDestination, ExportSchedule, SegmentExport
from segments.exports.services import destination_create, export_create, schedule_set
from segments.models import Segment, SegmentGrant, SegmentNote, Tag
from segments.services import segment_create, segment_grant_set, segment_note_create, segment_trash
from tests.cdp.api.test_fuzz_issue3 import BODIES, PAGINATION, _with
from tests.conftest import client_for
from tests.fuzz import BIGINT_PAST, HUGE, ID_NUMBERS, INT_PAST, LONG, NUMBERS, SURROGATE
from tests.fuzz import problem as _problem
from tests.fuzz import run as _run
from tests.fuzz import with_number as _with_number
from tests.segments.conftest import EXCLUSION_TREE

pytestmark = pytest.mark.django_db

BAD_IDS = ["abc", "0", "-1", str(HUGE), str(BIGINT_PAST), str(INT_PAST), "1.5", "%C2%B2", "9" * 5000, "%00", "1%00"]
# Values no id field can take, as JSON.
BAD_ID_VALUES = [HUGE, -HUGE, BIGINT_PAST, INT_PAST, -1, 0, 1.5, "abc", "1\x00", "", None, {}, [], [1], True, LONG,
                 "9" * 5000, 1e308]  # fmt: skip


def _surrogate_text(body: dict, field: str) -> str:
    """The body as JSON text with `field` a text holding a lone surrogate."""
    return json.dumps({**body, field: "PLACEHOLDER"}).replace("PLACEHOLDER", f"a{SURROGATE}b")


def _denied(problems: list[str], client, method: str, url: str, body=None, *, expected=(404,)) -> None:
    """An access check: record a problem unless `client`'s request is answered with one of `expected`."""
    response = getattr(client, method)(url, body, format="json")
    if response.status_code not in expected:
        problems.append(f"{method} {url}: {response.status_code}, expected {' or '.join(map(str, expected))}")


@pytest.fixture(autouse=True)
def media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path


@pytest.fixture
def world(exclusion_segment, cast, editor_role) -> dict[str, Any]:
    """The exclusion segment (owner's; viewer granted view), a private segment of the owner, a trashed one, a
    note, a CSV destination, a schedule and a waiting export. The editors' role may run exports too (so the
    export views, not the feature check, answer)."""
    role_update(role=editor_role, features=[*editor_role.features, Feature.EXPORTS_RUN])
    segment = exclusion_segment
    segment_grant_set(segment=segment, user=cast["viewer"], permission="view")
    private = segment_create(owner=cast["owner"], name="Private", conditions=EXCLUSION_TREE)
    trashed = segment_trash(segment=segment_create(owner=cast["owner"], name="Trashed", conditions=EXCLUSION_TREE))
    note = segment_note_create(segment=segment, author=cast["owner"], text="first")
    destination = destination_create(name="CSV", kind="csv", config={}, mandatory_attributes=["ps_email_address"])
    schedule = schedule_set(segment=segment, destination=destination, frequency="daily", enabled=True,
                            user=cast["owner"])  # fmt: skip
    export = export_create(segment=segment, destination=destination, user=cast["owner"], enqueue=False)
    return {
        "segment": segment.pk, "private": private.pk, "trashed": trashed.pk, "note": note.pk,
        "grant": SegmentGrant.objects.get(segment=segment).pk, "destination": destination.pk,
        "schedule": schedule.pk, "export": export.pk, "tag": Tag.objects.get().pk,
        "owner": client_for(cast["owner"]), "viewer": client_for(cast["viewer"]),
        "outsider": client_for(cast["outsider"]), "admin": client_for(cast["admin"]), "cast": cast,
    }  # fmt: skip


def _segment_state(pk: int) -> dict:
    segment = Segment.objects.get(pk=pk)
    return {"row": Segment.objects.values().get(pk=pk), "tags": sorted(t.name for t in segment.tags.all()),
            "notes": list(SegmentNote.objects.filter(segment=segment).values()),
            "grants": list(SegmentGrant.objects.filter(segment=segment).values())}  # fmt: skip


# --- condition trees -------------------------------------------------------------------------------------------


def _and(*children: Any) -> dict:
    return {"operator": "and", "children": list(children)}


def _c(attribute: Any, operator: Any, value: Any = None, **extra: Any) -> dict:
    node = {"attribute": attribute, "operator": operator, **extra}
    if value is not None:
        node["value"] = value
    return node


def _nested(depth: int) -> dict:
    tree: dict = _c("consent", "is_true")
    for _ in range(depth):
        tree = _and(tree)
    return tree


def _nested_text(depth: int) -> str:
    """JSON text of a tree of `depth` nested groups (json.dumps itself would recurse too deeply)."""
    group, leaf = '{"operator": "and", "children": [', '{"attribute": "consent", "operator": "is_true"}'
    return group * depth + leaf + "]}" * depth


SURROGATE_VALUE = "a\ud800b"  # json.dumps writes it as the escape "\ud800"

BAD_TREES: list[Any] = [
    [], "and", 1, True, {}, {"operator": "and"}, {"children": []}, {"operator": "xor", "children": []},
    {"operator": None, "children": []}, {"operator": {}, "children": []}, {"operator": ["and"], "children": []},
    {"operator": "AND", "children": []}, {"operator": "and", "children": {}}, {"operator": "and", "children": "x"},
    {"operator": "and", "children": None}, _and(1), _and(None), _and([]), _and("x"),
    {"operator": "and", "children": [], "negate": "true"}, {"operator": "and", "children": [], "negate": 1},
    {"operator": "and", "children": [], "negate": None}, {"operator": "and", "children": [], "foo": 1},
    {"operator": "and", "children": [], "attribute": "age"}, _and(_c("nope", "is_set")), _and(_c(None, "is_set")),
    _and(_c(1, "is_set")), _and(_c([], "is_set")), _and(_c({}, "is_set")), _and(_c(LONG, "is_set")),
    _and(_c("a\x00", "is_set")), _and(_c(SURROGATE_VALUE, "is_set")), _and(_c("AGE", "is_set")),
    _and({"attribute": "age"}), _and(_c("age", None)), _and(_c("age", {})), _and(_c("age", [])),
    _and(_c("age", LONG)), _and(_c("age", "contains", "1")), _and(_c("gender", "gt", "a")),
    _and(_c("consent", "equals", True)), _and(_c("birthday", "contains", "2")), _and(_c("age", "is_true")),
    _and(_c("age", "within_last_days", 3)), _and(_c("consent", "is_true", True)), _and(_c("age", "is_set", 1)),
    _and(_c("age", "is_set", negate="yes")), _and(_c("age", "gte")), _and(_c("age", "gte", "abc")),
    _and(_c("age", "gte", "1e400")), _and(_c("age", "gte", "nan")), _and(_c("age", "gte", "NaN")),
    _and(_c("age", "gte", "inf")), _and(_c("age", "gte", "-Infinity")), _and(_c("age", "gte", "Infinity")),
    _and(_c("age", "gte", 10**30 + 1)), _and(_c("age", "gte", -(10**30) - 1)), _and(_c("age", "gte", 10**400)),
    _and(_c("age", "gte", "9" * 5000)), _and(_c("age", "gte", "9" * 40)), _and(_c("age", "gte", True)),
    _and(_c("age", "gte", [])), _and(_c("age", "gte", [1])), _and(_c("age", "gte", {})), _and(_c("age", "gte", "")),
    _and(_c("age", "gte", " ")), _and(_c("age", "gte", "0x10")), _and(_c("age", "gte", "1,5")),
    _and(_c("age", "gte", "a\x00")), _and(_c("age", "gte", SURROGATE_VALUE)), _and(_c("age", "gte", LONG)),
    _and(_c("total_revenue", "between", [5, 1])), _and(_c("total_revenue", "between", [1])),
    _and(_c("total_revenue", "between", [1, 2, 3])), _and(_c("total_revenue", "between", "1,2")),
    _and(_c("total_revenue", "between", [None, 1])), _and(_c("total_revenue", "between", [1, "x"])),
    _and(_c("total_revenue", "between", [{}, 1])), _and(_c("total_revenue", "between", [[1], 2])),
    _and(_c("total_revenue", "between", {"low": 1, "high": 2})), _and(_c("total_revenue", "between", [])),
    _and(_c("total_revenue", "between", [1e308, -1e308])), _and(_c("total_revenue", "between", ["1e400", 1])),
    _and(_c("birthday", "between", ["2025-12-31", "2025-01-01"])),
    _and(_c("last_seen", "between", ["2025-01-02T00:00:00Z", "2025-01-01T23:59:59Z"])),
    _and(_c("last_seen", "between", ["2025-01-01T01:00:00+01:00", "2025-01-01T00:00:00+02:00"])),
    _and(_c("gender", "in", [])), _and(_c("gender", "in", "male")), _and(_c("gender", "in", {})),
    _and(_c("gender", "in", [1])), _and(_c("gender", "in", [None])), _and(_c("gender", "in", [["male"]])),
    _and(_c("gender", "in", ["a\x00"])), _and(_c("gender", "in", [SURROGATE_VALUE])), _and(_c("gender", "in", [LONG])),
    _and(_c("gender", "in", ["a"] * 1001)), _and(_c("gender", "equals", 1)), _and(_c("gender", "equals", True)),
    _and(_c("gender", "equals", LONG)), _and(_c("gender", "equals", "a\x00")),
    _and(_c("gender", "equals", SURROGATE_VALUE)), _and(_c("gender", "contains", "")),
    _and(_c("gender", "starts_with", "")), _and(_c("gender", "ends_with", "")), _and(_c("gender", "contains", 1)),
    _and(_c("gender", "contains", ["a"])), _and(_c("gender", "contains", "x" * 1001)),
    _and(_c("gender", "contains", "a\x00")), _and(_c("gender", "ends_with", SURROGATE_VALUE)),
    _and(_c("birthday", "equals", "2025-02-30")), _and(_c("birthday", "equals", "0000-01-01")),
    _and(_c("birthday", "equals", "99999-01-01")), _and(_c("birthday", "equals", "-0001-01-01")),
    _and(_c("birthday", "equals", "2025-01-01T00:00:00Z")), _and(_c("birthday", "equals", 20250101)),
    _and(_c("birthday", "equals", "abc")), _and(_c("birthday", "equals", "")), _and(_c("birthday", "equals", LONG)),
    _and(_c("birthday", "equals", "2025-01-01\x00")), _and(_c("birthday", "before", 1)),
    _and(_c("last_seen", "after", "0001-01-01T00:00:00+14:00")),
    _and(_c("last_seen", "before", "9999-12-31T23:59:59-14:00")), _and(_c("last_seen", "after", "2025-13-01")),
    _and(_c("last_seen", "after", "2025-01-01T25:00")), _and(_c("last_seen", "after", "2025-01-01T00:00:00+25:00")),
    _and(_c("last_seen", "after", "now")), _and(_c("last_seen", "after", 1700000000)),
    _and(_c("last_seen", "after", LONG)), _and(_c("last_seen", "after", "2025-01-01T00:00:00\x00")),
    _and(_c("last_seen", "after", SURROGATE_VALUE)), _and(_c("last_seen", "within_last_days", -1)),
    _and(_c("last_seen", "within_last_days", 36601)), _and(_c("last_seen", "within_last_days", HUGE)),
    _and(_c("last_seen", "within_last_days", 1.5)), _and(_c("last_seen", "within_last_days", "5")),
    _and(_c("last_seen", "within_last_days", True)), _and(_c("last_seen", "within_last_days", [5])),
    _and(_c("birthday", "within_last_days", -(10**30))), _and(_c("consent", "is_false", False)),
    _and(_c("consent", "equals", "true")), _nested(21), _nested(200),
    _and(*[_c("consent", "is_true") for _ in range(501)]),
]  # fmt: skip

# Valid trees with hostile-looking values: accepted (2xx) or refused, never a 500; a preview counts them.
ODD_TREES: list[Any] = [
    None, _and(), {"operator": "or", "children": []}, {"operator": "or", "children": [], "negate": True},
    _and(_and(), {"operator": "or", "children": [_and()]}), _nested(19), _nested(20),
    _and(_c("age", "is_set", None)), _and({"attribute": "age", "operator": "is_set", "type": "x", "id": 1}),
    _and(_c("age", "gte", 10**30)), _and(_c("age", "gte", -(10**30))), _and(_c("age", "gte", 1e308)),
    _and(_c("age", "gte", -1e308)), _and(_c("age", "gte", 5e-324)), _and(_c("age", "gte", "1e308")),
    _and(_c("age", "gte", " 18 ")), _and(_c("age", "gte", "1_000")), _and(_c("age", "gte", "1E3")),
    _and(_c("age", "gte", 2**53 + 1)), _and(_c("age", "gte", 1.5)), _and(_c("total_revenue", "between", [0, 0])),
    _and(_c("total_revenue", "between", [-1e308, 1e308])), _and(_c("total_revenue", "between", [1, 1.0])),
    _and(_c("total_revenue", "not_equals", 0)), _and(_c("gender", "in", ["a"] * 1000)),
    _and(_c("gender", "in", ["male", "male"])), _and(_c("gender", "equals", "")),
    _and(_c("gender", "not_equals", "")), _and(_c("birthday", "equals", "0001-01-01")),
    _and(_c("birthday", "between", ["0001-01-01", "9999-12-31"])), _and(_c("birthday", "equals", "2025-W01-1")),
    _and(_c("last_seen", "after", "0001-01-01")), _and(_c("last_seen", "before", "9999-12-31T23:59:59Z")),
    _and(_c("last_seen", "between", ["0999-01-01T00:00:00Z", "2000-01-01T00:00:00Z"])),
    _and(_c("last_seen", "after", "2025-01-01T00:00:00.123456789Z")), _and(_c("last_seen", "after", " 2025-01-01 ")),
    _and(_c("last_seen", "within_last_days", 0)), _and(_c("last_seen", "within_last_days", 36600)),
    _and(_c("birthday", "within_last_days", 36600)), _and(_c("consent", "is_true", negate=True)),
    _and(*[_c("consent", "is_true") for _ in range(499)]),
]  # fmt: skip

# Texts that are special in a regular expression, a jsonpath string or SQL: matched literally ("a.i" would match
# "alice" as a regex, ".*" everyone).
EMAILS = ["alice@example.com", "bob@example.com", "carol@example.com", "dave@example.com"]
MATCHES = {"contains": lambda v, t: t in v, "starts_with": str.startswith, "ends_with": str.endswith,
           "equals": lambda v, t: v == t, "not_equals": lambda v, t: v != t}  # fmt: skip
SPECIAL_TEXTS = [
    ".*", ".", "a.i", "\\", "\\\\", "\\d", "(", ")", "[", "]", "[a-z]", "{", "}", "a{1,", "a{1000}", "^", "$", "^a",
    "e$", "|", "a|b", "?", "+", "*", "***=", "***:a", "(?i)A", "%", "_", "'", "''", '"', '\\"', "\n", "\t", "\r",
    "\x01", "\x7f", "\u2028", "\ufeff", "😀", "$.x", "@", "@ == 1", ")) || true", "' OR 1=1 --", "${x}", "\\u0000",
    "(" * 1000, "\\" * 1000, "[" * 500 + "]" * 500, "é", "\u0301", "ǅ",
]  # fmt: skip


def test_hostile_condition_trees_are_400_naming_the_conditions(world):
    owner, segment = world["owner"], world["segment"]
    before = _segment_state(segment)
    cases = []
    for tree in BAD_TREES:
        body = {"conditions": tree}
        cases += [("post", "/api/segments/preview_count", body, ("conditions",)),
                  ("post", "/api/segments/", {"name": "Fuzz", **body}, ("conditions",)),
                  ("patch", f"/api/segments/{segment}", body, ("conditions",)),
                  ("put", f"/api/segments/{segment}", {"name": "Exclusion", **body}, ("conditions",))]  # fmt: skip
    for number in [*NUMBERS, "NaN", "Infinity", "-Infinity"]:
        text = json.dumps({"conditions": _and(_c("age", "gte", "PLACEHOLDER"))}).replace('"PLACEHOLDER"', number)
        cases += [("post", "/api/segments/preview_count", None, ("conditions", "JSON parse error"), text)]
    for raw in [*BODIES, "[" * 100_000, '{"conditions": ' + "[" * 100_000 + "}"]:
        cases += [("post", "/api/segments/preview_count", None, (), raw), ("post", "/api/segments/", None, (), raw)]
    problems = _run(owner, cases, refuse=True)
    assert not problems, "\n".join(problems)
    assert _segment_state(segment) == before
    assert list(Segment.objects.filter(name="Fuzz")) == []


def test_deeply_nested_json_is_a_400_not_a_recursion_error(world):
    """Nesting below the parser's recursion limit but far beyond the tree's MAX_DEPTH (serialisers and the
    validator walk the tree too)."""
    cases = []
    for depth in (100, 250, 300, 330, 400, 450, 480, 490, 495, 499, 600, 1000):
        text = f'{{"conditions": {_nested_text(depth)}}}'
        cases += [("post", "/api/segments/preview_count", None, ("conditions", "JSON parse error"), text)]
        cases += [("patch", f"/api/segments/{world['segment']}", None, ("conditions", "JSON parse error"), text)]
        nested = "[" * (2 * depth) + "]" * (2 * depth)
        cases += [("post", "/api/segments/", None, (), f'{{"name": "x", "conditions": {nested}}}')]
        cases += [("post", "/api/segments/", None, ("tags", "JSON parse error"), f'{{"name": "x", "tags": {nested}}}')]
        cases += [("post", "/api/segment_export_destinations/", None, ("config", "JSON parse error"),
                   f'{{"name": "x", "kind": "csv", "config": {_nested_text(depth)}}}')]  # fmt: skip
    problems = _run(world["admin"], cases, refuse=True)
    assert not problems, "\n".join(problems)


def test_odd_but_valid_condition_trees_never_fail(world):
    owner, segment = world["owner"], world["segment"]
    cases = []
    for tree in ODD_TREES:
        cases += [("post", "/api/segments/preview_count", {"conditions": tree}, ("conditions",)),
                  ("patch", f"/api/segments/{segment}", {"conditions": tree}, ("conditions",)),
                  ("get", f"/api/segments/{segment}/customers_count", None, ()),
                  ("get", f"/api/segments/{segment}/customers", None, ()),
                  ("get", f"/api/segments/{segment}/insights?attributes=gender,age", None, ())]  # fmt: skip
    problems = _run(owner, cases)
    for tree in ODD_TREES[1:]:  # null: a 400 for a preview (nothing to count), the empty tree for a segment
        response = owner.post("/api/segments/preview_count", {"conditions": tree}, format="json")
        if response.status_code != 200:
            problems.append(f"valid tree {json.dumps(tree)[:120]} refused: {response.content[:200]!r}")
    assert not problems, "\n".join(problems)


def test_regex_and_jsonpath_special_texts_match_literally(world):
    owner = world["owner"]
    problems = []
    for text in SPECIAL_TEXTS:
        for operator in ("contains", "starts_with", "ends_with", "equals", "not_equals"):
            tree = _and(_c("ps_email_address", operator, text))
            response = owner.post("/api/segments/preview_count", {"conditions": tree}, format="json")
            expected = sum(MATCHES[operator](email, text) for email in EMAILS)
            why = _problem(response, ("conditions",))
            if why is None and (response.status_code != 200 or response.json()["customers_count"] != expected):
                why = f"{response.status_code} {response.content[:120]!r}, expected {expected} customers"
            if why:
                problems.append(f"{operator} {text[:30]!r}: {why}")
        response = owner.post("/api/segments/preview_count",
                              {"conditions": _and(_c("gender", "in", [text, "male"]))}, format="json")  # fmt: skip
        if response.status_code != 200 or response.json()["customers_count"] != 1:
            problems.append(f"in [{text[:30]!r}, 'male']: {response.status_code} {response.content[:120]!r}")
    # Sanity: the literal texts that are there are found.
    for operator, text, count in [("contains", ".", 4), ("contains", "@example.com", 4), ("starts_with", "a", 1),
                                  ("ends_with", ".com", 4), ("contains", "lic", 1)]:  # fmt: skip
        response = owner.post("/api/segments/preview_count",
                              {"conditions": _and(_c("ps_email_address", operator, text))}, format="json")  # fmt: skip
        if response.json().get("customers_count") != count:
            problems.append(f"{operator} {text!r}: {response.content[:120]!r}, expected {count}")
    assert not problems, "\n".join(problems)


def test_a_reversed_datetime_range_is_refused_and_an_early_one_accepted(world):
    owner = world["owner"]
    early = _and(_c("last_seen", "between", ["0999-01-01T00:00:00Z", "2000-01-01T00:00:00Z"]))
    response = owner.post("/api/segments/preview_count", {"conditions": early}, format="json")
    assert response.status_code == 200, response.json()
    reversed_ = _and(_c("last_seen", "between", ["2000-01-01T00:00:00Z", "0999-01-01T00:00:00Z"]))
    response = owner.post("/api/segments/preview_count", {"conditions": reversed_}, format="json")
    assert response.status_code == 400 and "low <= high" in response.json()["message"]


# --- segment fields --------------------------------------------------------------------------------------------

SEGMENT_BAD = [
    ("name", LONG), ("name", ""), ("name", "   "), ("name", None), ("name", {}), ("name", []), ("name", ["x"]),
    ("name", True), ("name", "a\x00b"), ("name", "x" * 201), ("description", "a\x00"),
    ("description", {}), ("description", []), ("tags", "x"), ("tags", {}), ("tags", {"a": 1}),
    ("tags", [None]), ("tags", [""]), ("tags", [" "]), ("tags", ["a" * 65]), ("tags", [LONG]),
    ("tags", ["a\x00"]), ("tags", [[]]), ("tags", [{}]), ("tags", [f"t{i}" for i in range(51)]), ("tags", 1),
    ("tags", [True]),
    ("conditions", []), ("conditions", "x"),
]  # fmt: skip
SEGMENT_SURROGATE_FIELDS = ("name", "description", "tags")


def _surrogate_cases(method: str, url: str, base: dict, fields: tuple[str, ...], lists: tuple[str, ...] = ()):
    cases = []
    for field in fields:
        if field in lists:
            text = json.dumps({**base, field: ["PLACEHOLDER"]}).replace("PLACEHOLDER", f"a{SURROGATE}b")
        else:
            text = _surrogate_text(base, field)
        cases.append((method, url, None, (field,), text))
    return cases


def test_hostile_segment_payloads_are_400_naming_the_field(world):
    owner, segment = world["owner"], world["segment"]
    before = _segment_state(segment)
    base = {"name": "Fuzz", "conditions": EXCLUSION_TREE}
    url = f"/api/segments/{segment}"
    cases = [("post", "/api/segments/", {**base, field: value}, (field,)) for field, value in SEGMENT_BAD]
    cases += [("patch", url, {field: value}, (field,)) for field, value in SEGMENT_BAD]
    cases += [("put", url, {**base, field: value}, (field,)) for field, value in SEGMENT_BAD]
    for method, target, body in (("post", "/api/segments/", base), ("patch", url, {}), ("put", url, base)):
        cases += _surrogate_cases(method, target, body, SEGMENT_SURROGATE_FIELDS, lists=("tags",))
    cases += [("patch", url, None, (), raw) for raw in BODIES]
    problems = _run(owner, cases, refuse=True)
    assert not problems, "\n".join(problems)
    assert _segment_state(segment) == before
    assert list(Segment.objects.filter(name="Fuzz")) == []


def test_read_only_and_unknown_segment_fields_are_ignored_but_an_owner_change_is_refused(world):
    owner, segment = world["owner"], world["segment"]
    for field, value in [("id", HUGE), ("can_edit", {}), ("trashed_at", "x"), ("created", LONG), ("nope", 1),
                         ("id", -1)]:  # fmt: skip
        response = owner.patch(f"/api/segments/{segment}", {field: value}, format="json")
        assert response.status_code == 200, (field, response.content[:200])
    # An owner change is refused rather than ignored (a client moving a segment to a colleague would be told 200).
    for value in (HUGE, "x", {"id": "x"}):
        response = owner.patch(f"/api/segments/{segment}", {"owner": value}, format="json")
        assert response.status_code == 400 and response.json()["message"].startswith("owner: "), value
    assert Segment.objects.get(pk=segment).owner == world["cast"]["owner"]


# --- ids in the path and query parameters ----------------------------------------------------------------------

SEGMENT_SUBPATHS = [("get", ""), ("get", "/customers_count"), ("get", "/customers"), ("get", "/insights"),
                    ("get", "/attribute_value_counts?attribute=age"), ("post", "/duplicate"),
                    ("post", "/size_snapshot"), ("patch", ""), ("delete", ""), ("get", "/notes"),
                    ("get", "/acl"), ("post", "/notes"), ("post", "/acl")]  # fmt: skip


def test_unknown_or_malformed_ids_in_the_path_are_404(world):
    segment = world["segment"]
    cases = [(m, f"/api/segments/{pk}{sub}", {} if m != "get" else None, ()) for pk in BAD_IDS for m, sub in
             SEGMENT_SUBPATHS]  # fmt: skip
    cases += [(m, f"/api/trash/segments/{pk}{sub}", None, ()) for pk in BAD_IDS
              for m, sub in (("get", ""), ("delete", ""), ("post", "/restore"))]  # fmt: skip
    for kind in ("notes", "acl"):
        cases += [(m, f"/api/segments/{segment}/{kind}/{pk}", {} if m != "get" else None, ()) for pk in BAD_IDS
                  for m in ("get", "patch", "put", "delete")]  # fmt: skip
    cases += [(m, f"/api/tags/{pk}", {} if m != "get" else None, ()) for pk in BAD_IDS
              for m in ("get", "patch", "delete")]  # fmt: skip
    for base in ("segment_export_destinations", "segment_exports", "segment_export_schedules"):
        cases += [(m, f"/api/{base}/{pk}", {} if m != "get" else None, ()) for pk in BAD_IDS
                  for m in ("get", "patch", "delete")]  # fmt: skip
    cases += [("get", f"/api/segment_exports/{pk}/download", None, ()) for pk in BAD_IDS]
    problems = _run(world["admin"], cases)
    problems += [p for p in _run(world["owner"], cases) if "segment_export_destinations" not in p]
    named = [pk for pk in BAD_IDS if "%00" not in pk]  # a NUL in the path is a 400 (by the middleware)
    statuses = {world["admin"].get(f"/api/segments/{pk}").status_code for pk in named}
    statuses |= {world["admin"].get(f"/api/segments/{segment}/notes/{pk}").status_code for pk in named}
    if statuses != {404}:
        problems.append(f"unknown ids answered {statuses}, expected 404")
    assert not problems, "\n".join(problems)


def test_query_parameter_garbage_is_4xx_naming_the_parameter(world):
    segment = world["segment"]
    lists = ["/api/segments/", "/api/trash/segments/", "/api/tags/", f"/api/segments/{segment}/customers",
             f"/api/segments/{segment}/notes", f"/api/segments/{segment}/acl", "/api/segment_export_destinations/",
             "/api/segment_exports/", "/api/segment_export_schedules/"]  # fmt: skip
    cases = [("get", _with(url, q), None, (q.split("=")[0],)) for url in lists for q in PAGINATION]
    filters = [
        "q=" + LONG, "q=a%00b", "q=%ff", "tag=" + LONG, "tag=,,,", "tag=%00", "owner=abc", f"owner={HUGE}",
        "owner=-1", "owner=nan", "owner=inf", "owner=1e400", "owner=" + "9" * 5000, "owner=%00", "mine=maybe",
        "mine=" + LONG, "mine=%00",
    ]  # fmt: skip
    cases += [("get", _with(url, q), None, (q.split("=")[0],)) for url in lists[:3] for q in filters]
    export_filters = [
        "segment=abc", f"segment={HUGE}", "segment=-1", "segment=%00", "segment=1.5", "destination=abc",
        f"destination={BIGINT_PAST}", "status=nope", "status=" + LONG, "destination_kind=nope", "kind=nope",
        "kind=%00", "segment=" + "9" * 5000,
    ]  # fmt: skip
    cases += [("get", _with(url, q), None, (q.split("=")[0],)) for url in lists[6:] for q in export_filters]
    insights = [
        "limit=abc", "limit=-1", f"limit={HUGE}", "limit=101", "days=abc", "days=-1", f"days={HUGE}", "days=3661",
        "days=1.5", "attributes=nope", "attributes=" + LONG, "attributes=" + ",".join(["age"] * 11),
        "attributes=a%00", "attributes=%ff", "attributes=,,,", "limit=%00", "days=%00",
    ]  # fmt: skip
    cases += [("get", f"/api/segments/{segment}/insights?{q}", None, (q.split("=")[0],)) for q in insights]
    value_counts = [
        "", "attribute=", "attribute=nope", "attribute=" + LONG, "attribute=a%00", "attribute=%ff",
        "attribute=age&limit=0", "attribute=age&limit=-1", f"attribute=age&limit={HUGE}", "attribute=age&limit=abc",
        "attribute=age&limit=101", "attribute=age&attribute=", "limit=5",
    ]  # fmt: skip
    cases += [("get", f"/api/segments/{segment}/attribute_value_counts?{q}", None,
               ("attribute",) if "limit" not in q or "attribute=age" not in q else ("limit",))
              for q in value_counts]  # fmt: skip
    problems = _run(world["admin"], cases)
    assert not problems, "\n".join(problems)


# --- notes, ACL grants, duplicate, tags ------------------------------------------------------------------------

NOTE_BAD = [("text", LONG), ("text", ""), ("text", "  "), ("text", None), ("text", {}), ("text", []),
            ("text", "a\x00"), ("text", "x" * 10_001)]  # fmt: skip


def test_hostile_notes_are_400_naming_the_text(world):
    owner, segment, note = world["owner"], world["segment"], world["note"]
    before = _segment_state(segment)
    url = f"/api/segments/{segment}/notes"
    cases = [("post", f"{url}/", {f: v}, (f,)) for f, v in NOTE_BAD]
    cases += [(m, f"{url}/{note}", {f: v}, (f,)) for f, v in NOTE_BAD for m in ("patch", "put")]
    cases += _surrogate_cases("post", f"{url}/", {}, ("text",))
    cases += _surrogate_cases("patch", f"{url}/{note}", {}, ("text",))
    cases += [("post", f"{url}/", None, (), raw) for raw in BODIES]
    problems = _run(owner, cases, refuse=True)
    # Notes of a segment one may not see: 404; one may only view: 403.
    _denied(problems, world["outsider"], "post", f"/api/segments/{world['private']}/notes/", {"text": "x"})
    _denied(problems, world["outsider"], "get", f"/api/segments/{world['private']}/notes/{note}")
    _denied(problems, world["viewer"], "post", f"{url}/", {"text": "x"}, expected=(403,))
    assert not problems, "\n".join(problems)
    assert _segment_state(segment) == before


def test_hostile_grants_are_400_naming_the_field(world):
    owner, segment, grant = world["owner"], world["segment"], world["grant"]
    cast = world["cast"]
    before = _segment_state(segment)
    url = f"/api/segments/{segment}/acl"
    bad = [("user", value) for value in BAD_ID_VALUES]
    bad += [("role", value) for value in BAD_ID_VALUES if value not in ("", None)]  # null / "": no role
    bad += [("permission", value) for value in ("nope", None, {}, [], 1, LONG, "a\x00", "VIEW", "")]
    cases = [("post", f"{url}/", {"user": cast["editor"].pk, "permission": "view", f: v}, (f, "user"))
             for f, v in bad]  # fmt: skip
    cases += [("post", f"{url}/", {"permission": "view"}, ("user",)),
              ("post", f"{url}/", {"user": cast["owner"].pk, "permission": "edit"}, ("user",)),
              ("post", f"{url}/", {"user": cast["editor"].pk, "role": cast["editor"].role_id}, ("user",)),
              ("post", f"{url}/", {"user": None, "role": None}, ("user",))]  # fmt: skip
    cases += [(m, f"{url}/{grant}", {f: v}, (f, "user")) for f, v in bad for m in ("patch", "put")]
    cases += [("patch", f"{url}/{grant}", {"user": cast["owner"].pk}, ("user",)),
              ("patch", f"{url}/{grant}", {"user": None, "role": None}, ("user",))]  # fmt: skip
    cases += _surrogate_cases("post", f"{url}/", {"permission": "view"}, ("user", "role", "permission"))
    cases += _surrogate_cases("patch", f"{url}/{grant}", {}, ("user", "role", "permission"))
    for field in ("user", "role"):
        cases += [("post", f"{url}/", None, (field,), _with_number({"permission": "view"}, field, n))
                  for n in ID_NUMBERS]  # fmt: skip
    cases += [("post", f"{url}/", None, (), raw) for raw in BODIES]
    problems = _run(owner, cases, refuse=True)
    # Grants of a segment one may not see: 404; of one one may only view: 403.
    _denied(problems, world["outsider"], "post", f"/api/segments/{world['private']}/acl/", {"user": cast["editor"].pk})
    _denied(problems, world["viewer"], "post", f"{url}/", {"user": cast["editor"].pk, "permission": "edit"},
            expected=(403,))  # fmt: skip
    assert not problems, "\n".join(problems)
    assert _segment_state(segment) == before


def test_hostile_duplicates_and_tags_are_400_naming_the_field(world):
    owner, segment, tag = world["owner"], world["segment"], world["tag"]
    count = Segment.objects.count()
    duplicate = f"/api/segments/{segment}/duplicate"
    cases = [("post", duplicate, {"name": value}, ("name",))
             for value in (LONG, "x" * 201, "", " ", None, {}, [], "a\x00")]  # fmt: skip
    cases += _surrogate_cases("post", duplicate, {}, ("name",))
    cases += [("post", duplicate, None, (), raw) for raw in BODIES]
    tag_bad = [("name", v) for v in (LONG, "x" * 65, "", " ", None, {}, [], "a\x00", "campaign", "CAMPAIGN")]
    tag_bad += [("color", v) for v in ("red", "#zzzzzz", "#12345", "#1234567", {}, [], 1, LONG, "#\x00" * 6,
                                       "#-12345", "# 12345", "#0x1234", "#+12345", "#１２３４５６")]  # fmt: skip
    cases += [("post", "/api/tags/", {"name": "Fresh", **{f: v}}, (f,)) for f, v in tag_bad]
    cases += [("patch", f"/api/tags/{tag}", {f: v}, (f,)) for f, v in tag_bad if v not in ("campaign", "CAMPAIGN")]
    cases += _surrogate_cases("post", "/api/tags/", {"name": "Fresh"}, ("name", "color"))
    cases += _surrogate_cases("patch", f"/api/tags/{tag}", {}, ("name", "color"))
    cases += [("post", "/api/tags/", None, (), raw) for raw in BODIES]
    problems = _run(owner, cases, refuse=True)
    # Duplicating a segment one may not see: 404.
    _denied(problems, world["outsider"], "post", f"/api/segments/{world['private']}/duplicate", {})
    assert not problems, "\n".join(problems)
    assert Segment.objects.count() == count
    assert list(Tag.objects.values_list("name", "color")) == [("campaign", "")]


def test_segments_one_may_not_see_or_edit_are_404_or_403(world):
    private, outsider, viewer, segment = world["private"], world["outsider"], world["viewer"], world["segment"]
    problems = []
    body = {"name": "x", "text": "x", "user": world["cast"]["editor"].pk, "permission": "view"}
    for method, sub in SEGMENT_SUBPATHS:
        _denied(problems, outsider, method, f"/api/segments/{private}{sub}", body if method != "get" else None)
    for method in ("patch", "put", "delete"):  # (a size snapshot needs view access only)
        _denied(problems, viewer, method, f"/api/segments/{segment}", {"name": "x"}, expected=(403,))
    for method, sub in (("get", ""), ("delete", ""), ("post", "/restore")):
        _denied(problems, outsider, method, f"/api/trash/segments/{world['trashed']}{sub}")
    assert not problems, "\n".join(problems)


# --- destinations, exports, schedules --------------------------------------------------------------------------

DESTINATION = {"name": "Fuzz destination", "kind": "csv", "config": {}, "mandatory_attributes": []}
WEBHOOK = {"url": "https://example.com/hook", "secret": "s3cret-value"}
DESTINATION_BAD = [
    ("name", LONG), ("name", "x" * 201), ("name", ""), ("name", " "), ("name", None), ("name", {}), ("name", []),
    ("name", "a\x00"), ("kind", "nope"), ("kind", None), ("kind", {}), ("kind", []),
    ("kind", LONG), ("kind", "CSV"), ("kind", "a\x00"), ("config", []), ("config", "x"), ("config", 1),
    ("config", None), ("config", True), ("config", {"nope": 1}), ("config", {"file_name": {}}),
    ("config", {"file_name": LONG}), ("config", {"file_name": "../x.csv"}), ("config", {"file_name": "x.txt"}),
    ("config", {"file_name": "a\x00.csv"}), ("config", {"file_name": ["x.csv"]}), ("config", {"delimiter": "x"}),
    ("config", {"delimiter": {}}), ("config", {"delimiter": LONG}), ("config", {"attributes": [1]}),
    ("config", {"attributes": {}}), ("config", {"attributes": [""]}), ("config", {"attributes": [None]}),
    ("config", {"attributes": 1}), ("config", {LONG: 1}), ("config", {"a\x00": 1}), ("config", {"": 1}),
    ("mandatory_attributes", "x"), ("mandatory_attributes", {}), ("mandatory_attributes", [1]),
    ("mandatory_attributes", [None]), ("mandatory_attributes", ["nope"]), ("mandatory_attributes", [LONG]),
    ("mandatory_attributes", ["a\x00"]), ("mandatory_attributes", [[]]), ("mandatory_attributes", [""]),
    ("mandatory_attributes", 1),
]  # fmt: skip
# Per kind: configs of the wrong shape for that loader.
KIND_CONFIGS_BAD = [
    ("webhook", {}), ("webhook", {"url": "ftp://x", "secret": "s"}), ("webhook", {"url": "http://", "secret": "s"}),
    ("webhook", {"url": "https://" + "a" * 100_000, "secret": "s"}), ("webhook", {**WEBHOOK, "secret": {}}),
    ("webhook", {**WEBHOOK, "secret": LONG}), ("webhook", {**WEBHOOK, "batch_size": "abc"}),
    ("webhook", {**WEBHOOK, "batch_size": HUGE}), ("webhook", {**WEBHOOK, "batch_size": -1}),
    ("webhook", {**WEBHOOK, "batch_size": 1.5}), ("webhook", {**WEBHOOK, "batch_size": True}),
    ("webhook", {**WEBHOOK, "batch_size": "9" * 5000}), ("webhook", {**WEBHOOK, "batch_size": {}}),
    ("webhook", {**WEBHOOK, "batch_size": 0}), ("webhook", {**WEBHOOK, "url": "https://x y"}),
    ("webhook", {**WEBHOOK, "url": ["https://x"]}), ("webhook", {**WEBHOOK, "attributes": [1]}),
    ("customerio", {"site_id": "s", "api_key": "k", "api_base_url": "https://" + "a" * 30_000 + " b"}),
    ("customerio", {"site_id": "s", "api_key": "k", "api_base_url": "https://" + "a" * 100_000 + "/ /"}),
    ("customerio", {"site_id": "s", "api_key": "k", "region": "MARS"}),
    ("customerio", {"site_id": "s", "api_key": "k", "one_attribute_per_segment": "maybe"}),
    ("customerio", {"site_id": LONG, "api_key": "k"}), ("customerio", {"site_id": 1, "api_key": "k"}),
    ("pinterest", {"access_token": "t", "ad_account_id": "1" * 19}),
    ("pinterest", {"access_token": "t", "ad_account_id": "12a"}),
    ("pinterest", {"access_token": "t", "ad_account_id": 123}),
    ("pinterest", {"access_token": "t", "ad_account_id": "1", "audience_id": "x", "audience_operation": "nope"}),
    ("pinterest", {"access_token": "t", "ad_account_id": "1", "hash_algorithm": "MD5"}),
    ("pinterest", {"access_token": "t", "ad_account_id": "1", "api_base_url": "https://" + "a" * 30_000 + " b"}),
    ("meta_capi", {"pixel_id": "1" * 100_000, "access_token": "t", "event_types": ["purchase"]}),
    ("meta_capi", {"pixel_id": "1", "access_token": "t", "event_types": "purchase", "event_names": {"a": 1}}),
    ("meta_capi", {"pixel_id": "1", "access_token": "t", "event_types": []}),
    ("meta_capi", {"pixel_id": "1", "access_token": "t", "event_types": ["a"], "currency": "EURO"}),
    ("meta_capi", {"pixel_id": "1", "access_token": "t", "event_types": ["a"], "api_version": "21"}),
    ("meta_capi", {"pixel_id": "1", "access_token": "t", "event_types": ["a"],
                   "api_base_url": "https://" + "a" * 30_000 + " b"}),
]  # fmt: skip


def test_hostile_destination_payloads_are_400_naming_the_field(world):
    admin, destination = world["admin"], world["destination"]
    before = list(ExportDestination.objects.values())
    url = f"/api/segment_export_destinations/{destination}"
    cases = [("post", "/api/segment_export_destinations/", {**DESTINATION, f: v}, (f,)) for f, v in DESTINATION_BAD]
    cases += [(m, url, {f: v}, (f,)) for f, v in DESTINATION_BAD if f != "kind" for m in ("patch",)]
    cases += [("put", url, {**DESTINATION, f: v}, (f,)) for f, v in DESTINATION_BAD if f != "kind"]
    cases += [("post", "/api/segment_export_destinations/",
               {**DESTINATION, "name": f"Fuzz {i}", "kind": kind, "config": config}, ("config",))
              for i, (kind, config) in enumerate(KIND_CONFIGS_BAD)]  # fmt: skip
    cases += _surrogate_cases("post", "/api/segment_export_destinations/", DESTINATION,
                              ("name", "kind", "mandatory_attributes"), lists=("mandatory_attributes",))  # fmt: skip
    cases += _surrogate_cases("patch", url, {}, ("name", "mandatory_attributes"), lists=("mandatory_attributes",))
    text = json.dumps({**DESTINATION, "config": {"file_name": "PLACEHOLDER"}}).replace("PLACEHOLDER", f"a{SURROGATE}")
    cases += [("post", "/api/segment_export_destinations/", None, ("config",), text)]
    text = json.dumps({"config": {"PLACEHOLDER": "x"}}).replace("PLACEHOLDER", f"a{SURROGATE}")
    cases += [("patch", url, None, ("config",), text)]
    cases += [(m, u, None, (), raw) for m, u in (("post", "/api/segment_export_destinations/"), ("patch", url))
              for raw in BODIES]  # fmt: skip
    problems = _run(admin, cases, refuse=True)
    assert not problems, "\n".join(problems)
    assert list(ExportDestination.objects.values()) == before


EXPORT_BAD = [("segment", v) for v in BAD_ID_VALUES] + [("destination", v) for v in BAD_ID_VALUES]


def test_hostile_export_requests_are_4xx_and_start_nothing(world):
    owner, segment, destination = world["owner"], world["segment"], world["destination"]
    count = SegmentExport.objects.count()
    base = {"segment": segment, "destination": destination}
    cases = [("post", "/api/segment_exports/", {**base, f: v}, (f,)) for f, v in EXPORT_BAD]
    cases += [("post", "/api/segment_exports/", None, (f,), _with_number(base, f, n))
              for f in ("segment", "destination") for n in ID_NUMBERS]  # fmt: skip
    cases += _surrogate_cases("post", "/api/segment_exports/", base, ("segment", "destination"))
    cases += [("post", "/api/segment_exports/", {**base, "segment": world["trashed"]}, ("segment",)),
              ("post", "/api/segment_exports/", {"segment": segment}, ("destination",)),
              ("post", "/api/segment_exports/", {"destination": destination}, ("segment",))]  # fmt: skip
    cases += [("post", "/api/segment_exports/", None, (), raw) for raw in BODIES]
    cases += [(m, f"/api/segment_exports/{world['export']}", {}, ()) for m in ("patch", "put", "delete")]
    problems = _run(owner, cases, refuse=True)
    # A segment the user may not see: 404, whoever asks and whatever the destination.
    for client in (world["outsider"], world["viewer"]):
        for body in ({"segment": world["private"], "destination": destination},
                     {"segment": world["private"], "destination": HUGE}):  # fmt: skip
            response = client.post("/api/segment_exports/", body, format="json")
            if response.status_code not in (403, 404):
                problems.append(f"export of private segment {body}: {response.status_code} {response.content[:99]!r}")
    for sub in ("", "/download"):
        _denied(problems, world["outsider"], "get", f"/api/segment_exports/{world['export']}{sub}", expected=(403, 404))
    assert not problems, "\n".join(problems)
    assert SegmentExport.objects.count() == count


SCHEDULE_BAD = [("frequency", v) for v in ("weekly", "* * * * *", "0 0 * * *", "", " ", None, {}, [], 1, LONG,
                                           "a\x00", "DAILY", "@daily", "1h", 3600, -1)]  # fmt: skip
SCHEDULE_BAD += [("enabled", v) for v in ("maybe", {}, [], LONG, 2, -1, "a\x00")]
SCHEDULE_BAD += [("segment", v) for v in BAD_ID_VALUES] + [("destination", v) for v in BAD_ID_VALUES]


def test_hostile_schedules_are_400_naming_the_field(world):
    owner, segment, destination = world["owner"], world["segment"], world["destination"]
    before = list(ExportSchedule.objects.values())
    base = {"segment": segment, "destination": destination, "frequency": "hourly", "enabled": True}
    cases = [("post", "/api/segment_export_schedules/", {**base, f: v}, (f,)) for f, v in SCHEDULE_BAD]
    cases += [("post", "/api/segment_export_schedules/", None, (f,), _with_number(base, f, n))
              for f in ("segment", "destination") for n in ID_NUMBERS]  # fmt: skip
    cases += _surrogate_cases("post", "/api/segment_export_schedules/", base, ("segment", "destination", "frequency"))
    cases += [("post", "/api/segment_export_schedules/", {**base, "segment": world["trashed"]}, ("segment",))]
    cases += [("post", "/api/segment_export_schedules/", None, (), raw) for raw in BODIES]
    cases += [(m, f"/api/segment_export_schedules/{world['schedule']}", base, ()) for m in ("patch", "put")]
    problems = _run(owner, cases)
    problems += [p for p in _run(owner, cases[:-2], refuse=True) if "accepted" in p and "trashed" not in p]
    for client in (world["outsider"], world["viewer"]):
        response = client.post("/api/segment_export_schedules/", {**base, "segment": world["private"]}, format="json")
        if response.status_code not in (403, 404):
            problems.append(f"schedule of a private segment: {response.status_code} {response.content[:120]!r}")
    _denied(problems, world["outsider"], "delete", f"/api/segment_export_schedules/{world['schedule']}",
            expected=(403, 404))  # fmt: skip
    assert not problems, "\n".join(problems)
    assert list(ExportSchedule.objects.values()) == before


# --- the Audience API (/wbs) -----------------------------------------------------------------------------------


@pytest.fixture
def web(world) -> Client:
    rate_limit_setting_forget()
    global_setting_set(key="public_rate_limit_per_minute", value=0, user=None)
    rate_limit_setting_forget()
    yield Client(REMOTE_ADDR=f"2001:db8::{secrets.token_hex(2)}:{secrets.token_hex(2)}")
    rate_limit_setting_forget()


def _wbs(**params: str) -> str:
    return "/wbs?" + "&".join(f"{key}={value}" for key, value in params.items())


def test_audience_api_with_hostile_parameters_is_4xx_naming_the_parameter(web, world):
    segment = world["segment"]
    ok = {"attribute": "ps_email_address", "value": quote("alice@example.com"), "segment": str(segment)}
    bad_values = {
        "attribute": ["", "%20", "nope", LONG, "x" * 65, "a%00", "%ff", "%ED%A0%80", "AGE", "%2e%2e", "age%0a"],
        "value": ["", "%20", "x" * 1001, LONG, "a%00", "%00"],
        "segment": ["", "%20", "abc", "-1", "0", "1.5", "1e3", str(HUGE), "9" * 19, "9" * 18, "%C2%B2", "%D9%A3",
                    "1,2", "%00", "1%00", LONG, str(world["trashed"]), str(world["private"] + 1000), "%2B1", "0x1"],
    }  # fmt: skip
    cases = [("get", _wbs(**{**ok, name: value}), None, (name,)) for name, values in bad_values.items()
             for value in values]  # fmt: skip
    cases += [("get", _wbs(**{k: v for k, v in ok.items() if k != name}), None, (name,)) for name in ok]
    typed = [("age", v) for v in ("abc", "9" * 5000, "1.5", "1e3", "%C2%B2", "nan", "inf", "true", "")]
    typed += [("total_revenue", v) for v in ("abc", "nan", "inf", "-inf", "1e400", "9" * 5000 + ".0", "1,5")]
    typed += [("consent", v) for v in ("maybe", "2", LONG[:500], "tru", "%00")]
    typed += [("birthday", v) for v in ("0000-01-01", "2025-02-30", "99999-01-01", "abc", "2025-01-01T00:00:00Z")]
    typed += [("last_seen", v) for v in ("0001-01-01T00:00:00%2B14:00", "9999-12-31T23:59:59-14:00", "abc",
                                         "2025-01-01T25:00", "2025-01-01T00:00:00%2B25:00", "1e10")]  # fmt: skip
    # (Lookups are by stitching identifiers only: these attributes are refused, naming them, unless the value is
    # refused first: empty, too long, a NUL.)
    cases += [("get", _wbs(attribute=a, value=v, segment=str(segment)), None, (f"attribute {a!r}", "value"))
              for a, v in typed]  # fmt: skip
    problems = _run(web, cases, refuse=True)
    assert not problems, "\n".join(problems)


def test_audience_api_odd_but_valid_requests_never_fail(web, world):
    segment = world["segment"]
    queries = [
        _wbs(attribute="ps_email_address", value="ALICE%40example.com", segment=str(segment)),
        _wbs(attribute="ps_email_address", value="%F0%9F%98%80%40x.com", segment=str(segment)),
        _wbs(attribute="ps_email_address", value="%ED%A0%80", segment=str(segment)),
        _wbs(attribute="ps_email_address", value="%ff%fe", segment=str(segment)),
        _wbs(attribute="ps_email_address", value="x" * 1000, segment=str(segment)),
        _wbs(attribute="ps_email_address", value="a%40" + "x" * 990, segment=str(segment)),
        _wbs(attribute="ps_email_address", value="a%40b%40c", segment=str(segment)),
        _wbs(attribute="ps_email_address", value="%40", segment=str(segment)),
        _wbs(attribute="ps_email_address", value="a%40xn--", segment=str(segment)),
        _wbs(attribute="ps_email_address", value="a%40%E4%BE%8B%E3%81%88.jp", segment=str(segment)),
        _wbs(attribute="ps_email_address", value="a%40" + "x" * 64 + ".com", segment=str(segment)),
        _wbs(attribute="gender", value="%27%20OR%201%3D1%20--", segment=str(segment)),
        _wbs(attribute="gender", value=quote('{"a": 1}'), segment=str(segment)),
        _wbs(attribute="gender", value="%5C", segment=str(segment)),
        _wbs(attribute="age", value="9" * 4000, segment=str(segment)),
        _wbs(attribute="age", value="-" + "9" * 4000, segment=str(segment)),
        _wbs(attribute="age", value="1_000", segment=str(segment)),
        _wbs(attribute="age", value="%20%2018%20", segment=str(segment)),
        _wbs(attribute="total_revenue", value="1e308", segment=str(segment)),
        _wbs(attribute="total_revenue", value="1e-400", segment=str(segment)),
        _wbs(attribute="total_revenue", value="-0", segment=str(segment)),
        _wbs(attribute="birthday", value="0001-01-01", segment=str(segment)),
        _wbs(attribute="birthday", value="2025-W01-1", segment=str(segment)),
        _wbs(attribute="last_seen", value="0001-01-01", segment=str(segment)),
        _wbs(attribute="last_seen", value="9999-12-31T23:59:59Z", segment=str(segment)),
        _wbs(attribute="consent", value="TRUE", segment=str(segment)),
        _wbs(attribute="consent", value="true", segment="%20" + str(segment) + "%20"),
        _wbs(attribute="consent", value="true", segment="0" * 17 + "1"),
        f"/wbs?attribute=consent&value=true&segment={segment}&write_key=garbage&token={LONG}&%00=1&=",
        "/wbs?attribute=consent&value=true&segment=abc&segment=" + str(segment),
        "/wbs?attribute=consent&value=true&" + "&".join(f"segment={i}" for i in range(900)) + f"&segment={segment}",
        "/wbs?attribute=consent&value=true&segment=" + str(segment) + "&" + "&".join(["x=1"] * 5000),
        "/wbs?" + "&" * 50_000,
        "/wbs?%ff%fe=%ff",
        "/wbs?attribute&value&segment",
        "/wbs?==&==&==",
        "/wbs",
    ]
    headers = [{}, {"HTTP_AUTHORIZATION": "Bearer garbage"}, {"HTTP_AUTHORIZATION": "Token " + LONG},
               {"HTTP_X_WRITE_KEY": "a\x00b"}, {"HTTP_ORIGIN": "https://evil.example"},
               {"HTTP_ORIGIN": LONG}, {"HTTP_X_REQUEST_ID": LONG}]  # fmt: skip
    web.raise_request_exception = False
    problems = []
    for query in queries:
        for extra in headers if query is queries[0] else [{}]:
            response = web.get(query, **extra)
            why = _problem(response)
            if why is not None:
                problems.append(f"GET {query[:100]} {str(extra)[:60]}: {why}")
    for method in ("post", "put", "patch", "delete"):
        response = getattr(web, method)(queries[0], "x" * 100_000, content_type="application/json")
        if response.status_code != 405 or _problem(response) is not None:
            problems.append(f"{method.upper()} /wbs: {response.status_code} {response.content[:120]!r}")
    assert not problems, "\n".join(problems)


def test_audience_api_for_a_segment_that_can_no_longer_be_evaluated_is_400(web, world):
    from cdp.models import Attribute

    Attribute.objects.filter(pk="gender").update(data_type="int")  # the tree's "gender equals male" no longer fits
    from segments.audience import audience_cache_forget

    audience_cache_forget()
    response = web.get(_wbs(attribute="ps_email_address", value="alice%40example.com", segment=str(world["segment"])))
    assert response.status_code == 400 and "cannot be evaluated" in response.json()["message"], response.content
    owner = world["owner"]
    for sub in ("/customers_count", "/customers", "/insights", "/attribute_value_counts?attribute=age"):
        response = owner.get(f"/api/segments/{world['segment']}{sub}")
        assert response.status_code == 400 and response.json()["message"].startswith("conditions"), (sub, response)
    response = owner.post("/api/segment_exports/", {"segment": world["segment"], "destination": world["destination"]},
                          format="json")  # fmt: skip
    assert response.status_code < 500, response.content[:200]
