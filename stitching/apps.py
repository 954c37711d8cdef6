from django.apps import AppConfig


class StitchingConfig(AppConfig):
    name = "stitching"
    verbose_name = "Identity stitching"

    def ready(self) -> None:
        from cdp import hooks
        from stitching.tasks import stitch_pending_enqueue

        # New events are stitched within seconds: ingestion calls this after its transaction commits.
        hooks.on_events_ingested(stitch_pending_enqueue)
