"""Attach events to customers directly, as stitching would (tests that need a customer with events but are not
about stitching)."""

from cdp.models import CustomerEntity, CustomerEvent, CustomerEventEntity


def events_attach(events, entity: CustomerEntity | str | None) -> None:
    """Set the customer of these events (CustomerEvent objects or ids) in customer_event_entities."""
    ids = [e.pk if isinstance(e, CustomerEvent) else e for e in events]
    entity_id = entity.pk if isinstance(entity, CustomerEntity) else entity
    CustomerEventEntity.objects.filter(event_id__in=ids).update(customer_entity_id=entity_id)
