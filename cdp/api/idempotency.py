"""`Idempotency-Key` on the API's POST requests, as Stripe and the IETF draft of the header define it.

A client that retries a POST after a timeout or a dropped connection cannot tell whether the first one was done; sent
with the same `Idempotency-Key` header, the retry gets the first response again (with `Idempotent-Replayed: true`)
and nothing is created, sent or started twice. Keys belong to the authenticated user and are kept for
settings.CDP_IDEMPOTENCY_TTL_HOURS. The same key with another request (method, path, query or body) is a 422; a
retry arriving while the first is still running is a 409. Only successful (2xx) responses are kept: a refused
request changed nothing, so its retry runs again. A POST without the header behaves as before.

The key is claimed (a committed row) before the view runs and its response saved after the view's own commits: a
process killed between the two leaves the claim, which a retry finds for cdp.services.idempotency.LEASE (409), then
takes over and runs the request again. Checks made inside a view (a segment's ACL) are not made again on a replay:
the retry sees the answer its user already got.
"""

import logging
import re

from django.http import HttpResponse
from drf_spectacular import openapi
from drf_spectacular.plumbing import ResolvedComponent
from drf_spectacular.utils import OpenApiParameter
from rest_framework import status
from rest_framework.exceptions import APIException, ValidationError
from rest_framework.permissions import IsAuthenticated

from cdp.api.permissions import HasFeature
from cdp.services import idempotency as services
from cdp.services.secrets import SecretUnreadable

logger = logging.getLogger(__name__)

HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
KEY_MAX_LENGTH = 255
# Printable ASCII, no leading or trailing space (a UUID, a hash, "order-1234-create"...).
_KEY = re.compile(r"[\x21-\x7e](?:[\x20-\x7e]*[\x21-\x7e])?")

PARAMETER = OpenApiParameter(
    HEADER,
    str,
    OpenApiParameter.HEADER,
    description=(
        "A unique value per operation (e.g. a UUID; at most 255 printable ASCII characters, bare or in quotes). "
        "A retry with the same key within CDP_IDEMPOTENCY_TTL_HOURS (24 by default) gets the first response "
        "again, with `Idempotent-Replayed: true`, and nothing is done twice; the same key with another request "
        "is a 422, a retry while the first still runs a 409."
    ),
)


class KeyInUse(APIException):
    status_code = status.HTTP_409_CONFLICT
    default_detail = f"A request with this {HEADER} is still being processed; retry it once that one has finished."
    default_code = "idempotency_key_in_use"


class KeyReused(APIException):
    status_code = status.HTTP_422_UNPROCESSABLE_ENTITY
    default_detail = (
        f"This {HEADER} was already used for another request (method, path or body differ); use a new key for a "
        "new request."
    )
    default_code = "idempotency_key_reused"


class KeyUnreadable(APIException):
    status_code = status.HTTP_409_CONFLICT
    default_detail = (
        f"The first response to this {HEADER} can no longer be read (the server's secret key changed). Check "
        "whether the first request was done before sending it again with a new key."
    )
    default_code = "idempotency_key_unreadable"


class _Replay(Exception):
    def __init__(self, response: HttpResponse) -> None:
        self.response = response


def key_of(header: str) -> str:
    """The key of the header's value: bare, or a structured-field string ("...") as the IETF draft writes it."""
    key = header[1:-1] if len(header) >= 2 and header[0] == header[-1] == '"' else header
    if not key:
        raise ValidationError({HEADER: ["The key is empty."]})
    if len(key) > KEY_MAX_LENGTH:
        raise ValidationError({HEADER: [f"At most {KEY_MAX_LENGTH} characters; got {len(key)}."]})
    if not _KEY.fullmatch(key):
        raise ValidationError({HEADER: ["Only printable ASCII characters, with no space at either end."]})
    return key


class IdempotentPostMixin:
    """For DRF views: a POST with an Idempotency-Key header is done once per key and user (see the module)."""

    idempotency_claim: services.Claim | None = None

    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)  # authentication, permissions, throttles
        header = request.META.get("HTTP_IDEMPOTENCY_KEY") if request.method == "POST" else None
        if header is None or not request.user.is_authenticated:
            return
        key = key_of(header)
        # The parsed body (a body the view could not parse is its usual 400, before any claim).
        fingerprint = services.request_fingerprint(
            method=request.method, path=request.path, query=request.META.get("QUERY_STRING", ""), data=request.data
        )
        outcome, found = services.idempotent_request_claim(user_id=request.user.pk, key=key, fingerprint=fingerprint)
        if outcome is services.Outcome.CLAIMED:
            self.idempotency_claim = found
            return
        if found is not None and found.fingerprint != fingerprint:
            if outcome is services.Outcome.DONE and not services.idempotent_response_readable(saved=found):
                raise KeyUnreadable()  # (the fingerprint's key changed with the encryption key)
            raise KeyReused()
        if outcome is services.Outcome.RUNNING:
            raise KeyInUse()
        try:
            content = services.idempotent_response_content(saved=found)
        except SecretUnreadable:
            raise KeyUnreadable() from None
        response = HttpResponse(content, status=found.status_code)
        if found.content_type:
            response["Content-Type"] = found.content_type
        else:
            del response["Content-Type"]
        if found.location:
            response["Location"] = found.location
        response[REPLAYED_HEADER] = "true"
        raise _Replay(response)

    def handle_exception(self, exc):
        if isinstance(exc, _Replay):
            return exc.response
        return super().handle_exception(exc)

    def finalize_response(self, request, response, *args, **kwargs):
        response = super().finalize_response(request, response, *args, **kwargs)
        claim = self.idempotency_claim
        if claim is not None and status.is_success(response.status_code) and not response.streaming:
            if hasattr(response, "render"):
                response.render()
            try:
                services.idempotent_response_save(
                    claim=claim,
                    status_code=response.status_code,
                    content_type=response.get("Content-Type", ""),
                    location=response.get("Location", ""),
                    content=response.content,
                )
                self.idempotency_claim = None  # saved: nothing to give back
            except Exception:  # the work is done: answer it; the claim stays until LEASE, then a retry redoes it
                logger.exception("idempotency: the response could not be saved")
                self.idempotency_claim = None
        return response

    def dispatch(self, request, *args, **kwargs):
        try:
            return super().dispatch(request, *args, **kwargs)
        finally:
            claim, self.idempotency_claim = self.idempotency_claim, None
            if claim is not None:
                try:
                    services.idempotent_claim_release(claim=claim)
                except Exception:  # the claim then ends with LEASE
                    logger.exception("idempotency: the claim could not be given back")


ERROR_SCHEMA = {
    "type": "object",
    "description": "Every error answer: `message` says what was wrong; `errors` lists the messages per field of bad "
    "input (`message` is the first of them, prefixed by its field). Some 404s add fields, see the operation.",
    "properties": {
        "status": {"type": "string", "enum": ["error"]},
        "message": {"type": "string"},
        "errors": {"type": "object", "additionalProperties": {"type": "array", "items": {"type": "string"}}},
    },
    "required": ["status", "message"],
}
ERROR_ANSWERS = {
    "400": "Bad input: a parameter, a header or a field of the body (named in `message` and `errors`).",
    "401": "No token, or an invalid, expired or revoked one.",
    "403": "The user's role lacks the feature this operation needs (named in `message`).",
    "404": "No such object.",
    "413": "The body is over CDP_MAX_REQUEST_BYTES (also once a gzip body is decompressed).",
    "415": "The body is not JSON, or its Content-Encoding is not gzip.",
    "409": f"A request with this {HEADER} is still running (or its server died under 5 minutes ago): retry later.",
    "422": f"This {HEADER} was used for another request (method, path, query or body): use a new key.",
}


class AutoSchema(openapi.AutoSchema):
    """drf-spectacular's, documenting the Idempotency-Key header on the POST operations that take it, and the error
    answers every operation can give, with their one JSON shape (a client's generated code reads them too)."""

    def get_override_parameters(self):
        parameters = super().get_override_parameters()
        if self.method == "POST" and isinstance(self.view, IdempotentPostMixin):
            parameters = [*parameters, PARAMETER]
        return parameters

    def get_operation(self, path, path_regex, path_prefix, method, registry):
        operation = super().get_operation(path, path_regex, path_prefix, method, registry)
        if operation is None:
            return None
        component = ResolvedComponent(name="Error", type=ResolvedComponent.SCHEMA, object="Error", schema=ERROR_SCHEMA)
        registry.register_on_missing(component)
        has_body = "requestBody" in operation
        has_query = any(parameter.get("in") == "query" for parameter in operation.get("parameters", []))
        idempotent = self.method == "POST" and isinstance(self.view, IdempotentPostMixin)
        # A bad Idempotency-Key header is a 400 too, also on a POST that takes no body and no query.
        codes = ["400"] if has_body or has_query or idempotent else []
        if has_body:
            codes += ["413", "415"]
        if idempotent:
            codes += ["409", "422"]
        permissions = self.view.get_permissions()
        if any(isinstance(permission, IsAuthenticated) for permission in permissions):
            codes.append("401")
        features = [getattr(self.view, name, None) for name in ("read_feature", "write_feature", "feature_by_action")]
        if any(isinstance(permission, HasFeature) for permission in permissions) and any(features):
            codes.append("403")
        if "{" in path:
            codes.append("404")
        content = {"application/json": {"schema": component.ref}}
        responses = operation.setdefault("responses", {})
        for code in codes:
            responses.setdefault(code, {"description": ERROR_ANSWERS[code]})
        refusal = getattr(self.view, "delete_refusal", "")
        if method == "DELETE" and refusal:
            responses.setdefault("400", {"description": refusal})
        for code, answer in responses.items():
            if code.startswith(("4", "5")):  # the ones an operation declares itself have the one shape too
                answer.setdefault("content", content)
        operation["responses"] = dict(sorted(responses.items()))
        return operation
