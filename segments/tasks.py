"""Segment background jobs (thin: they call services)."""

from celery import shared_task

from segments.services import segments_size_record_all


@shared_task(name="segments.tasks.segments_size_snapshot")
def segments_size_snapshot() -> dict[str, int]:
    """Record today's size of every live segment (idempotent: one snapshot per segment and day)."""
    recorded, failed = segments_size_record_all()
    return {"recorded": recorded, "failed": failed}


from segments.exports.tasks import *  # noqa: E402, F401, F403  (segment export jobs)
