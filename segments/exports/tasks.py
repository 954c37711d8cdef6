"""Segment export jobs (thin: they call services). Imported by segments/tasks.py so workers register them."""

from celery import shared_task

from segments.exports import services


@shared_task(name="segments.exports.tasks.segment_export_run", ignore_result=False)
def segment_export_run(export_id: int) -> dict | None:
    """Run or resume one export. Idempotent: a duplicated or redelivered message claims nothing."""
    export = services.export_run(export_id=export_id)
    if export is None:
        return None
    return {"id": export.pk, "status": export.status, "sent": export.sent, "failed": export.failed}


@shared_task(name="segments.exports.tasks.segment_exports_watchdog")
def segment_exports_watchdog() -> dict[str, int]:
    """Beat: resume or cleanly fail exports whose worker died; re-enqueue exports whose message was lost."""
    return services.exports_stale_recover()


@shared_task(name="segments.exports.tasks.segment_exports_scheduled")
def segment_exports_scheduled() -> int:
    """Beat: start the scheduled exports that are due."""
    return services.schedules_run_due()
