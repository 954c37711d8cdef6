"""GDPR erasure and the email channel: an erased customer's addresses lose their state, their campaign rows' address
and the webhook payloads about them; a block is kept as a digest of the address, and keeps working."""

import json
import time

import pytest
from django.apps import apps

from cdp.models import CustomerEvent
from cdp.services.erasure import entity_erase
from emails.models import (
    Campaign,
    CampaignRecipient,
    EmailAddress,
    EmailSuppression,
    EmailTemplate,
    FeedbackInbox,
    FeedbackRejection,
)
from emails.providers import OutgoingEmail
from emails.services.feedback import feedback_process, feedback_reject
from emails.services.sending import RecipientBlocked, email_send
from emails.services.state import (
    SUPPRESSED_REASON,
    address_state,
    email_consent_change,
    email_unblock,
    suppression_digest,
)
from emails.services.subscriptions import PublicRequestError, subscription_request
from stitching.services import engine

pytestmark = pytest.mark.django_db

ANN, BOB = "ann@example.com", "bob@example.com"


def customer_of(email: str):
    return CustomerEvent.objects.filter(source__slug="emails", payload__email=email).first().customer_entity


@pytest.fixture
def ann_erased(django_capture_on_commit_callbacks):
    """Ann and Bob subscribed and are recipients of a campaign being sent; a payload rejected for each; a hard bounce
    of Ann's address accepted but still waiting in the inbox when Ann's customer is erased."""
    for email in (ANN, BOB):
        email_consent_change(email=email, consent=True, type="subscription_imported", key=f"import:{email}")
        feedback_reject(provider="brevo", reason="unknown event", body=json.dumps({"email": email}).encode())
    campaign = Campaign.objects.create(name="Spring", template=EmailTemplate.objects.create(name="T", subject="S"))
    for email in (ANN, BOB):
        CampaignRecipient.objects.create(campaign=campaign, email=email, customer_entity_id="f" * 32, message_id="m")
    feedback_process(provider="brevo", body={
        "event": "hard_bounce", "email": ANN, "message-id": "<m1@relay>", "ts_epoch": int(time.time() * 1000),
        "reason": "550 mailbox unavailable",
    })  # fmt: skip
    engine.stitch_pending()
    with django_capture_on_commit_callbacks(execute=True):
        entity_erase(entity=customer_of(ANN))


def test_an_erase_removes_the_channel_data_of_the_customers_addresses(ann_erased):
    assert not FeedbackInbox.objects.exists()  # applied first, so the bounce was erased with Ann's events
    assert list(EmailAddress.objects.values_list("email", flat=True)) == [BOB]
    assert [json.loads(r.body)["email"] for r in FeedbackRejection.objects.all()] == [BOB]
    ann_row, bob_row = CampaignRecipient.objects.order_by("id")
    assert (ann_row.email, ann_row.status, ann_row.reason) == (f"erased:{ann_row.pk}", "skipped", "erased")
    assert (ann_row.customer_entity_id, ann_row.message_id) == ("", "")
    assert (bob_row.email, bob_row.status) == (BOB, "pending")
    # What is kept of the block: a digest, who blocked and when; nothing anywhere names Ann's address.
    kept = EmailSuppression.objects.get()
    assert kept.digest == suppression_digest(" Ann@Example.com") and kept.blocked_by == "hard_bounce_webhook"
    for model in apps.get_models():
        assert ANN not in json.dumps(list(model.objects.values()), default=str), model


def test_an_address_erased_without_a_block_keeps_nothing(ann_erased):
    entity_erase(entity=customer_of(BOB))
    assert not EmailAddress.objects.exists()
    assert list(EmailSuppression.objects.values_list("digest", flat=True)) == [suppression_digest(ANN)]


def test_a_kept_block_refuses_mail_and_is_the_address_state_when_it_comes_back(ann_erased, admin_user):
    with pytest.raises(RecipientBlocked):
        email_send(message=OutgoingEmail(to=ANN, subject="Hello"))
    with pytest.raises(PublicRequestError) as refused:
        subscription_request(data={"email": ANN})
    assert refused.value.status == "EmailBlocked"
    assert address_state(ANN).blocked and not EmailAddress.objects.filter(email=ANN).exists()

    # An import brings the address back: its state starts blocked, recorded as an event like any block.
    email_consent_change(email=ANN, consent=True, type="subscription_imported", key="import:again")
    address = EmailAddress.objects.get(email=ANN)
    assert address.blocked and address.consent and address.blocked_reason == SUPPRESSED_REASON
    assert address.blocked_by == "hard_bounce_webhook"
    assert CustomerEvent.objects.filter(type="email_address_blocked", payload__email=ANN).exists()
    assert not EmailSuppression.objects.exists()
    assert email_unblock(email=ANN, reason="confirmed by phone", user=admin_user)
    assert not EmailAddress.objects.get(email=ANN).blocked
