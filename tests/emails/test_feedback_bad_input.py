"""Bad values inside otherwise valid feedback webhooks are a 400 (the payload kept for a look in the admin), never
a 500 the provider would retry."""

import json

import pytest

from tests.emails.test_feedback import AUTH, brevo, infobip_report

pytestmark = pytest.mark.django_db


def test_an_infobip_report_with_a_done_at_out_of_range_is_accepted_without_it(public_client, channel):
    body = infobip_report("UNDELIVERABLE", permanent=True, done_at="0001-01-01T00:00:00+14:00")
    r = public_client.generic(
        "POST", "/emails/feedback/infobip", json.dumps(body), content_type="application/json", **AUTH
    )
    assert r.status_code == 200  # the report is kept; its time is the time it arrived


@pytest.mark.parametrize(
    "path,body",
    [
        ("/emails/feedback/brevo", brevo("delivered", **{"message-id": "a\x00b"})),
        ("/emails/feedback/infobip", {"notificationType": "COMPLAINED", "recipient": "a@b.com", "messageId": "a\x00"}),
    ],
)
def test_a_feedback_webhook_with_a_nul_in_a_text_is_a_400(public_client, channel, path, body):
    r = public_client.generic("POST", path, json.dumps(body), content_type="application/json", **AUTH)
    assert r.status_code == 400


def test_a_feedback_webhook_for_a_provider_with_a_nul_is_a_400(public_client, channel):
    r = public_client.generic(
        "POST", "/emails/feedback/a%00", json.dumps(brevo("delivered")), content_type="application/json", **AUTH
    )
    assert r.status_code == 400
