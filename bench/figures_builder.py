"""Benchmark figures of the admin segment builder: what the marketer waits for while editing.

`builder_count_ms`: the live count endpoint (the admin view: permission check, JSON body, validate, compile,
count, JSON response) on the seed's exclusion tree over the generated customers, against the selector
`segment_members_count` of the same saved segment — the overhead of counting an unsaved tree from the builder.
`builder_values_ms`: the value suggestions endpoint for one attribute (gender; above 200k customers it counts a
block sample of ~100k), against the exact top-values SQL over every customer run by hand. Both on the data of
bench/figures_segments.py, in interleaved rounds (medians).
"""

from __future__ import annotations

import json

from figures_segments import _interleaved_medians, entities_ensure, segment_ensure
from run import FIGURES, Bench, Figure

from segments.conditions import EXCLUSION_EXAMPLE as EXCLUSION_TREE


def _admin_and_request_user():
    from django.contrib import admin

    from cdp.models import User
    from segments.models import Segment

    user = User.objects.filter(username="bench-builder").first()
    if user is None:
        user = User.objects.create(username="bench-builder", is_staff=True, is_superuser=True)
    return admin.site._registry[Segment], user


def figure_builder_count_ms(bench: Bench) -> Figure:
    """The builder's live count of an unsaved tree vs the selector's count of the same saved segment."""
    from django.test import RequestFactory

    from segments.selectors import segment_members_count

    size = bench.size(1_000_000)
    entities_ensure(bench, size)
    segment = segment_ensure()
    model_admin, user = _admin_and_request_user()
    body = json.dumps({"conditions": EXCLUSION_TREE})

    def endpoint():
        request = RequestFactory().post("/admin/segments/segment/builder/count/", body, content_type="application/json")
        request.user = user
        response = model_admin.builder_count_view(request)
        return json.loads(response.content)["customers_count"]

    (selector_ms, expected), (value, count) = _interleaved_medians(
        [lambda: segment_members_count(segment=segment), endpoint], rounds=7
    )
    if count != expected:
        raise RuntimeError(f"builder count {count} differs from the segment's {expected}")
    print(f"  builder endpoint: {value:.0f} ms, selector: {selector_ms:.0f} ms ({count:,} customers)", flush=True)
    note = "baseline: segment_members_count of the same saved segment"
    return Figure("builder_count_ms", value, "ms", selector_ms, value / selector_ms, size, note)


FIGURES.append(figure_builder_count_ms)


def figure_builder_values_ms(bench: Bench) -> Figure:
    """Value suggestions (top values of gender) through the admin endpoint vs the top-values SQL by hand."""
    from django.db import connection
    from django.test import RequestFactory

    size = bench.size(1_000_000)
    entities_ensure(bench, size)
    model_admin, user = _admin_and_request_user()

    from segments.builder import value_suggestions_forget

    def endpoint():
        value_suggestions_forget()  # measure the scan, not the per-process minute cache
        request = RequestFactory().get("/admin/segments/segment/builder/values/", {"attribute": "gender"})
        request.user = user
        return [row["value"] for row in json.loads(model_admin.builder_values_view(request).content)["values"]]

    def by_hand():
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT v #>> '{}', count(*) AS n FROM customer_entities, "
                "jsonb_array_elements(attributes -> 'gender') v GROUP BY v ORDER BY n DESC, v LIMIT 200"
            )
            rows = cursor.fetchall()
            cursor.execute("SELECT count(*) FROM customer_entities WHERE attributes ? 'gender'")
            cursor.fetchone()
        return [value for value, _ in rows]

    (baseline, expected), (value, values) = _interleaved_medians([by_hand, endpoint], rounds=5)
    if set(values[:2]) != set(expected[:2]):
        raise RuntimeError(f"suggestions {values} differ from the SQL's {expected}")
    print(f"  suggestions: {value:.0f} ms, SQL by hand: {baseline:.0f} ms", flush=True)
    note = "baseline: exact top values and count over every customer (hand-written SQL); the endpoint samples"
    return Figure("builder_values_ms", value, "ms", baseline, value / baseline, size, note)


FIGURES.append(figure_builder_values_ms)
