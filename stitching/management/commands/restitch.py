"""manage.py restitch [--source SLUG] [--entity ID]: rebuild identity stitching from scratch."""

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from cdp.models import CustomerEntity, CustomerEvent, DataSource
from stitching.selectors import entity_fate
from stitching.services import engine


class Command(BaseCommand):
    help = (
        "Re-stitch from scratch: every event (default), the components of one source's events (--source), or one "
        "customer's component (--entity). Gives the same partition of events into customers as incremental "
        "stitching."
    )

    def add_arguments(self, parser):
        parser.add_argument("--source", help="data source slug")
        parser.add_argument("--entity", help="customer entity id (32 hex characters)")
        parser.add_argument("--no-progress", action="store_true", help="no progress bar")

    def handle(self, *args, source=None, entity=None, no_progress=False, **options):
        if source and entity:
            raise CommandError("give --source or --entity, not both")
        data_source = None
        if source:
            data_source = DataSource.objects.filter(slug=source).first()
            if data_source is None:
                raise CommandError(f"no data source with slug {source!r}")
        if entity:
            entity = entity.strip().lower()  # ids are stored lower-case; the API takes any case too
            if not CustomerEntity.objects.filter(pk=entity).exists():
                raise CommandError(_entity_missing(entity))
        # What the bar counts: the source's events, or for a full rebuild every event but the system's (merges and
        # splits are not stitched); without it the bar of the longest run showed no total and no time left.
        if data_source is not None:
            total = CustomerEvent.objects.filter(source=data_source).count()
        else:
            total = CustomerEvent.objects.exclude(source__slug=engine.SYSTEM_SOURCE_SLUG).count()
        bar = tqdm(total=total, unit="events", disable=no_progress or entity is not None, file=self.stderr)
        try:
            report = engine.restitch(source=data_source, entity_id=entity, progress=bar.update)
        finally:
            bar.close()
        self.stdout.write(
            f"re-stitched: {report.events} events reassigned, {report.entities_created} customers created, "
            f"{report.entities_deleted} removed, {report.merges} merges, {report.splits} splits, "
            f"{report.refused} links refused"
        )


def _entity_missing(entity_id: str) -> str:
    """Why there is nothing to re-stitch for an id, naming the customer to re-stitch instead when the history knows
    one (an id kept from an export was merged into another customer since)."""
    fate = entity_fate(entity_id=entity_id)
    if fate is None:
        return f"no customer entity {entity_id!r}"
    if fate.merged_into is not None:
        also = f" (or {', '.join(fate.split_into)}, split off it since)" if fate.split_into else ""
        return (
            f"customer entity {entity_id!r} was merged into {fate.merged_into}: re-stitch --entity "
            f"{fate.merged_into}{also}"
        )
    return f"customer entity {entity_id!r} was erased"
