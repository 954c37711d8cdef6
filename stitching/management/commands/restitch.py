"""manage.py restitch [--source SLUG] [--entity ID]: rebuild identity stitching from scratch."""

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from cdp.models import CustomerEntity, CustomerEvent, DataSource
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
        if entity and not CustomerEntity.objects.filter(pk=entity).exists():
            raise CommandError(f"no customer entity {entity!r}")
        total = None
        if data_source is not None:
            total = CustomerEvent.objects.filter(source=data_source).count()
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
