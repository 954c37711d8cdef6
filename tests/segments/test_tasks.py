"""The daily size snapshot task: through a real Celery worker, idempotent per day, robust to broken segments."""

import pytest

from cdp.models import Attribute
from segments.models import SegmentSizeSnapshot
from segments.services import segment_create, segments_size_record_all
from segments.tasks import segments_size_snapshot
from tests.segments.conftest import EXCLUSION_TREE


@pytest.mark.django_db
def test_snapshots_are_one_per_segment_and_day_and_a_broken_segment_is_skipped(exclusion_segment, cast):
    broken = segment_create(owner=cast["owner"], name="Broken", conditions=EXCLUSION_TREE)
    assert segments_size_record_all() == (2, 0)
    assert segments_size_record_all() == (2, 0)
    assert SegmentSizeSnapshot.objects.count() == 2
    assert SegmentSizeSnapshot.objects.get(segment=exclusion_segment).size == 2
    Attribute.objects.filter(pk="gender").delete()  # both trees name it now-deleted
    assert segments_size_record_all() == (0, 2)
    assert broken.size_snapshots.count() == 1


@pytest.mark.worker
def test_the_beat_task_runs_on_a_real_worker(exclusion_segment, celery_worker_process):
    result = segments_size_snapshot.delay()
    assert celery_worker_process.result_wait(result, timeout=30) == {"recorded": 1, "failed": 0}
    assert SegmentSizeSnapshot.objects.get(segment=exclusion_segment).size == 2
