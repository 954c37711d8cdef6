"""What the email channel keeps about the addresses of an erased customer (GDPR; cdp.services.erasure).

Before the erase, the webhook payloads waiting in the inbox are applied (`feedback_apply_received`): what they say
about the customer's addresses becomes events, erased with the customer. In the erase's transaction, for each
address deleted with the customer (no remaining event carries it), `email_addresses_erase` deletes:
- its state row (the address, consent and its source, block and its reason, soft bounces, opt-in times);
- its campaign recipient rows' address and customer id (`erased:<row id>` instead; status and counts stay, a
  reason that could quote the address goes); a row not sent yet is skipped ("erased");
- rejected webhook payloads that mention it.

Kept: a block (hard bounce, the provider's or a user's block) as EmailSuppression, a digest of the address with who
blocked it and when, no reason text and no customer: a blocked address must stay unmailable when an import or a
webhook brings it back. Consent is not kept: mail goes only to addresses with consent, so an erased address gets
none until it subscribes again (double opt-in).
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import reduce
from operator import or_

from django.db import connection, transaction
from django.db.models import Q

from emails.models import EmailAddress, EmailSuppression, FeedbackRejection
from emails.services.state import suppression_digest

# The stitching category the emails source's rule puts addresses in (emails.services.setup).
EMAIL_CATEGORY = "email"

_RECIPIENTS_ERASE_SQL = """
UPDATE emails_campaignrecipient r SET
    email = 'erased:' || r.id, customer_entity_id = '', message_id = '', provider_message_id = '',
    status = CASE WHEN r.status = 'pending' THEN 'skipped' ELSE r.status END,
    reason = CASE WHEN r.status IN ('pending', 'failed') THEN 'erased' ELSE r.reason END
FROM emails_campaign c CROSS JOIN unnest(%s::text[]) AS e(email)
WHERE r.campaign_id = c.id AND r.email = e.email
"""


@transaction.atomic
def email_addresses_erase(*, emails: Iterable[str]) -> int:
    """Delete the channel's data of these (normalised) addresses, keeping their blocks as digests; returns how many
    state rows went."""
    emails = sorted(set(emails))
    if not emails:
        return 0
    addresses = list(EmailAddress.objects.select_for_update().filter(email__in=emails).order_by("email"))
    kept = [
        EmailSuppression(digest=suppression_digest(a.email), blocked_by=a.blocked_by, blocked_at=a.blocked_at)
        for a in addresses
        if a.blocked
    ]
    EmailSuppression.objects.bulk_create(
        kept, update_conflicts=True, unique_fields=["digest"], update_fields=["blocked_by", "blocked_at"]
    )
    EmailAddress.objects.filter(pk__in=[a.pk for a in addresses]).delete()
    # Through the (campaign, email) unique index, one probe per campaign and address.
    with connection.cursor() as cursor:
        cursor.execute(_RECIPIENTS_ERASE_SQL, [emails])
    mentions = reduce(or_, (Q(body__icontains=e) | Q(reason__icontains=e) for e in emails))
    FeedbackRejection.objects.filter(mentions).delete()
    return len(addresses)


def identifiers_erased(values: dict[str, list[str]]) -> None:
    """cdp.hooks.on_identifiers_erased callback."""
    email_addresses_erase(emails=values.get(EMAIL_CATEGORY, []))
