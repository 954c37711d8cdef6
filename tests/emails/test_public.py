"""Public endpoints: subscribe (double opt-in over real SMTP), confirm, unsubscribe, bad input."""

from __future__ import annotations

import re
import secrets
from datetime import timedelta
from urllib.parse import urlsplit

import pytest
from django.utils import timezone

from cdp.models import CustomerEvent
from emails.models import EmailAddress
from emails.services.state import email_block, email_consent_change
from tests.emails.servers import body_text

pytestmark = pytest.mark.django_db


def _events(type_: str | None = None):
    qs = CustomerEvent.objects.filter(source__slug="emails")
    return qs.filter(type=type_) if type_ else qs


def _subscribe(client, body, **extra):
    return client.post("/emails/subscribe", body, format="json", **extra)


def _confirm_link(message) -> str:
    match = re.search(r"(http://shop.example.com/emails/confirm\?token=\S+)", body_text(message))
    assert match, body_text(message)
    url = urlsplit(match.group(1))
    return f"{url.path}?{url.query}"


def test_subscribe_sends_opt_in_email_and_link_confirms_consent(
    public_client, channel, smtp_server, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        response = _subscribe(public_client, {"email": " Ann@Example.com ", "subscription_source": "footer"})
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["status"] == "ok"
    request_id = body["subscription_request_id"]
    requested = _events("subscription_request").get()
    assert requested.payload == {
        "email": "ann@example.com", "subscription_source": "footer", "subscription_request_id": request_id,
        "type": "subscription_request",
    }  # fmt: skip
    [message] = smtp_server.inbox.wait_for(1)
    assert message["To"] == "ann@example.com"
    assert "Shop" in message["From"]
    sent = _events("opt_in_email_sent").get()
    assert sent.payload["subscription_request_id"] == request_id

    page = public_client.get(_confirm_link(message))
    assert page.status_code == 200
    assert b"Subscription confirmed" in page.content
    assert EmailAddress.objects.get(email="ann@example.com").consent is True
    confirmed = _events("subscription_confirmed").get()
    assert confirmed.payload["consent"] is True and confirmed.payload["subscription_request_id"] == request_id
    # Opening the link again changes nothing twice.
    assert public_client.get(_confirm_link(message)).status_code == 200
    assert _events("subscription_confirmed").count() == 1
    # Subscribed now: a new request is refused.
    again = _subscribe(public_client, {"email": "ann@example.com"})
    assert again.status_code == 400
    assert again.json() == {"status": "EmailAlreadySubscribed", "message": "Email address is already subscribed"}


def test_opt_in_email_at_most_once_per_24_hours(
    public_client, channel, smtp_server, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        first = _subscribe(public_client, {"email": "bob@example.com"})
    with django_capture_on_commit_callbacks(execute=True):
        second = _subscribe(public_client, {"email": "bob@example.com", "subscription_source": "footer"})
    assert first.status_code == second.status_code == 200
    assert first.json()["subscription_request_id"] != second.json()["subscription_request_id"]
    assert "sent recently" in second.json()["message"]
    smtp_server.inbox.wait_for(1)
    assert len(smtp_server.inbox.messages) == 1
    assert _events("subscription_request").count() == 2
    assert _events("opt_in_email_sent").count() == 1


def test_a_repeated_subscribe_is_the_same_request(
    public_client, channel, smtp_server, django_capture_on_commit_callbacks
):
    body = {"email": "dora@example.com", "subscription_source": "footer"}
    with django_capture_on_commit_callbacks(execute=True):
        first = _subscribe(public_client, body)
    with django_capture_on_commit_callbacks(execute=True):
        again = _subscribe(public_client, {**body, "email": " Dora@Example.com"})
    assert again.status_code == 200
    assert again.json()["subscription_request_id"] == first.json()["subscription_request_id"]
    assert "sent recently" in again.json()["message"]
    assert _events("subscription_request").count() == 1
    assert len(smtp_server.inbox.wait_for(1)) == 1
    # After the frequency window it is a new request, with a new email.
    EmailAddress.objects.filter(email="dora@example.com").update(
        subscription_requested_at=timezone.now() - timedelta(days=2), opt_in_sent_at=timezone.now() - timedelta(days=2)
    )
    with django_capture_on_commit_callbacks(execute=True):
        later = _subscribe(public_client, body)
    assert later.json()["subscription_request_id"] != first.json()["subscription_request_id"]
    assert _events("subscription_request").count() == 2
    assert len(smtp_server.inbox.wait_for(2)) == 2


def test_a_subscribe_after_an_unsubscribe_is_a_new_request(
    public_client, channel, smtp_server, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        first = _subscribe(public_client, {"email": "fay@example.com"})
    assert public_client.get(_confirm_link(smtp_server.inbox.wait_for(1)[0])).status_code in (200, 302)
    assert EmailAddress.objects.get(email="fay@example.com").consent is True
    assert public_client.post("/emails/unsubscribe", {"email": "fay@example.com"}, format="json").status_code == 200
    again = _subscribe(public_client, {"email": "fay@example.com"})
    assert again.status_code == 200
    assert again.json()["subscription_request_id"] != first.json()["subscription_request_id"]
    assert _events("subscription_request").count() == 2


def test_a_repeat_after_a_failed_opt_in_email_sends_it(public_client, channel, smtp_server,
                                                       django_capture_on_commit_callbacks):  # fmt: skip
    with django_capture_on_commit_callbacks(execute=False):  # the first request's email never went out
        first = _subscribe(public_client, {"email": "eli@example.com"})
    with django_capture_on_commit_callbacks(execute=True):
        again = _subscribe(public_client, {"email": "eli@example.com"})
    assert again.json()["subscription_request_id"] == first.json()["subscription_request_id"]
    assert "check your inbox to confirm" in again.json()["message"]
    assert len(smtp_server.inbox.wait_for(1)) == 1
    request_id = first.json()["subscription_request_id"]
    assert _events("opt_in_email_sent").get().payload["subscription_request_id"] == request_id


@pytest.mark.django_db(transaction=True)
def test_subscribe_while_redis_is_down_answers_503_and_the_retry_sends_the_opt_in(public_client, channel, smtp_server):
    """With Redis unreachable the subscription request was stored, then the opt-in email's task message failed after
    the commit: a 500, and nothing would ever send that email. Nothing sends it later, so the answer is the seed's
    503 ServiceUnavailable with Retry-After; the subscriber's retry is the same request and gets the email."""
    from tests.workers import broker_unreachable

    with broker_unreachable():
        refused = _subscribe(public_client, {"email": "ann@example.com"})

    assert refused.status_code == 503
    assert refused.json() == {"status": "ServiceUnavailable",
                              "message": "The task queue is unavailable; try again in a minute."}  # fmt: skip
    assert int(refused["Retry-After"]) > 0
    requested = _events("subscription_request").get()
    assert EmailAddress.objects.get(email="ann@example.com").opt_in_sent_at is None

    retried = _subscribe(public_client, {"email": "ann@example.com"})  # Redis back

    assert retried.status_code == 200, retried.content
    assert retried.json()["subscription_request_id"] == requested.payload["subscription_request_id"]
    assert _events("subscription_request").count() == 1
    [message] = smtp_server.inbox.wait_for(1)
    assert message["To"] == "ann@example.com"


def test_subscribe_errors(public_client, channel, admin_user):
    email_block(email="spam@example.com", reason="spam trap", user=admin_user)
    blocked = _subscribe(public_client, {"email": "spam@example.com"})
    assert blocked.status_code == 400
    assert blocked.json() == {"status": "EmailBlocked", "message": "Email address is blocked"}
    invalid = _subscribe(public_client, {"email": "not-an-address"})
    assert invalid.json() == {"status": "EmailInvalid", "message": "Email address is invalid"}
    missing = _subscribe(public_client, {"subscription_source": "x"})
    assert missing.status_code == 400
    assert missing.json() == {"status": "error", "message": "validation: email is required property"}


def test_confirm_link_refuses_tampered_and_expired_tokens(public_client, channel):
    from emails.services.subscriptions import opt_in_token

    token = opt_in_token("eve@example.com", "r-1")
    tampered = public_client.get(f"/emails/confirm?token={token[:-2]}xx")
    assert tampered.status_code == 400
    assert b"not valid" in tampered.content
    channel.opt_in_link_valid_days = 0
    channel.save()
    expired = public_client.get(f"/emails/confirm?token={token}")
    assert expired.status_code == 400
    assert b"expired" in expired.content
    assert not EmailAddress.objects.filter(email="eve@example.com", consent=True).exists()


def test_unsubscribe_records_event_and_304_when_not_subscribed(public_client, channel):
    email_consent_change(email="carl@example.com", consent=True, type="subscription_imported")
    body = {
        "email": "carl@example.com", "campaign": {"id": "c-1", "name": "Spring sale"}, "message_id": "m-1",
        "subject": "Sale!", "unsubscribe_source": "Meiro unsubscribe page",
    }  # fmt: skip
    response = public_client.post("/emails/unsubscribe", body, format="json")
    assert response.status_code == 200
    assert response.json()["status"] == "ok"
    event = _events("unsubscribe").get()
    assert event.payload == {**body, "type": "unsubscribe", "consent": False}
    assert EmailAddress.objects.get(email="carl@example.com").consent is False
    # Already unsubscribed, or unknown: 304 and no event.
    assert public_client.post("/emails/unsubscribe", body, format="json").status_code == 304
    assert public_client.post("/emails/unsubscribe", {"email": "who@example.com"}, format="json").status_code == 304
    assert _events("unsubscribe").count() == 1


@pytest.mark.parametrize(
    ("raw", "content_type", "status", "message"),
    [
        (b"{not json", "application/json", 400, "validation: the body is not valid JSON"),
        (b"", "application/json", 400, "validation: the body is empty; send a JSON object"),
        (b"[1, 2]", "application/json", 400, "validation: the body must be a JSON object"),
        (b'"a@b.com"', "application/json", 400, "validation: the body must be a JSON object"),
        (b'{"email": 42}', "application/json", 400, "validation: email must be a string"),
        (b'{"email": null}', "application/json", 400, "validation: email is required property"),
        (b'{"email": ["a@b.com"]}', "application/json", 400, "validation: email must be a string"),
        (b'{"email": "a@b.com", "subscription_source": 5}', "application/json", 400,
         "validation: subscription_source must be a string"),
        (b'{"email": "a@b.com", "extra": 1}', "application/json", 400, "validation: extra is not an allowed property"),
        (b'{"email": "a@b.com"}', "application/xml", 400, "validation: Content-Type 'application/xml' is not JSON"),
        (b'{"email": "\\u00e1\\u200b@\\u0000.com"}', "application/json", 400, "Email address is invalid"),
        (b'{"email": "\\ud800@example.com"}', "application/json", 400, "validation: the body is not valid JSON"),
        (b'{"email": "a@b.com", "subscription_source": "\\ud800"}', "application/json", 400,
         "validation: the body is not valid JSON"),
        ('{"email": "a@b.com", "subscription_source": "žluťoučký 😀 ‮"}'.encode(),
         "application/json", 200, None),
        (b'{"email": "' + b"a" * 300 + b'@example.com"}', "application/json", 400, "Email address is invalid"),
        (b'{"email": "a@b.com", "subscription_source": "' + b"x" * 20000 + b'"}', "application/json", 413,
         "validation: the body is over the 16 KB limit"),
    ],
)  # fmt: skip
@pytest.mark.parametrize("endpoint", ["/emails/subscribe", "/emails/unsubscribe"])
def test_bad_input_is_a_4xx_with_a_message(public_client, channel, endpoint, raw, content_type, status, message):
    if endpoint.endswith("unsubscribe"):
        raw = raw.replace(b"subscription_source", b"unsubscribe_source")
        message = message and message.replace("subscription_source", "unsubscribe_source")
    response = public_client.generic("POST", endpoint, raw, content_type=content_type)
    assert response.status_code == (304 if status == 200 and endpoint.endswith("unsubscribe") else status)
    if message is None:  # odd but valid unicode is stored as sent
        assert response.status_code == 200 or response.status_code == 304
        return
    assert response.json()["message"] == message
    assert not _events().exists()


def test_unsubscribe_campaign_needs_id_and_name(public_client, channel):
    response = public_client.post("/emails/unsubscribe", {"email": "a@b.com", "campaign": {"id": "c-1"}}, format="json")
    assert response.status_code == 400
    assert response.json() == {"status": "error", "message": "validation: campaign.name is required property"}
    assert (
        public_client.post("/emails/unsubscribe", {"email": "a@b.com", "campaign": "c-1"}, format="json").json()[
            "message"
        ]
        == "validation: campaign must be an object with id and name"
    )


def test_wrong_method_and_cors(public_client, channel):
    from cdp.services.global_settings import global_setting_set, global_settings_cache_clear

    assert public_client.get("/emails/subscribe").status_code == 405
    global_setting_set(key="public_cors_origins", value=["https://shop.example.com"], user=None)
    global_settings_cache_clear()
    preflight = public_client.options("/emails/subscribe", HTTP_ORIGIN="https://shop.example.com")
    assert preflight.status_code == 204
    assert preflight["Access-Control-Allow-Origin"] == "https://shop.example.com"
    other = public_client.options("/emails/subscribe", HTTP_ORIGIN="https://evil.example.com")
    assert "Access-Control-Allow-Origin" not in other


def test_rate_limited(public_client, channel):
    from cdp.services.global_settings import global_setting_set, global_settings_cache_clear

    global_setting_set(key="public_rate_limit_per_minute", value=2, user=None)
    global_settings_cache_clear()
    ip = f"10.{secrets.randbelow(250)}.{secrets.randbelow(250)}.{secrets.randbelow(250)}"  # a fresh counter
    try:
        codes = [_subscribe(public_client, {"email": "nope"}, REMOTE_ADDR=ip).status_code for _ in range(3)]
    finally:
        global_settings_cache_clear()  # the limit of 2 must not outlive this test's rolled-back transaction
    assert codes == [400, 400, 429]


def test_one_click_unsubscribes_have_their_own_rate_limit_counter(public_client, channel):
    from cdp.services.global_settings import global_setting_set, global_settings_cache_clear

    global_setting_set(key="public_rate_limit_per_minute", value=1, user=None)
    global_settings_cache_clear()
    ip = f"10.{secrets.randbelow(250)}.{secrets.randbelow(250)}.{secrets.randbelow(250)}"  # a fresh counter
    try:
        # A mailbox provider's address, whose subscribe-form count is spent, still gets its one-click POSTs through.
        codes = [_subscribe(public_client, {"email": "nope"}, REMOTE_ADDR=ip).status_code for _ in range(2)]
        codes += [public_client.post("/emails/unsubscribe/one-click?token=x", REMOTE_ADDR=ip).status_code
                  for _ in range(2)]  # fmt: skip
    finally:
        global_settings_cache_clear()
    assert codes == [400, 429, 400, 429]


def test_default_pages_are_prefilled(public_client):
    page = public_client.get(
        "/email/unsubscribe.html?email=a%40b.com&campaign_id=c-1&campaign_name=Sale&subject=Hi&message_id=m-9"
    )
    assert page.status_code == 200
    html = page.content.decode()
    assert 'value="a@b.com"' in html and 'value="c-1"' in html and 'value="m-9"' in html
    assert public_client.get("/email/subscribe.html?email=%3Cscript%3E").content.count(b"<script>alert") == 0


@pytest.mark.parametrize("query", ["", "?token=", "?token=" + "x" * 5000, "?token=%00%ff", "?token=abc:def:ghi"])
def test_confirm_link_bad_input_is_a_400_page(public_client, channel, query):
    response = public_client.get(f"/emails/confirm{query}")
    assert response.status_code == 400
    assert b"not valid" in response.content


def test_pages_and_confirm_refuse_other_methods(public_client, channel):
    assert public_client.put("/email/subscribe.html").status_code == 405
    assert public_client.post("/emails/confirm").status_code == 405
    assert public_client.put("/emails/unsubscribe", {"email": "a@b.com"}, format="json").status_code == 405


def test_the_default_pages_work_without_javascript(
    public_client, channel, smtp_server, django_capture_on_commit_callbacks
):
    """The forms had no method or action: without JavaScript (a text browser, a privacy add-on, a mail app's
    viewer) submitting one reloaded the page with the address in its URL and did nothing."""
    from django.test import Client

    browser = Client()  # a browser without JavaScript: it sends the forms as they are (form-encoded)
    email_consent_change(email="ann@example.com", consent=True, type="subscription_imported")
    page = browser.get("/email/unsubscribe.html?email=ann%40example.com&campaign_id=7&campaign_name=Sale"
                       "&subject=Hi&message_id=m-9").content.decode()  # fmt: skip
    assert '<form id="unsubscribe-form" method="post" action="/email/unsubscribe.html"' in page
    fields = dict(re.findall(r'name="(\w+)" value="([^"]*)"', page))
    assert fields == {"email": "ann@example.com", "campaign_id": "7", "campaign_name": "Sale", "subject": "Hi",
                      "message_id": "m-9"}  # fmt: skip

    done = browser.post("/email/unsubscribe.html", fields)
    assert done.status_code == 200 and "You have been unsubscribed" in done.content.decode()
    assert EmailAddress.objects.get(email="ann@example.com").consent is False
    [event] = _events("unsubscribe")
    assert event.payload["campaign"] == {"id": "7", "name": "Sale"} and event.payload["message_id"] == "m-9"
    assert "is not subscribed" in browser.post("/email/unsubscribe.html", fields).content.decode()
    assert len(_events("unsubscribe")) == 1

    # Errors show under the field, the address kept in it.
    bad = browser.post("/email/subscribe.html", {"email": "not an address", "subscription_source": "subscribe page"})
    html = bad.content.decode()
    assert bad.status_code == 400 and 'aria-invalid="true"' in html
    assert '<div class="field-error" id="email-error" role="alert">Email address is invalid</div>' in html
    assert 'value="not an address"' in html

    with django_capture_on_commit_callbacks(execute=True):
        subscribed = browser.post("/email/subscribe.html", {"email": "bob@example.com",
                                                            "subscription_source": "subscribe page"})  # fmt: skip
    assert subscribed.status_code == 200 and "Check your inbox" in subscribed.content.decode()
    [message] = smtp_server.inbox.wait_for(1)
    assert message["To"] == "bob@example.com"
    [request] = _events("subscription_request")
    assert request.payload["subscription_source"] == "subscribe page"
