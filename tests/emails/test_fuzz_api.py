"""Hostile input to the email channel (REST API, public endpoints, provider webhooks), the event ingestion endpoints
(Segment-compatible /v1/*, POST /api/events) and the data source / export destination endpoints is a 4xx whose
message names the problem, never a 500; a batch with bad records keeps the good ones and reports each bad one; a
retried request or a duplicated webhook changes nothing twice.

Each test sends a batch of requests and lists every one that broke the rule, so one run shows them all (the checker
is the one of tests/cdp/api/test_fuzz_issue3.py)."""

from __future__ import annotations

import base64
import json
import time

import pytest
from django.core import signing
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from cdp.features import Feature
from cdp.models import CustomerEvent, DataSource
from cdp.ratelimit import rate_limit_setting_forget
from cdp.services.auth import role_create, user_create
from cdp.services.global_settings import global_setting_set
from emails.models import Campaign, EmailAddress, EmailChannel, EmailTemplate, FeedbackRejection
from emails.services.feedback import feedback_apply
from emails.services.state import email_consent_change
from emails.services.subscriptions import opt_in_token
from emails.services.templates import template_create
from segments.services import segment_create
from tests.conftest import client_for
from tests.emails.conftest import WEBHOOK_SECRET
from tests.fuzz import BIGINT_PAST, HUGE, INT_PAST, LONG, NUMBERS, SURROGATE
from tests.fuzz import problem as _problem
from tests.fuzz import run as _run
from tests.fuzz import send as _send
from tests.fuzz import with_number as _with_number
from tests.segment_api.conftest import basic_auth

pytestmark = pytest.mark.django_db

BAD_IDS = ["abc", "0", "-1", str(HUGE), str(BIGINT_PAST), str(INT_PAST), "1.5", "%C2%B2", "x" * 10_000, "%ff"]
BAD_EMAILS = [
    "", " ", "not-an-address", "a@", "@b.com", "a@b", "a b@c.com", "a@b..com", "x" * 990 + "@example.com",
    "a\x00b@example.com", "a@exa\x00mple.com", "a\u200b@example.com", "a@" + "x" * 300 + ".com", "\n",
    "a@b.com\nb@c.com", "<a@b.com>", "a@[300.1.1.1]", "a@-b.com",
]  # fmt: skip
IDN_EMAILS = ["jan@bücher.de", "jan@xn--bcher-kva.de", "δοκιμή@παράδειγμα.δοκιμή", "ann@EXAMPLE.com"]
BODIES = ["[]", "null", '"text"', "1", "[1, 2]", '{"a": NaN}', '{"a": Infinity}', "{", "x" * 100_000, "{}"]
TIMES = [
    "0000-01-01T00:00:00Z", "0001-01-01T00:00:00+14:00", "99999-01-01T00:00:00Z", "9999-12-31T23:59:59-14:00",
    "garbage", "", " ", "2025-02-30T00:00:00Z", "1e10", "-1", "9" * 5000, "2025-01-01T25:00:00Z", LONG,
    10**20, -(10**20), 1e308, -1, -1.5, True, [], {}, "²",
]  # fmt: skip


def _with_surrogate(body: dict, field: str) -> str:
    return json.dumps({**body, field: "PLACEHOLDER"}).replace("PLACEHOLDER", f"a{SURROGATE}b")


# --- the checker ---------------------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _unlimited(db):
    """Hundreds of public requests from one client IP: no rate limit in these tests."""
    global_setting_set(key="public_rate_limit_per_minute", value=0, user=None)
    rate_limit_setting_forget()
    yield
    rate_limit_setting_forget()


# --- the email REST API ----------------------------------------------------------------------------------------


@pytest.fixture
def template(db):
    return template_create(name="Sale", subject="Sale for {{ email }}", html_body="<p>{{ email }}</p>",
                           text_body="Hi {{ email }}")  # fmt: skip


TEMPLATE = {"name": "New", "subject": "Hello", "html_body": "<p>Hi</p>", "text_body": "Hi"}
TEMPLATE_BAD = [
    (field, value)
    for field in ("name", "subject", "html_body", "text_body")
    for value in (None, {}, [], ["x"], True, "a\x00b", LONG if field in ("name", "subject") else None)
] + [("name", ""), ("subject", ""), ("name", "Sale")] + [  # fmt: skip
    ("subject", "Sale\r\nBcc: everyone@example.com"), ("subject", "two\nlines"),  # an email header is one line
]  # fmt: skip
BROKEN_SYNTAX = ["{{", "}}", "{{ email", "{% if x %}", "{{ unknown_thing }}", "{{{{ email }}}}", "{{ 1 }}",
                 "{# #}", "${email}", "{{ email|safe }}", "%(email)s", "{0}", "{{" * 10_000]  # fmt: skip


def test_hostile_template_payloads_are_400_naming_the_field(admin_client, template):
    url, detail = "/api/email_templates/", f"/api/email_templates/{template.pk}"
    cases = [("post", url, {**TEMPLATE, field: value}, (field,)) for field, value in TEMPLATE_BAD]
    cases += [("patch", detail, {field: value}, (field,)) for field, value in TEMPLATE_BAD if field != "name"
              or value != "Sale"]  # fmt: skip
    cases += [("put", detail, {**TEMPLATE, field: value}, (field,)) for field, value in TEMPLATE_BAD
              if value != "Sale"]  # fmt: skip
    for field in TEMPLATE:
        cases += [("post", url, None, (field,), _with_surrogate(TEMPLATE, field)),
                  ("patch", detail, None, (field,), _with_surrogate({}, field))]  # fmt: skip
    cases += [("post", url, {**TEMPLATE, "html_body": "", "text_body": " "}, ("html_body",))]
    cases += [(m, u, None, (), raw) for m, u in (("post", url), ("patch", detail)) for raw in BODIES if raw != "{}"]
    problems = _run(admin_client, cases, refuse=True)
    assert not problems, "\n".join(problems)
    assert list(EmailTemplate.objects.values_list("name", flat=True)) == ["Sale"]


def test_templates_with_broken_placeholder_syntax_are_kept_as_typed_and_preview(admin_client, template):
    problems = []
    for index, text in enumerate(BROKEN_SYNTAX):
        body = {**TEMPLATE, "name": f"Broken {index}", "subject": text[:255], "html_body": text, "text_body": text}
        created = admin_client.post("/api/email_templates/", body, format="json")
        if created.status_code != 201:
            problems.append(f"{text[:40]!r}: {created.status_code} {created.content[:200]!r}")
            continue
        preview = admin_client.post(f"/api/email_templates/{created.json()['id']}/preview", {}, format="json")
        if preview.status_code != 200:
            problems.append(f"preview {text[:40]!r}: {preview.status_code} {preview.content[:200]!r}")
    assert not problems, "\n".join(problems)
    preview = admin_client.post(f"/api/email_templates/{template.pk}/preview", {}, format="json").json()
    assert preview["text"] == "Hi jane.doe@example.com"


def test_template_ids_and_preview_input_that_are_not_usable_are_4xx(admin_client, template):
    detail = f"/api/email_templates/{template.pk}"
    cases = [(m, f"/api/email_templates/{pk}{sub}", body, ())
             for pk in BAD_IDS for m, sub, body in (("get", "", None), ("patch", "", {"name": "x"}),
                                                    ("delete", "", None), ("post", "/preview", {}))]  # fmt: skip
    cases += [("post", f"{detail}/preview", {"email": value}, ("email",)) for value in BAD_EMAILS + [LONG, {}, 1]]
    cases += [("post", f"{detail}/preview", None, ("email",), _with_surrogate({}, "email"))]
    cases += [("post", f"{detail}/preview", None, (), raw) for raw in BODIES if raw not in ("{}", "[]", "null")]
    problems = _run(admin_client, cases, refuse=True)
    assert not problems, "\n".join(problems)
    assert EmailTemplate.objects.get().name == "Sale"


def test_idn_addresses_preview_and_block(admin_client, template, channel):
    for email in IDN_EMAILS:
        preview = admin_client.post(f"/api/email_templates/{template.pk}/preview", {"email": email}, format="json")
        assert preview.status_code in (200, 400), (email, preview.content[:200])
        blocked = admin_client.post("/api/emails/block", {"email": email, "reason": "r"}, format="json")
        assert blocked.status_code in (200, 400), (email, blocked.content[:200])
        assert admin_client.get(f"/api/emails/{email}").status_code in (200, 400, 404)


CHANNEL_BAD = [
    ("provider", "pigeon"), ("provider", None), ("provider", {}), ("provider", LONG), ("provider", "a\x00"),
    ("sender_email", "not-an-email"), ("sender_email", "x" * 990 + "@example.com"), ("sender_email", {}),
    ("sender_email", "a\x00@b.com"), ("sender_name", LONG), ("sender_name", "a\x00"), ("sender_name", []),
    ("smtp_host", LONG), ("smtp_host", "a\x00"), ("smtp_port", -1), ("smtp_port", HUGE), ("smtp_port", INT_PAST),
    ("smtp_port", BIGINT_PAST), ("smtp_port", "abc"), ("smtp_port", 1.5), ("smtp_port", None), ("smtp_port", {}),
    ("smtp_port", 1e308), ("smtp_security", "tls13"), ("smtp_security", None), ("api_base_url", LONG),
    ("api_base_url", "a\x00"), ("public_base_url", "not a url"), ("public_base_url", LONG),
    ("public_base_url", "javascript:alert(1)"), ("subscribe_page_url", "ftp://x"), ("confirmed_page_url", LONG),
    ("unsubscribe_page_url", "a\x00"), ("opt_in_frequency_hours", 0), ("opt_in_frequency_hours", -1),
    ("opt_in_frequency_hours", HUGE), ("opt_in_frequency_hours", INT_PAST), ("opt_in_frequency_hours", "x"),
    ("opt_in_frequency_hours", 1e308), ("opt_in_link_valid_days", -1), ("opt_in_link_valid_days", HUGE),
    ("opt_in_link_valid_days", 10**9), ("opt_in_subject", LONG), ("opt_in_subject", "a\x00"),
    ("opt_in_subject", None), ("opt_in_body", "a\x00"), ("opt_in_body", {}), ("webhook_provider", "nope"),
    ("webhook_provider", None), ("send_rate_per_second", 0), ("send_rate_per_second", -1),
    ("send_rate_per_second", HUGE), ("send_rate_per_second", INT_PAST), ("send_rate_per_second", "fast"),
    ("credentials", {}), ("credentials", LONG), ("credentials", "a\x00"), ("modified", "x"),
]  # fmt: skip
CHANNEL_SURROGATE_FIELDS = (
    "provider",
    "sender_email",
    "sender_name",
    "smtp_host",
    "smtp_username",
    "api_base_url",
    "public_base_url",
    "opt_in_subject",
    "opt_in_body",
    "webhook_provider",
    "credentials",
)


def test_hostile_channel_changes_are_400_naming_the_field(admin_client, channel):
    before = EmailChannel.objects.values().get()
    cases = [("patch", "/api/channels/email", {field: value}, (field,)) for field, value in CHANNEL_BAD
             if field != "modified"]  # fmt: skip
    cases += [("patch", "/api/channels/email", None, (field,), _with_surrogate({}, field))
              for field in CHANNEL_SURROGATE_FIELDS]  # fmt: skip
    cases += [
        ("patch", "/api/channels/email", None, (field,), _with_number({}, field, number))
        for field in ("smtp_port", "send_rate_per_second", "opt_in_frequency_hours")
        for number in NUMBERS
    ]
    cases += [("patch", "/api/channels/email", None, (), raw) for raw in BODIES if raw not in ("{}",)]
    cases += [("post", "/api/channels/email/send_test", {"to": value}, ("to",)) for value in BAD_EMAILS + [{}, None]]
    cases += [("post", "/api/channels/email/send_test", None, ("to",), _with_surrogate({}, "to"))]
    problems = _run(admin_client, cases, refuse=True)
    assert not problems, "\n".join(problems)
    after = EmailChannel.objects.values().get()
    assert {k: v for k, v in after.items() if k != "modified"} == {k: v for k, v in before.items() if k != "modified"}


def test_hostile_address_lookups_and_blocks_are_4xx(admin_client, channel):
    cases = [("get", f"/api/emails/{email}", None, ("email", "path")) for email in
             ["not-an-address", "x" * 1000, "a%00b@c.com", "%ED%A0%80@b.com", "%ff@b.com", "a@b", "..", "%2e%2e",
              "nobody@example.com", "a%20b@c.com", "x" * 100_000 + "@b.com"]]  # fmt: skip
    cases += [("get", f"/api/emails/?{query}", None, (query.split("=")[0],)) for query in
              ["blocked=maybe", "blocked=" + LONG, "consent=perhaps", "consent=%00", "q=%00", "q=" + LONG,
               "q=%ED%A0%80", "q=%ff", "limit=abc", "offset=-1", "blocked=true&consent=true&q=a"]]  # fmt: skip
    block_bad = [("email", value) for value in BAD_EMAILS + [None, {}, [], 1, True, LONG]]
    block_bad += [("reason", value) for value in ("", " ", None, {}, [], "a\x00b", LONG, 1)]
    for action in ("block", "unblock"):
        cases += [("post", f"/api/emails/{action}", {"email": "ann@example.com", "reason": "r", field: value},
                   (field,)) for field, value in block_bad]  # fmt: skip
        cases += [
            (
                "post",
                f"/api/emails/{action}",
                None,
                (field,),
                _with_surrogate({"email": "ann@example.com", "reason": "r"}, field),
            )
            for field in ("email", "reason")
        ]
        cases += [("post", f"/api/emails/{action}", None, (), raw) for raw in BODIES]
    problems = _run(admin_client, cases)
    assert not problems, "\n".join(problems)
    assert not EmailAddress.objects.filter(blocked=True).exists()


def test_a_repeated_block_changes_nothing_twice(admin_client, channel):
    body = {"email": "Ann@Example.com ", "reason": "asked us"}
    first = admin_client.post("/api/emails/block", body, format="json")
    assert first.status_code == 200, first.content
    state = EmailAddress.objects.values().get()
    events = CustomerEvent.objects.filter(type="email_address_blocked").count()
    second = admin_client.post("/api/emails/block", body, format="json")
    assert second.status_code == 200 and "already" in second.json()["message"]
    assert EmailAddress.objects.values().get() == state
    assert CustomerEvent.objects.filter(type="email_address_blocked").count() == events == 1


# --- campaigns ---------------------------------------------------------------------------------------------------


@pytest.fixture
def marketer(db):
    role = role_create(name="Email marketer", features=[Feature.EMAILS_VIEW, Feature.EMAILS_SEND,
                                                        Feature.SEGMENTS_VIEW])  # fmt: skip
    return user_create(username="marketer", password="Marketer-password-1!", role=role)


@pytest.fixture
def segments(admin_user, marketer):
    """The admin's private segment (the marketer may not see it) and the marketer's own."""
    hidden = segment_create(owner=admin_user, name="Admin only", conditions=None)
    own = segment_create(owner=marketer, name="Mine", conditions=None)
    return {"hidden": hidden.pk, "own": own.pk}


def test_campaigns_to_segments_the_user_may_not_see_or_with_bad_fields_are_4xx(
    marketer, segments, template, channel, django_capture_on_commit_callbacks
):
    client = client_for(marketer)
    good = {"name": "Spring", "template": template.pk, "segment_id": segments["own"]}
    bad = [("segment_id", segments["hidden"]), ("segment_id", HUGE), ("segment_id", -HUGE), ("segment_id", -1),
           ("segment_id", 0), ("segment_id", BIGINT_PAST), ("segment_id", INT_PAST), ("segment_id", "abc"),
           ("segment_id", 1.5), ("segment_id", None), ("segment_id", {}), ("segment_id", []), ("segment_id", True),
           ("segment_id", "1\x00"), ("segment_id", LONG), ("segment_id", 1e308), ("segment_id", 999_999),
           ("template", HUGE), ("template", -1), ("template", BIGINT_PAST), ("template", "abc"),
           ("template", template.pk + 0.5), ("template", None), ("template", {}), ("template", []),
           ("template", True), ("template", "1\x00"), ("template", 999_999), ("template", 1e308),
           ("name", ""), ("name", " "), ("name", None), ("name", {}), ("name", LONG), ("name", "a\x00b")]  # fmt: skip
    cases = [("post", "/api/email_campaigns/", {**good, field: value}, (field, "Segment", "segment"))
             for field, value in bad]  # fmt: skip
    cases += [("post", "/api/email_campaigns/", None, (field,), _with_surrogate(good, field))
              for field in ("name", "template", "segment_id")]  # fmt: skip
    cases += [("post", "/api/email_campaigns/", None, (field,), _with_number(good, field, number))
              for field in ("template", "segment_id") for number in NUMBERS]  # fmt: skip
    cases += [("post", "/api/email_campaigns/", None, (), raw) for raw in BODIES]
    with django_capture_on_commit_callbacks(execute=False):
        problems = _run(client, cases, refuse=True)
    assert not problems, "\n".join(problems)
    assert not Campaign.objects.exists()
    hidden = client.post("/api/email_campaigns/", {**good, "segment_id": segments["hidden"]}, format="json")
    assert hidden.status_code == 404


def test_campaign_ids_and_filters_that_are_not_usable_are_4xx(admin_client, admin_user, segments, template):
    campaign = Campaign.objects.create(name="c", template=template, segment_id=segments["own"])
    cases = [("get", f"/api/email_campaigns/{pk}{sub}", None, ()) for pk in BAD_IDS
             for sub in ("", "/report", "/recipients")]  # fmt: skip
    cases += [("get", f"/api/email_campaigns/{campaign.pk}/recipients?{query}", None, (query.split("=")[0],))
              for query in ("status=nope", "status=" + LONG, "status=%00", "status=%ED%A0%80", "limit=-1",
                            "offset=abc", f"limit={HUGE}")]  # fmt: skip
    cases += [("get", f"/api/email_campaigns/?{query}", None, ()) for query in ("limit=abc", "offset=" + "9" * 5000)]
    cases += [(m, f"/api/email_campaigns/{campaign.pk}", {"name": "x"}, ()) for m in ("put", "patch", "delete")]
    problems = _run(admin_client, cases)
    assert not problems, "\n".join(problems)


def test_channel_limits_that_break_the_public_endpoints_are_refused(admin_client, channel):
    """The largest values the columns hold put "now minus the opt-in window" and the link's age before year 1 (every
    later subscribe / confirm was a 500); a port past 65535 is no port. The largest values allowed work."""
    cases = [("patch", "/api/channels/email", {field: value}, (field,)) for field, value in
             [("opt_in_frequency_hours", 2**31 - 1), ("opt_in_frequency_hours", 87_601),
              ("opt_in_link_valid_days", 2**31 - 1), ("opt_in_link_valid_days", 10**9),
              ("opt_in_link_valid_days", 3651), ("smtp_port", 65536), ("smtp_port", 2**31 - 1)]]  # fmt: skip
    problems = _run(admin_client, cases, refuse=True)
    response = admin_client.patch("/api/channels/email", {"opt_in_frequency_hours": 87_600,
                                                          "opt_in_link_valid_days": 3650}, format="json")  # fmt: skip
    if response.status_code != 200:
        problems.append(f"the largest allowed: {response.status_code} {response.content[:200]!r}")
    public = APIClient()
    public.raise_request_exception = False
    EmailAddress.objects.create(email="ann@example.com", opt_in_sent_at=timezone.now())
    for _ in range(2):
        subscribed = public.post("/emails/subscribe", {"email": "ann@example.com"}, format="json")
        if subscribed.status_code != 200:
            problems.append(f"subscribe: {subscribed.status_code} {subscribed.content[:200]!r}")
    confirmed = public.get("/emails/confirm", {"token": opt_in_token("ann@example.com", "r-1")})
    if confirmed.status_code != 200:
        problems.append(f"confirm: {confirmed.status_code} {confirmed.content[:200]!r}")
    assert not problems, "\n".join(problems)


# --- public endpoints: subscribe, unsubscribe, confirm ---------------------------------------------------------

PUBLIC_BAD = [
    ("email", None), ("email", 1), ("email", {}), ("email", []), ("email", True), ("email", LONG),
    ("subscription_source", 1), ("subscription_source", {}), ("subscription_source", "a\x00"),
    ("subscription_source", "x" * 1001), ("nope", 1), ("\x00", 1),
] + [("email", value) for value in BAD_EMAILS]  # fmt: skip


def _public_cases(url: str, source: str) -> list[tuple]:
    good = {"email": "ann@example.com"}
    cases = [("post", url, {**good, (source if f == "subscription_source" else f): v}, (f.replace("subscription_source",
              source), "Email", "email", "body", "allowed property")) for f, v in PUBLIC_BAD]  # fmt: skip
    cases += [("post", url, None, ("JSON",), _with_surrogate(good, field)) for field in ("email", source)]
    cases += [("post", url, None, ("JSON", "out of range"), _with_number(good, source, n)) for n in NUMBERS]
    cases += [("post", url, None, ("body", "JSON", "email"), raw) for raw in BODIES]
    cases += [("post", url, None, ("body",), b"\xff\xfe{}"), ("post", url, None, ("body",), b'{"email": "\xff@b.com"}')]
    return cases


def test_hostile_subscribe_and_unsubscribe_bodies_are_4xx_naming_the_problem(public_client, channel):
    cases = _public_cases("/emails/subscribe", "subscription_source")
    cases += _public_cases("/emails/unsubscribe", "unsubscribe_source")
    unsubscribe = {"email": "ann@example.com"}
    cases += [("post", "/emails/unsubscribe", {**unsubscribe, "campaign": value}, ("campaign",)) for value in
              ["c-1", 1, [], {"id": "c"}, {"name": "n"}, {"id": {}, "name": "n"}, {"id": "c", "name": "a\x00"},
               {"id": "c", "name": LONG[:5000]}, {"id": None, "name": "n"}]]  # fmt: skip
    cases += [("post", "/emails/unsubscribe", {**unsubscribe, field: value}, (field,))
              for field in ("message_id", "subject") for value in (1, {}, "a\x00", "x" * 1001)]  # fmt: skip
    problems = _run(public_client, cases, refuse=True, api=False)
    assert not problems, "\n".join(problems)
    assert not CustomerEvent.objects.filter(source__slug="emails").exists()


def test_idn_and_odd_addresses_subscribe_or_are_refused_cleanly(public_client, channel):
    problems = []
    for email in IDN_EMAILS + ["ANN@example.com ", "a+tag@example.com", "o'brien@example.com"]:
        response = public_client.post("/emails/subscribe", {"email": email}, format="json")
        if response.status_code not in (200, 400) or (response.status_code == 400 and not response.json()["message"]):
            problems.append(f"{email}: {response.status_code} {response.content[:200]!r}")
    assert not problems, "\n".join(problems)


def test_forged_or_truncated_confirm_tokens_are_a_400_page(public_client, channel):
    good = opt_in_token("ann@example.com", "r-1")
    other_salt = signing.dumps({"e": "ann@example.com", "r": "r-1"})  # signed, but not as an opt-in link
    tokens = [good[:-1], good[:10], good[: len(good) // 2], good + "x", good.replace(":", ";"), "." + good,
              good.upper(), other_salt, "%00" + good, good + "%00", "x" * 1_000_000, "%ED%A0%80", "%ff%fe",
              "a:b:c:d:e", ":::", "..", ".eJwrzs9LKS1JLS4BAB2pBJg:1v:" + "A" * 43]  # fmt: skip
    problems = []
    for token in tokens:
        response = public_client.get(f"/emails/confirm?token={token}")
        if response.status_code != 400:
            problems.append(f"{token[:60]!r}: {response.status_code} {response.content[:200]!r}")
    response = public_client.get("/emails/confirm?token=a&token=b")
    if response.status_code != 400:
        problems.append(f"two tokens: {response.status_code}")
    assert not problems, "\n".join(problems)
    assert not EmailAddress.objects.filter(consent=True).exists()
    # The real link still works, and once only changes anything.
    assert public_client.get("/emails/confirm", {"token": good}).status_code == 200
    state = EmailAddress.objects.values().get()
    assert public_client.get("/emails/confirm", {"token": good}).status_code == 200
    assert EmailAddress.objects.values().get() == state
    assert CustomerEvent.objects.filter(type="subscription_confirmed").count() == 1


def test_a_repeated_unsubscribe_changes_nothing_twice(public_client, channel):
    email_consent_change(email="ann@example.com", consent=True, type="subscription_imported")
    body = {"email": "Ann@example.com", "campaign": {"id": "c-1", "name": "Sale"}, "message_id": "m-1"}
    assert public_client.post("/emails/unsubscribe", body, format="json").status_code == 200
    state = EmailAddress.objects.values().get()
    count = CustomerEvent.objects.count()
    assert public_client.post("/emails/unsubscribe", body, format="json").status_code == 304
    assert EmailAddress.objects.values().get() == state and CustomerEvent.objects.count() == count


def test_unsubscribe_pages_with_hostile_query_values(public_client):
    problems = []
    for query in ("email=%00", "email=%ED%A0%80", "email=" + "x" * 100_000, "campaign_id=%ff", "subject=<script>",
                  "email=a&email=b", "message_id=%00%00"):  # fmt: skip
        for page in ("/email/unsubscribe.html", "/email/subscribe.html"):
            response = public_client.get(f"{page}?{query}")
            if response.status_code != 200:
                problems.append(f"{page}?{query[:60]}: {response.status_code}")
    assert not problems, "\n".join(problems)


# --- provider feedback webhooks ------------------------------------------------------------------------------

AUTH = {"HTTP_AUTHORIZATION": f"Bearer {WEBHOOK_SECRET}"}


def _brevo(event: str = "hard_bounce", email: str = "ann@example.com", **extra) -> dict:
    now = int(time.time())
    return {"event": event, "email": email, "ts_epoch": now * 1000, "message-id": "<m-1@x>", "subject": "S",
            "reason": "mailbox unavailable", **extra}  # fmt: skip


def _infobip(group: str = "UNDELIVERABLE", *, permanent: bool = True, message_id: str = "ib-1", **extra) -> dict:
    item = {"messageId": message_id, "to": "john@example.com", "doneAt": "2024-09-08T05:27:59.256+0000",
            "status": {"groupName": group, "name": f"{group}_X"},
            "error": {"id": 6034, "name": "EC", "description": "bounce", "permanent": permanent}, **extra}  # fmt: skip
    return {"results": [item]}


def _basic(text: str) -> str:
    return "Basic " + base64.b64encode(text.encode("utf-8", "surrogatepass")).decode()


def test_webhook_secrets_missing_wrong_or_malformed_are_401(public_client, channel):
    headers = [{}, {"HTTP_AUTHORIZATION": ""}, {"HTTP_AUTHORIZATION": "Bearer"}, {"HTTP_AUTHORIZATION": "Bearer x"},
               {"HTTP_AUTHORIZATION": "Bearer " + WEBHOOK_SECRET[:-1]}, {"HTTP_AUTHORIZATION": "Bearer " + LONG},
               {"HTTP_AUTHORIZATION": "Bearer " + WEBHOOK_SECRET + "\x00"}, {"HTTP_AUTHORIZATION": "Basic"},
               {"HTTP_AUTHORIZATION": "Basic %%%"}, {"HTTP_AUTHORIZATION": _basic("\x00:\x00")},
               {"HTTP_AUTHORIZATION": "Basic " + base64.b64encode(b"\xff\xfe:\xff").decode()},
               {"HTTP_AUTHORIZATION": _basic("user:" + WEBHOOK_SECRET[:-1])},
               {"HTTP_AUTHORIZATION": "Basic " + "A" * 100_000}, {"HTTP_AUTHORIZATION": "App \x00"},
               {"HTTP_AUTHORIZATION": "Digest " + WEBHOOK_SECRET}, {"HTTP_X_WEBHOOK_SECRET": ""},
               {"HTTP_X_WEBHOOK_SECRET": "\x00" + WEBHOOK_SECRET}, {"HTTP_X_WEBHOOK_SECRET": "\ud800"},
               {"HTTP_AUTHORIZATION": "Bearer \ud800" + WEBHOOK_SECRET}]  # fmt: skip
    problems = []
    public_client.raise_request_exception = False
    for path in ("/emails/feedback", "/emails/feedback/brevo", "/emails/feedback/infobip"):
        for extra in headers:
            response = _send(public_client, "post", path, _brevo(), **extra)
            why = _problem(response, api=False)
            if why is None and response.status_code != 401:
                why = f"{response.status_code}: not 401"
            if why:
                problems.append(f"{path} {str(extra)[:80]}: {why}")
    assert not problems, "\n".join(problems)
    assert not EmailAddress.objects.exists() and not FeedbackRejection.objects.exists()


FEEDBACK_BAD = [
    ("event", None), ("event", {}), ("event", []), ("event", True), ("event", ""), ("event", "a\x00"),
    ("email", None), ("email", 1), ("email", {}), ("email", "x" * 1000), ("email", "a\x00@b.com"),
    ("email", "not-an-address"), ("message-id", {}), ("message-id", []), ("message-id", True),
    ("message-id", "a\x00"), ("reason", {}), ("reason", ["x"]), ("subject", {}), ("subject", "a\x00"),
    ("tags", "a\x00"), ("tags", [{"a": "\x00"}]), ("\x00", 1),
]  # fmt: skip
INFOBIP_BAD = [
    ("to", None), ("to", 1), ("to", {}), ("to", "x" * 1000), ("to", "a\x00@b.com"), ("messageId", None),
    ("messageId", {}), ("messageId", []), ("messageId", "a\x00"), ("status", None), ("status", "DELIVERED"),
    ("status", []), ("status", {}), ("status", {"groupName": {}}), ("callbackData", "a\x00"),
]  # fmt: skip


def test_hostile_feedback_payloads_are_400_and_change_nothing(public_client, channel):
    cases = [("post", path, _brevo(**{field: value}), (field, "email", "NUL", "required"))
             for path in ("/emails/feedback", "/emails/feedback/brevo") for field, value in FEEDBACK_BAD]  # fmt: skip
    cases += [("post", "/emails/feedback/brevo", [_brevo(), _brevo(**{field: value})], ("[1]", "NUL"))
              for field, value in FEEDBACK_BAD if value is not None]  # fmt: skip
    item = _infobip()["results"][0]
    cases += [("post", "/emails/feedback/infobip", {"results": [{**item, field: value}]}, ("results[0]", "NUL"))
              for field, value in INFOBIP_BAD]  # fmt: skip
    cases += [("post", "/emails/feedback/infobip", {"notificationType": value, "recipient": "a@b.com"},
               ("notificationType", "NUL")) for value in (None, {}, [], "a\x00")]  # fmt: skip
    cases += [("post", "/emails/feedback/infobip", {"notificationType": "COMPLAINED", "recipient": value},
               ("recipient",)) for value in (None, 1, {}, "x" * 1000, "nope")]  # fmt: skip
    cases += [("post", path, None, ("JSON", "body", "expected", "results", "required"), raw)
              for path in ("/emails/feedback/brevo", "/emails/feedback/infobip") for raw in BODIES]  # fmt: skip
    cases += [("post", "/emails/feedback/brevo", None, ("JSON",), _with_surrogate(_brevo(), field))
              for field in ("event", "email", "message-id", "reason")]  # fmt: skip
    cases += [("post", "/emails/feedback/brevo", None, ("JSON",), _with_number(_brevo(), field, number))
              for field in ("ts_epoch", "message-id") for number in NUMBERS]  # fmt: skip
    cases += [("post", "/emails/feedback/brevo", [_brevo()] * 1001, ("1000",)), ("post", "/emails/feedback/brevo", [],
              ("1000",)), ("post", f"/emails/feedback/{'x' * 5000}", _brevo(), ("provider",)),
              ("post", "/emails/feedback/a%00b", _brevo(), ("provider",)),
              ("post", "/emails/feedback/%ED%A0%80", _brevo(), ("provider",)),
              ("post", "/emails/feedback/brevo", "[" * 100_000, ("JSON",))]  # fmt: skip
    problems = _run(public_client, cases, refuse=True, api=False, **AUTH)
    assert not problems, "\n".join(problems)
    feedback_apply()
    assert not EmailAddress.objects.exists()
    assert not CustomerEvent.objects.filter(source__slug="emails").exists()


def _state() -> tuple:
    addresses = list(EmailAddress.objects.order_by("email").values())
    events = sorted(CustomerEvent.objects.filter(source__slug="emails").values_list("type", "idempotency_key"))
    return addresses, events


def test_duplicated_webhooks_change_nothing_twice(public_client, channel):
    email_consent_change(email="cid@example.com", consent=True, type="subscription_imported")
    payloads = [
        ("/emails/feedback/brevo", _brevo("delivered", email="ann@example.com")),
        ("/emails/feedback/brevo", _brevo("hard_bounce", email="bob@example.com")),
        ("/emails/feedback/brevo", _brevo("unsubscribed", email="cid@example.com")),
        ("/emails/feedback/brevo", _brevo("blocked", email="dan@example.com")),
        ("/emails/feedback/brevo", [_brevo("spam", email="eve@example.com"), _brevo("spam", email="eve@example.com")]),
        ("/emails/feedback/brevo", [_brevo("delivered", email="fay@example.com")] * 2),
        ("/emails/feedback/infobip", _infobip("UNDELIVERABLE", permanent=False, message_id="ib-soft")),
        ("/emails/feedback/infobip", _infobip("UNDELIVERABLE", permanent=True, message_id="ib-hard",
                                              to="gus@example.com")),
        ("/emails/feedback/infobip", {"notificationType": "UNSUBSCRIBED", "recipient": "hal@example.com",
                                      "messageId": "x", "sendDateTime": 1_700_000_000_000}),
    ]  # fmt: skip
    for path, body in payloads:
        response = _send(public_client, "post", path, body, **AUTH)
        assert response.status_code == 200, (path, response.content)
    feedback_apply()
    first = _state()
    soft = EmailAddress.objects.get(email="john@example.com").soft_bounces_in_row
    assert soft == 1
    for _ in range(2):
        for path, body in payloads:
            assert _send(public_client, "post", path, body, **AUTH).status_code == 200
        feedback_apply()
    assert _state() == first


def test_webhook_times_out_of_range_are_applied_with_the_time_received(public_client, channel):
    """A provider time the events store refuses (before 1970, after 9999, not a time) is replaced by the time the
    webhook arrived, as a time in the future is: the bounce is applied, not set aside."""
    problems = []
    stamps = [-1, -(10**12), 10**20, 1e308, 0.5, "abc", "", None, [], {}, True, 253402300800]
    for index, stamp in enumerate(stamps):
        email = f"b{index}@example.com"
        response = _send(public_client, "post", "/emails/feedback/brevo",
                         _brevo(email=email, ts_epoch=stamp, **{"message-id": f"<{index}@x>"}), **AUTH)  # fmt: skip
        if response.status_code != 200:
            problems.append(f"ts_epoch={stamp!r}: {response.status_code} {response.content[:200]!r}")
    done_ats = ["0001-01-02T00:00:00Z", "0001-01-01T00:00:00+14:00", "1969-12-31T23:59:59Z", "9999-12-31T23:59:59Z",
                "99999-01-01T00:00:00Z", "garbage", "2025-02-30T00:00:00Z", LONG, 5]  # fmt: skip
    for index, done_at in enumerate(done_ats):
        body = _infobip(message_id=f"ib-{index}", doneAt=done_at, to=f"i{index}@example.com")
        response = _send(public_client, "post", "/emails/feedback/infobip", body, **AUTH)
        if response.status_code != 200:
            problems.append(f"doneAt={done_at!r:.40}: {response.status_code} {response.content[:200]!r}")
    feedback_apply()
    rejected = list(FeedbackRejection.objects.values_list("reason", flat=True))
    if rejected:
        problems.append(f"set aside: {rejected}")
    blocked = set(EmailAddress.objects.filter(blocked=True).values_list("email", flat=True))
    expected = {f"b{i}@example.com" for i in range(len(stamps))} | {f"i{i}@example.com" for i in range(len(done_ats))}
    if blocked != expected:
        problems.append(f"not blocked: {sorted(expected - blocked)}")
    assert not problems, "\n".join(problems)


# --- Segment-compatible ingestion (/v1/*) ----------------------------------------------------------------------


@pytest.fixture
def segment_client() -> Client:
    return Client()


@pytest.fixture
def auth(web_source) -> dict[str, str]:
    return {"HTTP_AUTHORIZATION": basic_auth(web_source.plain_write_key)}


def _track(n: int, **extra) -> dict:
    message = {"type": "track", "event": "Order Completed", "userId": f"u{n}", "messageId": f"msg-{n}",
               "timestamp": "2024-01-01T00:00:00Z", "properties": {"n": n}}  # fmt: skip
    if "originalTimestamp" in extra:
        del message["timestamp"]  # the fallback is read only without a timestamp
    return {**message, **extra}


SEGMENT_BAD = [
    ("type", None), ("type", 1), ("type", {}), ("type", "explode"), ("type", "a\x00"), ("type", LONG),
    ("event", None), ("event", ""), ("event", 1), ("event", {}), ("event", "x" * 129), ("event", "a\x00"),
    ("userId", {}), ("userId", []), ("userId", True), ("userId", None), ("messageId", {}), ("messageId", True),
    ("messageId", "x" * 121), ("messageId", "a\x00"), ("messageId", ""), ("messageId", 1.5),
    ("properties", "x"), ("properties", []), ("properties", {"a": "\x00"}), ("properties", {"\x00": 1}),
    ("properties", {"x": LONG}), ("context", 1), ("context", {"traits": {"email": "a\x00"}}), ("traits", "x"),
    ("integrations", []), *[("timestamp", value) for value in TIMES if value not in ("", None)],
    *[("originalTimestamp", value) for value in TIMES[:5]],  # (with no timestamp: see _track)
]  # fmt: skip


def test_a_segment_batch_keeps_the_good_messages_and_names_each_bad_one(segment_client, auth):
    batch = [_track(0)]
    for index, (field, value) in enumerate(SEGMENT_BAD, start=1):
        batch.append(_track(index, **{field: value}))
    batch += ["text", 1, None, [], {}, _track(len(batch))]
    response = segment_client.post("/v1/batch", json.dumps({"batch": batch}), content_type="application/json", **auth)
    assert response.status_code == 200, response.content[:300]
    body = response.json()
    good = {0, len(batch) - 1}
    rejected = {r["index"]: r["reason"] for r in body["rejected"]}
    problems = [f"{i} {batch[i]!r:.120} accepted" for i in range(len(batch)) if i not in good and i not in rejected]
    problems += [f"{i}: empty reason" for i, reason in rejected.items() if not reason.strip()]
    for index, (field, _) in enumerate(SEGMENT_BAD, start=1):
        reason = rejected.get(index, "")
        if reason and not any(name in reason for name in (field, "payload", "type", "bytes")):
            problems.append(f"{index} {field}: reason names none of it: {reason!r:.120}")
    assert not problems, "\n".join(problems)
    assert body["accepted"] == 2
    stored = sorted(CustomerEvent.objects.values_list("idempotency_key", flat=True))
    assert stored == sorted(["msg-0", batch[-1]["messageId"]])
    again = segment_client.post("/v1/batch", json.dumps({"batch": batch}), content_type="application/json", **auth)
    assert (again.json()["accepted"], again.json()["duplicates"]) == (0, 2)
    assert CustomerEvent.objects.count() == 2


def test_hostile_single_segment_messages_are_4xx_naming_the_problem(segment_client, auth, web_source):
    cases = [("post", "/v1/track", _track(1, **{field: value}), (field, "event", "payload", "message", "type"))
             for field, value in SEGMENT_BAD if field != "type"]  # fmt: skip
    cases += [("post", f"/v1/{path}", None, ("JSON", "body", "object"), raw)
              for path in ("track", "identify", "batch", "t") for raw in BODIES if raw != "{}"]  # fmt: skip
    cases += [("post", "/v1/track", None, ("JSON",), _with_surrogate(_track(1), field))
              for field in ("event", "userId", "messageId", "timestamp", "writeKey")]  # fmt: skip
    cases += [("post", "/v1/track", None, ("JSON",), _with_number(_track(1), field, number))
              for field in ("timestamp", "userId", "messageId") for number in NUMBERS]  # fmt: skip
    cases += [("post", "/v1/batch", {"batch": value}, ("batch",)) for value in (None, {}, "x", 1, [])]
    cases += [("post", "/v1/track", _track(1, writeKey=web_source.plain_write_key), (), raw) for raw in
              [b"\x1f\x8b\x08\x00garbage", b"\xff\xfe\x00{}"]]  # fmt: skip
    problems = _run(segment_client, cases, refuse=True, **auth)
    # Write keys: missing, wrong, malformed, NUL, huge, in the body as a non-string.
    headers = ["", "Basic", "Basic %%%", _basic("\x00:"), _basic("x" * 100_000 + ":"), "Bearer x",
               "Basic " + "A" * 100_001, "Basic " + base64.b64encode(b"\xff\xfe:").decode(),
               _basic(web_source.plain_write_key + "\x00:")]  # fmt: skip
    for header in headers:
        response = _send(segment_client, "post", "/v1/track", _track(1), HTTP_AUTHORIZATION=header)
        why = _problem(response) or (None if response.status_code == 401 else f"{response.status_code}: not 401")
        if why:
            problems.append(f"Authorization {header[:40]!r}: {why}")
    for key in (None, 1, {}, [], "", "\x00", "x" * 10_000, True):
        response = _send(segment_client, "post", "/v1/track", _track(1, writeKey=key))
        why = _problem(response) or (None if response.status_code == 401 else f"{response.status_code}: not 401")
        if why:
            problems.append(f"writeKey {str(key)[:40]!r}: {why}")
    response = _send(segment_client, "post", "/v1/track", _track(1, writeKey=LONG))
    if response.status_code != 413:
        problems.append(f"writeKey of 100,000 characters: {response.status_code}, not 413")
    assert not problems, "\n".join(problems)
    assert not CustomerEvent.objects.exists()


# --- the events REST API -----------------------------------------------------------------------------------------

EVENT_BAD = [
    ("source_id", None), ("source_id", ""), ("source_id", "nope"), ("source_id", HUGE), ("source_id", -1),
    ("source_id", BIGINT_PAST), ("source_id", 1.5), ("source_id", True), ("source_id", {}), ("source_id", []),
    ("source_id", "1\x00"), ("source_id", "web\x00"), ("source_id", LONG), ("source_id", "9" * 5000),
    ("source_id", "²"), ("type", None), ("type", ""), ("type", 1), ("type", {}), ("type", "x" * 129),
    ("type", "a\x00"), ("payload", "x"), ("payload", []), ("payload", None), ("payload", {"a": "\x00"}),
    ("payload", {"\x00": 1}), ("payload", {"x": LONG}), ("message_id", {}), ("message_id", True),
    ("message_id", "x" * 121), ("message_id", "a\x00"), ("message_id", 1.5),
    *[("event_time", value) for value in TIMES if value not in (0, -1)], ("event_time", None),
]  # fmt: skip
EVENT_SURROGATE_FIELDS = ("source_id", "type", "message_id", "event_time")


def _event(web_source, n: int, **fields) -> dict:
    return {"source_id": "web", "type": "page_view", "event_time": "2024-01-01T00:00:00Z", "payload": {"n": n},
            "message_id": f"e-{n}", **fields}  # fmt: skip


def test_an_events_batch_keeps_the_good_ones_and_names_each_bad_one(admin_client, web_source):
    events = [_event(web_source, 0)]
    events += [_event(web_source, i, **{field: value}) for i, (field, value) in enumerate(EVENT_BAD, start=1)]
    events += ["text", 1, None, [], {}, _event(web_source, len(events) + 5, source_id=web_source.pk)]
    body = json.dumps({"events": events})
    for index, field in enumerate(EVENT_SURROGATE_FIELDS, start=len(events)):  # lone surrogates
        body = body[:-2] + ", " + _with_surrogate(_event(web_source, index), field) + "]}"
    total = len(events) + len(EVENT_SURROGATE_FIELDS)
    admin_client.raise_request_exception = False
    response = admin_client.post("/api/events", body, content_type="application/json")
    assert response.status_code == 200, response.content[:300]
    result = response.json()
    rejected = {r["index"]: r["reason"] for r in result["rejected"]}
    good = {0, len(events) - 1}
    problems = [f"{i} accepted" for i in range(total) if i not in good and i not in rejected]
    problems += [f"{i} good but rejected: {rejected[i]}" for i in good if i in rejected]
    for index, (field, _) in enumerate(EVENT_BAD, start=1):
        reason = rejected.get(index, "")
        wanted = {"source_id": ("source", "data source")}.get(field, (field,))
        if reason and not any(name in reason for name in wanted):
            problems.append(f"{index} {field}: reason names none of {wanted}: {reason!r:.120}")
    assert not problems, "\n".join(problems)
    assert sorted(e["index"] for e in result["accepted"]) == sorted(good)
    again = admin_client.post("/api/events", body, content_type="application/json").json()
    assert (len(again["accepted"]), len(again["duplicates"])) == (0, 2)
    assert CustomerEvent.objects.count() == 2


def test_hostile_events_bodies_and_ids_are_4xx(admin_client, web_source):
    cases = [("post", "/api/events", None, (), raw) for raw in BODIES + ['{"events": {}}', '{"events": null}',
                                                                         '{"events": "x"}', "[" * 100_000]]  # fmt: skip
    cases += [("post", "/api/events", None, (), _with_number({"events": []}, "events", n)) for n in NUMBERS]
    cases += [("get", f"/api/events/{pk}", None, ()) for pk in BAD_IDS]
    cases += [("get", f"/api/events?{query}", None, (query.split("=")[0],)) for query in
              ("source=abc", f"source={HUGE}", "source=" + LONG, "type=" + LONG, "event_time_from=99999-01-01",
               "event_time_to=garbage", "limit=-1", "offset=" + "9" * 5000, "type=%ED%A0%80",
               "cursor=%ff")]  # fmt: skip
    problems = _run(admin_client, cases)
    assert not problems, "\n".join(problems)


# --- data sources and export destinations (the loaders' configuration) ------------------------------------------

SOURCE = {"slug": "crm", "name": "CRM", "type": "crm", "description": "d"}
SOURCE_BAD = [
    ("slug", ""), ("slug", "a b"), ("slug", "x" * 65), ("slug", None), ("slug", {}), ("slug", "a\x00"),
    ("slug", "web"), ("slug", "é"), ("name", ""), ("name", None), ("name", LONG), ("name", "a\x00"),
    ("name", {}), ("type", "nope"), ("type", None), ("type", LONG), ("type", "a\x00"), ("description", "a\x00"),
    ("description", {}), ("id", "x"),
]  # fmt: skip


def test_hostile_data_source_payloads_are_400_naming_the_field(admin_client, web_source):
    before = list(DataSource.objects.values())
    url, detail = "/api/data_sources/", f"/api/data_sources/{web_source.pk}"
    cases = [("post", url, {**SOURCE, field: value}, (field,)) for field, value in SOURCE_BAD if field != "id"]
    cases += [("patch", detail, {field: value}, (field,)) for field, value in SOURCE_BAD
              if field not in ("id",) and value != "web"]  # fmt: skip
    for field in ("slug", "name", "type", "description"):
        cases += [("post", url, None, (field,), _with_surrogate(SOURCE, field)),
                  ("patch", detail, None, (field,), _with_surrogate({}, field))]  # fmt: skip
    cases += [(m, u, None, (), raw) for m, u in (("post", url), ("patch", detail)) for raw in BODIES if raw != "{}"]
    cases += [(m, f"/api/data_sources/{pk}{sub}", body, ()) for pk in BAD_IDS
              for m, sub, body in (("get", "", None), ("patch", "", {"name": "x"}), ("delete", "", None),
                                   ("post", "/rotate_write_key", None))]  # fmt: skip
    problems = _run(admin_client, cases, refuse=True)
    assert not problems, "\n".join(problems)
    assert list(DataSource.objects.values()) == before


HOOK = {"url": "https://hooks.example.com/x", "secret": "s" * 20}
DESTINATION = {"name": "Hook", "kind": "webhook", "config": HOOK}


def test_hostile_export_destinations_and_exports_are_4xx(admin_client, admin_user):
    segment = segment_create(owner=admin_user, name="All", conditions=None)
    url = "/api/segment_export_destinations/"
    created = admin_client.post(url, DESTINATION, format="json")
    assert created.status_code == 201, created.content
    detail = f"{url}{created.json()['id']}"
    bad = [("name", ""), ("name", None), ("name", LONG), ("name", "a\x00"), ("name", {}), ("kind", "nope"),
           ("kind", None), ("kind", "a\x00"), ("config", None), ("config", "x"), ("config", []), ("config", 1),
           ("config", {"url": "ftp://x"}), ("config", {"url": LONG}), ("config", {"url": "a\x00"}),
           ("config", {"url": {}}), ("config", {"nope": 1}), ("config", {**HOOK, "\x00": 1}),
           ("config", {**HOOK, "batch_size": HUGE}), ("config", {**HOOK, "batch_size": "9" * 5000}),
           ("config", {**HOOK, "batch_size": 1.5}), ("config", {**HOOK, "attributes": [None]}),
           ("config", {**HOOK, "secret": "a\x00"}), ("mandatory_attributes", "x"),
           ("mandatory_attributes", [None]), ("mandatory_attributes", ["a\x00"]), ("mandatory_attributes", ["nope"]),
           ("mandatory_attributes", [LONG]), ("mandatory_attributes", {})]  # fmt: skip
    cases = [("post", url, {**DESTINATION, "name": "Other", field: value}, (field,)) for field, value in bad]
    cases += [("patch", detail, {field: value}, (field,)) for field, value in bad if field != "kind"]
    cases += [("post", url, None, (f,), _with_surrogate(DESTINATION, f)) for f in ("name", "kind")]
    cases += [("patch", detail, None, ("name",), _with_surrogate({}, "name"))]
    cases += [
        (
            "patch",
            detail,
            None,
            ("mandatory_attributes",),
            json.dumps({"mandatory_attributes": ["PLACEHOLDER"]}).replace("PLACEHOLDER", SURROGATE),
        )
    ]
    cases += [(m, u, None, (), raw) for m, u in (("post", url), ("patch", detail)) for raw in BODIES if raw != "{}"]
    cases += [(m, f"{url}{pk}", None, ()) for pk in BAD_IDS for m in ("get", "delete")]
    exports = [("segment", HUGE), ("segment", -1), ("segment", "abc"), ("segment", 1.5), ("segment", None),
               ("segment", BIGINT_PAST), ("destination", HUGE), ("destination", -1), ("destination", "x"),
               ("destination", 1.5), ("destination", BIGINT_PAST), ("destination", None)]  # fmt: skip
    good_export = {"segment": segment.pk, "destination": created.json()["id"]}
    cases += [("post", "/api/segment_exports/", {**good_export, f: v}, (f, "Segment")) for f, v in exports]
    cases += [("post", "/api/segment_export_schedules/", {**good_export, "frequency": "daily", f: v},
               (f, "Segment")) for f, v in exports]  # fmt: skip
    cases += [("post", "/api/segment_export_schedules/", {**good_export, "frequency": v}, ("frequency", "Segment"))
              for v in ("hourly\x00", "never", None, LONG)]  # fmt: skip
    cases += [("get", f"/api/segment_exports/{pk}{sub}", None, ()) for pk in BAD_IDS for sub in ("", "/download")]
    problems = _run(admin_client, cases, refuse=True)
    assert not problems, "\n".join(problems)


# --- hostile headers, and the WSGI lane the webhooks take in production --------------------------------------


def test_hostile_headers_are_4xx_not_500(public_client, segment_client, auth, channel):
    # (Not "charset=\x00": Django's WSGIRequest raises ValueError building the request, before any of our code; the
    # WSGI servers refuse a NUL in a header anyway.)
    headers = [{"CONTENT_TYPE": "application/json\x00"}, {"CONTENT_TYPE": "text/plain; charset=nope"},
               {"CONTENT_TYPE": "application/xml"}, {"CONTENT_TYPE": "x" * 10_000},
               {"HTTP_CONTENT_ENCODING": "gzip\x00"}, {"HTTP_CONTENT_ENCODING": "br"},
               {"HTTP_CONTENT_ENCODING": "gzip"}, {"HTTP_X_REQUEST_ID": "\x00" * 10},
               {"HTTP_X_REQUEST_ID": "x" * 10_000}, {"HTTP_ORIGIN": "\x00"}, {"CONTENT_LENGTH": "-1"},
               {"CONTENT_LENGTH": "abc"}, {"CONTENT_LENGTH": "1e400"}, {"CONTENT_LENGTH": "9" * 5000},
               {"HTTP_X_FORWARDED_FOR": "\x00, ::1"}]  # fmt: skip
    problems = []
    for client, path, body, extra, api in [
        (segment_client, "/v1/track", _track(1), auth, True),
        (segment_client, "/v1/batch", {"batch": [_track(2)]}, auth, True),
        (public_client, "/emails/feedback/brevo", _brevo("delivered"), AUTH, False),
        (public_client, "/emails/subscribe", {"email": "ann@example.com"}, {}, False),
        (public_client, "/emails/unsubscribe", {"email": "ann@example.com"}, {}, False),
    ]:
        client.raise_request_exception = False
        for header in headers:
            content_type = header.get("CONTENT_TYPE", "application/json")
            others = {k: v for k, v in header.items() if k != "CONTENT_TYPE"}
            response = client.generic("POST", path, json.dumps(body), content_type=content_type, **extra, **others)
            names = ("Content-Length",) if "CONTENT_LENGTH" in header else ()
            why = _problem(response, names, api=api)
            if why is None and names and response.status_code != 400:
                why = f"{response.status_code}: not 400"
            if why:
                problems.append(f"{path} {str(header)[:60]}: {why}")
    assert not problems, "\n".join(problems)


def test_hostile_webhooks_through_the_wsgi_lane(channel):
    from tests.cdp.test_fast_lane import wsgi

    auth = {"HTTP_AUTHORIZATION": f"Bearer {WEBHOOK_SECRET}"}
    body = json.dumps(_brevo("hard_bounce")).encode()
    cases = [
        ({"CONTENT_LENGTH": "-1"}, body), ({"CONTENT_LENGTH": "abc"}, body), ({"CONTENT_LENGTH": ""}, body),
        ({"CONTENT_LENGTH": "9" * 5000}, body), ({"CONTENT_LENGTH": "3"}, body), ({"CONTENT_TYPE": "a\x00"}, body),
        ({"HTTP_X_REQUEST_ID": "\x00"}, body), ({}, b"\xff\xfe"), ({}, b"{" * 100_000), ({}, b""),
        ({"HTTP_AUTHORIZATION": "Bearer \x00"}, body), ({"HTTP_AUTHORIZATION": "Basic \xff"}, body),
        ({"REQUEST_METHOD": "PUT"}, body), ({"HTTP_HOST": "evil.example.com\x00"}, body),
    ]  # fmt: skip
    problems = []
    for path in ("/emails/feedback", "/emails/feedback/infobip"):
        for headers, raw in cases:
            environ = {**auth, **headers}
            method = environ.pop("REQUEST_METHOD", "POST")
            status, _, content = wsgi(path, method=method, body=raw, **environ)
            if status >= 500 or (status >= 400 and b"message" not in content and status != 400):
                problems.append(f"{path} {str(headers)[:60]} {raw[:20]!r}: {status} {content[:200]!r}")
    assert not problems, "\n".join(problems)
    # Replayed through the lane too: one bounce, one block.
    for _ in range(3):
        assert wsgi("/emails/feedback/brevo", method="POST", body=body, **auth)[0] == 200
    feedback_apply()
    assert EmailAddress.objects.get().blocked
    assert sorted(CustomerEvent.objects.values_list("type", flat=True)) == ["email_address_blocked", "email_bounced"]
