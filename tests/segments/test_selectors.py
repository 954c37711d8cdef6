"""Selectors other apps use: visibility (ACL), members SQL, count, batched ids."""

import pytest
from django.core.exceptions import PermissionDenied
from django.db import connection
from django.http import Http404

from segments.models import SegmentGrant
from segments.selectors import (
    segment_get_visible,
    segment_member_ids_iter,
    segment_members,
    segment_members_count,
    segment_members_sql,
    segments_using_attribute,
    segments_visible,
)
from segments.services import segment_create, segment_grant_set, segment_trash
from tests.segments.conftest import EXCLUSION_TREE

pytestmark = pytest.mark.django_db


def _pad(name: str) -> str:
    return name.ljust(32, "0")


def test_the_exclusion_segment_has_the_consenting_adult_non_male_non_buyers(exclusion_segment, customers):
    expected = {customers["alice"].pk, customers["carol"].pk}
    assert segment_members_count(segment=exclusion_segment) == 2
    sql, params = segment_members_sql(segment=exclusion_segment)
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        assert {row[0] for row in cursor.fetchall()} == expected
    assert {entity.pk for entity in segment_members(segment=exclusion_segment)} == expected


def test_member_ids_come_in_batches_in_id_order(exclusion_segment, customers):
    from cdp.models import CustomerEntity

    for n in range(7):
        CustomerEntity.objects.create(
            id=_pad(f"f{n}"), attributes={"consent": [True], "age": [20], "total_revenue": [0]}
        )
    batches = list(segment_member_ids_iter(segment=exclusion_segment, batch_size=4))
    assert [len(batch) for batch in batches] == [4, 4, 1]
    flat = [entity_id for batch in batches for entity_id in batch]
    assert flat == sorted(flat) and len(set(flat)) == 9


def test_visibility_matrix(exclusion_segment, cast, viewer_role):
    segment_grant_set(segment=exclusion_segment, user=cast["viewer"], permission=SegmentGrant.Permission.VIEW)
    segment_grant_set(segment=exclusion_segment, user=cast["editor"], permission=SegmentGrant.Permission.EDIT)
    segment_grant_set(segment=exclusion_segment, role=cast["role_member"].role, permission=SegmentGrant.Permission.VIEW)
    for name in ("owner", "viewer", "editor", "role_member", "admin"):
        assert list(segments_visible(user=cast[name])) == [exclusion_segment], name
        assert segment_get_visible(user=cast[name], segment_id=exclusion_segment.pk) == exclusion_segment
    assert list(segments_visible(user=cast["outsider"])) == []
    with pytest.raises(Http404):
        segment_get_visible(user=cast["outsider"], segment_id=exclusion_segment.pk)
    with pytest.raises(Http404):
        segment_get_visible(user=cast["owner"], segment_id="not-a-number")
    for name in ("owner", "editor", "admin"):
        assert segment_get_visible(user=cast[name], segment_id=exclusion_segment.pk, edit=True)
    for name in ("viewer", "role_member"):
        with pytest.raises(PermissionDenied):
            segment_get_visible(user=cast[name], segment_id=exclusion_segment.pk, edit=True)


def test_trashed_segments_leave_the_live_list(exclusion_segment, cast):
    segment_trash(segment=exclusion_segment)
    assert list(segments_visible(user=cast["owner"])) == []
    assert list(segments_visible(user=cast["owner"], trashed=True)) == [exclusion_segment]
    with pytest.raises(Http404):
        segment_get_visible(user=cast["owner"], segment_id=exclusion_segment.pk)


def test_segments_using_an_attribute_are_found_at_any_depth_and_narrowed_to_what_a_new_type_breaks(
    example_attributes,
):
    exclusion = segment_create(owner=None, name="Exclusion", conditions=EXCLUSION_TREE)
    deep = {"operator": "or", "children": [{"attribute": "age", "operator": "lt", "value": 18, "negate": True}]}
    minors = segment_create(owner=None, name="Minors", conditions={"operator": "and", "children": [deep]})
    segment_trash(segment=minors)
    # A value that happens to be the attribute's id is no reference to it.
    named_age = {"operator": "and", "children": [{"attribute": "gender", "operator": "in", "value": ["age"]}]}
    segment_create(owner=None, name="Gender age", conditions=named_age)

    assert segments_using_attribute(attribute_id="age") == [exclusion, minors]
    assert segments_using_attribute(attribute_id="age", data_type="float") == []
    assert segments_using_attribute(attribute_id="age", data_type="string") == [exclusion, minors]
    assert segments_using_attribute(attribute_id="birthday") == []
