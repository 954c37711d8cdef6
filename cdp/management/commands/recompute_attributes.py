"""manage.py recompute_attributes [--all | --entity ID ...]: compute customers' attribute values now."""

import time

from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from tqdm import tqdm

from cdp.models import CustomerEntity, StaleEntity
from cdp.services.attributes import attributes_recompute, entities_mark_stale


class Command(BaseCommand):
    help = (
        "Recompute customers' attribute values now, with a progress bar: the customers waiting for it (what new "
        "events, merges, splits and definition changes queued; the default), every customer (--all), or the given "
        "ones (--entity, repeatable). Celery workers doing the same meanwhile share the work."
    )

    def add_arguments(self, parser):
        parser.add_argument("--all", action="store_true", dest="everyone", help="every customer, not only the queue")
        parser.add_argument(
            "--entity", action="append", default=[], metavar="ID", help="customer entity id (32 hex characters)"
        )
        parser.add_argument("--no-progress", action="store_true", help="no progress bar")

    def handle(self, *args, everyone=False, entity=(), no_progress=False, **options):
        if everyone and entity:
            raise CommandError("give --all or --entity, not both")
        ids = sorted({value.strip().lower() for value in entity})
        if ids:
            known = set(CustomerEntity.objects.filter(pk__in=ids).values_list("pk", flat=True))
            unknown = [value for value in ids if value not in known]
            if unknown:
                raise CommandError(
                    f"no customer entity {unknown[0]!r}"
                    + (f" (and {len(unknown) - 1} more)" if len(unknown) > 1 else "")
                )
        if everyone:
            with transaction.atomic():
                # Not handed to a task: this command works the queue off itself, with its progress bar (in-process
                # tasks without a broker would do it all at commit; a broker that is down would fail the command).
                entities_mark_stale(enqueue=False)
        total = len(ids) if ids else StaleEntity.objects.count()
        started = time.monotonic()
        bar = tqdm(total=total, unit="customers", disable=no_progress, file=self.stderr)
        try:
            if ids:
                done = attributes_recompute(entity_ids=ids, progress=bar.update)
            else:
                done = attributes_recompute(progress=bar.update)
        finally:
            bar.close()
        customers = "customer" if done == 1 else "customers"
        self.stdout.write(f"recomputed: {done:,} {customers} in {time.monotonic() - started:.1f} s")
