"""Public email endpoints (no login): POST /emails/subscribe, POST /emails/unsubscribe, GET /emails/confirm
(the opt-in link), POST /emails/feedback[/brevo|/infobip] (provider webhooks), and the default pages
/email/subscribe.html and /email/unsubscribe.html.

- JSON in and out. Answers: 200 `{"status": "ok", "message": ...}` (+ `subscription_request_id`), 304 (no body)
  for unsubscribing an unknown or not subscribed address, 400 `{"status": <code>, "message": ...}` with the
  seed's codes (`EmailInvalid`, `EmailBlocked`, `EmailAlreadySubscribed`, `error` for "validation: ..."),
  401 for a webhook without the right secret, 405, 413 for bodies over the limit, 429 when rate limited,
  503 `ServiceUnavailable` when the database is down, or the task queue (Redis) when an opt-in email is due
  (with Retry-After).
- CORS: origins in the `public_cors_origins` global setting get Access-Control-Allow-Origin (subscribe and
  unsubscribe; OPTIONS preflights answered). No cookies are used, so no CSRF token is needed.
- Rate limited per client IP (scope "emails"; webhooks have their own scope "emails_feedback", one-click
  unsubscribes "emails_one_click").
"""

from __future__ import annotations

import base64
import binascii
import functools
import logging
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

import orjson
from django.core.exceptions import RequestDataTooBig
from django.db import DatabaseError
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.csrf import csrf_exempt

from cdp.celery import TaskQueueUnavailable
from cdp.http import declared_length
from cdp.ratelimit import EnvironRequest, rate_limit_response, rate_limited
from emails.services.channel import channel_cached, channel_get, webhook_secret_matches
from emails.services.feedback import FeedbackInvalid, feedback_process, feedback_reject
from emails.services.subscriptions import (
    PublicRequestError,
    one_click_campaign_name,
    one_click_load,
    one_click_unsubscribe,
    subscription_confirm,
    subscription_request,
    unsubscribe,
)

logger = logging.getLogger(__name__)

MAX_FORM_BYTES = 16 * 1024
MAX_FEEDBACK_BYTES = 1024 * 1024
ACCEPTED_CONTENT_TYPES = {"", "application/json", "text/plain"}


def _answer(status_code: int, status: str, message: str, **extra: Any) -> JsonResponse:
    return JsonResponse({"status": status, "message": message, **extra}, status=status_code)


def _declared_length(value: object) -> int:
    """The Content-Length header's number of bytes; PublicRequestError 400 when it is not one."""
    declared = declared_length(value)
    if declared is None:
        raise PublicRequestError(400, "error", "validation: the Content-Length header is not a number of bytes")
    return declared


def _read_body(request: HttpRequest, *, limit: int) -> bytes:
    declared = _declared_length(request.META.get("CONTENT_LENGTH"))
    if declared > limit:
        raise PublicRequestError(413, "error", f"validation: the body is over the {limit // 1024} KB limit")
    try:
        data = request.body
    except RequestDataTooBig:
        raise PublicRequestError(413, "error", f"validation: the body is over the {limit // 1024} KB limit") from None
    if len(data) > limit:
        raise PublicRequestError(413, "error", f"validation: the body is over the {limit // 1024} KB limit")
    return data


def _parse_json(request: HttpRequest, data: bytes) -> Any:
    return _parse_json_body(request.content_type or "", data)


def _parse_json_body(content_type: str, data: bytes) -> Any:
    content_type = content_type.lower()
    if content_type not in ACCEPTED_CONTENT_TYPES:
        raise PublicRequestError(400, "error", f"validation: Content-Type {content_type[:60]!r} is not JSON")
    if not data.strip():
        raise PublicRequestError(400, "error", "validation: the body is empty; send a JSON object")
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        raise PublicRequestError(400, "error", "validation: the body is not valid JSON") from None


def _allowed_origins() -> list[str]:
    from cdp.services.global_settings import global_setting_cached

    return list(global_setting_cached("public_cors_origins") or [])


def _public(scope: str, *, methods: tuple[str, ...] = ("POST",), cors: bool = True):
    """Method check, preflight, rate limit, CORS and error answers around a public view."""

    def decorator(view: Callable[[HttpRequest], HttpResponse]) -> Callable[[HttpRequest], HttpResponse]:
        @functools.wraps(view)
        def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            if request.method == "OPTIONS" and cors:
                return HttpResponse(status=204)
            if request.method not in methods:
                response = _answer(405, "error", f"method {request.method} not allowed: use {', '.join(methods)}")
                response["Allow"] = ", ".join(methods + (("OPTIONS",) if cors else ()))
                return response
            try:
                return view(request, *args, **kwargs)
            except PublicRequestError as problem:
                return _answer(problem.status_code, problem.status, problem.message)
            except DatabaseError:
                logger.exception("public email endpoint: database unavailable")
                return _answer(503, "ServiceUnavailable", "Service unavailable.")
            except TaskQueueUnavailable as problem:  # (logged where it was raised)
                response = _answer(503, "ServiceUnavailable", problem.message)
                response["Retry-After"] = str(problem.retry_after)
                return response

        limited = rate_limited(scope)(wrapped)

        @functools.wraps(view)
        def with_cors(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            response = limited(request, *args, **kwargs)
            origin = request.headers.get("Origin")
            if cors and origin:
                try:
                    allowed = origin in _allowed_origins()
                except DatabaseError:
                    allowed = False
                if allowed:
                    response["Access-Control-Allow-Origin"] = origin
                    response["Access-Control-Allow-Methods"] = ", ".join(methods + ("OPTIONS",))
                    response["Access-Control-Allow-Headers"] = "Content-Type"
                    response["Access-Control-Max-Age"] = "86400"
                response["Vary"] = "Origin"
            return response

        return csrf_exempt(with_cors)

    return decorator


def _base_url(request: HttpRequest) -> str:
    return request.build_absolute_uri("/").rstrip("/")


@_public("emails")
def subscribe_view(request: HttpRequest) -> HttpResponse:
    data = _parse_json(request, _read_body(request, limit=MAX_FORM_BYTES))
    outcome = subscription_request(data=data, base_url=_base_url(request))
    return _answer(
        200,
        "ok",
        "Subscription request received; check your inbox to confirm."
        if outcome.opt_in_queued
        else "Subscription request received; a confirmation email was sent recently, check your inbox.",
        subscription_request_id=outcome.subscription_request_id,
    )


@_public("emails")
def unsubscribe_view(request: HttpRequest) -> HttpResponse:
    data = _parse_json(request, _read_body(request, limit=MAX_FORM_BYTES))
    if unsubscribe(data=data):
        return _answer(200, "ok", "Email address unsubscribed")
    return HttpResponse(status=304)


# (Its own rate-limit counter: mailbox providers POST these from a few addresses of theirs, which must not share the
# subscribe forms' count; the tokens are signed, so a flood of forged ones costs a signature check each.)
@_public("emails_one_click", methods=("GET", "POST"), cors=False)
def one_click_view(request: HttpRequest) -> HttpResponse:
    """RFC 8058 one-click unsubscribe: a POST (body `List-Unsubscribe=One-Click`) unsubscribes and answers 200, also
    when the address was unsubscribed already (the mailbox provider only needs to know it is done); a GET never
    unsubscribes (link scanners follow links) and redirects to the unsubscribe page, prefilled."""
    token = request.GET.get("token", "")[:2000]
    if request.method == "POST":
        _read_body(request, limit=MAX_FORM_BYTES)
        one_click_unsubscribe(token=token)
        return _answer(200, "ok", "Email address unsubscribed")
    page = channel_get().unsubscribe_page_url or reverse("emails:unsubscribe-page")
    try:
        click = one_click_load(token=token)
    except PublicRequestError:
        return HttpResponseRedirect(page)
    query = urlencode({"email": click.email, "campaign_id": click.campaign_id,
                       "campaign_name": one_click_campaign_name(click), "message_id": click.message_id})  # fmt: skip
    return HttpResponseRedirect(f"{page}{'&' if '?' in page else '?'}{query}")


@_public("emails", methods=("GET",), cors=False)
def confirm_view(request: HttpRequest) -> HttpResponse:
    token = request.GET.get("token", "")
    try:
        email = subscription_confirm(token=token[:2000])
    except PublicRequestError as problem:
        return render(request, "emails/public/confirmed.html", {"error": problem.message}, status=400)
    redirect_to = channel_get().confirmed_page_url
    if redirect_to:
        response = HttpResponse(status=302)
        response["Location"] = redirect_to
        return response
    return render(request, "emails/public/confirmed.html", {"email": email})


def _webhook_secret(meta: dict) -> str | None:
    """The secret from `Authorization: Bearer <secret>`, basic auth (password, or user name with an empty
    password: Brevo's "https://user:secret@host/..." URLs), or an `X-Webhook-Secret` header."""
    header = meta.get("HTTP_AUTHORIZATION", "").strip()
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer":
        return value.strip()
    if scheme.lower() == "basic":
        try:
            user, _, password = base64.b64decode(value.strip(), validate=True).decode("utf-8").partition(":")
        except (binascii.Error, UnicodeDecodeError, ValueError):
            return None
        return password or user
    if scheme.lower() == "app":  # Infobip's API-key style header
        return value.strip()
    return meta.get("HTTP_X_WEBHOOK_SECRET")


def _json_answer(status_code: int, status: str, message: str, headers: list | None = None, **extra: Any):
    body = orjson.dumps({"status": status, "message": message, **extra})
    return status_code, [("Content-Type", "application/json"), *(headers or [])], body


def _environ_body(environ: dict, limit: int) -> bytes:
    """The request body from the WSGI input: at most `limit` bytes, else PublicRequestError 413."""
    too_big = PublicRequestError(413, "error", f"validation: the body is over the {limit // 1024} KB limit")
    declared = _declared_length(environ.get("CONTENT_LENGTH"))
    if declared > limit:
        raise too_big
    stream = environ.get("wsgi.input")
    data = stream.read(declared if declared else limit + 1) if stream is not None else b""
    if len(data) > limit:
        raise too_big
    return data


def feedback_answer(
    environ: dict, provider: str | None = None, *, body: Callable[[], bytes] | None = None
) -> tuple[int, list[tuple[str, str]], bytes]:
    """(status, headers, body) of POST /emails/feedback[/<provider>] for a WSGI environ. The fast lane
    (cdp.fastlane) calls it for the WSGI server; `feedback_view` wraps it for requests through Django's handler,
    passing `body` (Django may have read the input already)."""
    method = environ.get("REQUEST_METHOD", "")
    if method != "POST":
        return _json_answer(405, "error", f"method {method[:20]} not allowed: use POST", [("Allow", "POST")])
    limited = rate_limit_response(EnvironRequest(environ), scope="emails_feedback")
    if limited is not None:
        return (
            limited.status_code,
            [("Content-Type", "application/json"), ("Retry-After", limited["Retry-After"])],
            (limited.content),
        )
    try:
        return _feedback(environ, provider, body or (lambda: _environ_body(environ, MAX_FEEDBACK_BYTES)))
    except PublicRequestError as problem:
        return _json_answer(problem.status_code, problem.status, problem.message)
    except DatabaseError:
        logger.exception("public email endpoint: database unavailable")
        return _json_answer(503, "ServiceUnavailable", "Service unavailable.")


def _feedback(environ: dict, provider: str | None, read_body: Callable[[], bytes]):
    channel = channel_cached()
    if not webhook_secret_matches(channel, _webhook_secret(environ)):
        return _json_answer(401, "Unauthorized", "missing or wrong webhook secret",
                            [("WWW-Authenticate", 'Basic realm="emails feedback"')])  # fmt: skip
    provider = provider or channel.webhook_provider
    content_type = environ.get("CONTENT_TYPE", "").split(";", 1)[0].strip()
    try:
        data = read_body()
    except PublicRequestError as problem:
        feedback_reject(provider=provider, reason=problem.message, body=b"", content_type=content_type)
        raise
    try:
        parsed = _parse_json_body(content_type, data)
        result = feedback_process(provider=provider, body=parsed)
    except (PublicRequestError, FeedbackInvalid) as problem:
        reason = problem.message if isinstance(problem, PublicRequestError) else f"validation: {problem}"
        feedback_reject(provider=provider, reason=reason, body=data, content_type=content_type)
        return _json_answer(400, "error", reason)
    return _json_answer(200, "ok", "Feedback received", received=result.received, queued=result.queued)


@csrf_exempt
def feedback_view(request: HttpRequest, provider: str | None = None) -> HttpResponse:
    """Provider webhooks through Django's handler (the test client, another server): the fast lane's answer."""

    def body() -> bytes:
        return _read_body(request, limit=MAX_FEEDBACK_BYTES)

    status, headers, content = feedback_answer(request.META, provider, body=body)
    response = HttpResponse(content, status=status)
    for name, value in headers:
        response[name] = value
    return response


feedback_view.wsgi_answer = feedback_answer


# The default pages work without JavaScript too: their forms POST to the page itself (form-encoded), which calls the
# same service as the JSON endpoint and shows the outcome, or the error under the field; with JavaScript the form is
# sent to the JSON endpoint instead and the page does not reload.
PAGE_SUCCESS = {
    "subscribe": "Thank you! Check your inbox and open the link in our email to confirm your subscription.",
    "unsubscribed": "You have been unsubscribed. You will not receive our emails any more.",
    "not subscribed": "This address is not subscribed: you will not receive our emails.",
}


def _subscribe_form(request: HttpRequest, form: dict[str, str]) -> str:
    subscription_request(data={"email": form["email"], "subscription_source": form["subscription_source"] or None},
                         base_url=_base_url(request))  # fmt: skip
    return PAGE_SUCCESS["subscribe"]


def _unsubscribe_form(request: HttpRequest, form: dict[str, str]) -> str:
    data: dict[str, Any] = {"email": form["email"], "unsubscribe_source": "unsubscribe page"}
    if form["campaign_id"] and form["campaign_name"]:
        data["campaign"] = {"id": form["campaign_id"], "name": form["campaign_name"]}
    for name in ("subject", "message_id"):
        if form[name]:
            data[name] = form[name]
    return PAGE_SUCCESS["unsubscribed" if unsubscribe(data=data) else "not subscribed"]


@rate_limited("emails")
def _page_submit(request: HttpRequest, template: str, fields: tuple[str, ...], submit) -> HttpResponse:
    values: dict[str, str] = {name: "" for name in fields}
    try:
        _read_body(request, limit=MAX_FORM_BYTES)
        form = {name: request.POST.get(name, "").strip() for name in fields}
        values.update({name: value[:500] for name, value in form.items()})
        done = submit(request, form)
    except PublicRequestError as problem:
        return render(request, template, {"values": values, "error": problem.message}, status=problem.status_code)
    except DatabaseError:
        logger.exception("public email page: database unavailable")
        return render(request, template, {"values": values, "error": "Service unavailable."}, status=503)
    return render(request, template, {"values": values, "done": done})


def _page(template: str, fields: tuple[str, ...], submit) -> Callable[[HttpRequest], HttpResponse]:
    @csrf_exempt  # (no cookies, no session: like the JSON endpoints)
    def view(request: HttpRequest) -> HttpResponse:
        if request.method == "POST":
            return _page_submit(request, template, fields, submit)
        if request.method not in {"GET", "HEAD"}:
            return HttpResponse(status=405, headers={"Allow": "GET, HEAD, POST"})
        values = {name: request.GET.get(name, "")[:500] for name in fields}
        return render(request, template, {"values": values})

    return view


subscribe_page = _page("emails/public/subscribe.html", ("email", "subscription_source"), _subscribe_form)
unsubscribe_page = _page(
    "emails/public/unsubscribe.html", ("email", "campaign_id", "campaign_name", "subject", "message_id"),
    _unsubscribe_form,
)  # fmt: skip
