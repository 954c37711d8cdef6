"""Local HTTP servers that speak the destinations' real request / response shapes (REFERENCES.md, Destinations).

Each fake binds 127.0.0.1 on a free port, records every request, and can be told to answer the next requests
with scripted failures (`fake.fail_next(429, {"Retry-After": "7"}, body)`) before behaving normally.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from loaders.webhook import signature_verify


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


@dataclass
class Answer:
    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)


class FakeServer:
    """Subclasses implement `handle(request) -> Answer`."""

    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self.scripted: list[Answer] = []
        self.lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def _any(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                parts = urlsplit(self.path)
                recorded = Recorded(
                    self.command,
                    parts.path,
                    parse_qs(parts.query),
                    {k.lower(): v for k, v in self.headers.items()},
                    body,
                )
                with fake.lock:
                    fake.requests.append(recorded)
                    answer = fake.scripted.pop(0) if fake.scripted else None
                if answer is None:
                    answer = fake.handle(recorded)
                payload = answer.body
                data = (
                    payload
                    if isinstance(payload, bytes)
                    else json.dumps(payload).encode()
                    if payload is not None
                    else b""
                )
                self.send_response(answer.status)
                self.send_header("Content-Type", "application/json")
                for key, value in answer.headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _any

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> FakeServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def fail_next(self, status: int, headers: dict[str, str] | None = None, body: Any = None) -> None:
        with self.lock:
            self.scripted.append(Answer(status, body, headers or {}))

    def handle(self, request: Recorded) -> Answer:
        raise NotImplementedError


HEX64 = re.compile(r"[0-9a-f]{64}")
DIGITS = re.compile(r"[0-9]{1,18}")


class FakePinterest(FakeServer):
    """Pinterest Ads API v5: customer lists (records = ONE comma-separated string) and audiences."""

    def __init__(self, token: str = "pinterest-token-secret") -> None:  # noqa: S107
        super().__init__()
        self.token = token
        self.lists: dict[str, set[str]] = {}
        self.audiences: dict[str, dict[str, Any]] = {}
        self.next_id = 549_755_885_175

    def _id(self) -> str:
        self.next_id += 1
        return str(self.next_id)

    def handle(self, request: Recorded) -> Answer:
        if request.headers.get("authorization") != f"Bearer {self.token}":
            return Answer(401, {"code": 2, "message": "Authentication failed."})
        match = re.fullmatch(r"/v5/ad_accounts/([^/]+)(/.*)", request.path)
        if not match or not DIGITS.fullmatch(match.group(1)):
            return Answer(400, {"code": 1, "message": "Invalid ad_account_id"})
        path = match.group(2)
        body = request.json() or {}
        if request.method == "POST" and path == "/customer_lists":
            if not isinstance(body.get("records"), str) or not body.get("name"):
                return Answer(400, {"code": 1, "message": "records must be a string"})
            list_id = self._id()
            self.lists[list_id] = set(body["records"].split(","))
            return Answer(200, {"id": list_id, "name": body["name"], "num_batches": 1, "type": "customerlist"})
        if request.method == "PATCH" and path.startswith("/customer_lists/"):
            list_id = path.rsplit("/", 1)[1]
            if list_id not in self.lists:
                return Answer(404, {"code": 2601, "message": "Customer list not found."})
            if body.get("operation_type") not in {"ADD", "REMOVE"} or not isinstance(body.get("records"), str):
                return Answer(400, {"code": 1, "message": "Invalid operation_type"})
            records = set(body["records"].split(","))
            if body["operation_type"] == "ADD":
                self.lists[list_id] |= records
            else:
                self.lists[list_id] -= records
            return Answer(200, {"id": list_id, "num_batches": 2})
        if request.method == "POST" and path == "/audiences":
            list_id = (body.get("rule") or {}).get("customer_list_id")
            if body.get("audience_type") != "CUSTOMER_LIST" or list_id not in self.lists:
                return Answer(400, {"code": 1, "message": "Invalid audience rule"})
            audience_id = self._id()
            self.audiences[audience_id] = {
                "id": audience_id,
                "name": body["name"],
                "rule": {"customer_list_id": list_id},
            }
            return Answer(200, self.audiences[audience_id])
        if path.startswith("/audiences/"):
            audience_id = path.rsplit("/", 1)[1]
            if audience_id not in self.audiences:
                return Answer(404, {"code": 2541, "message": "Audience not found."})
            if request.method == "GET":
                return Answer(200, self.audiences[audience_id])
            if request.method == "PATCH":
                list_id = (body.get("rule") or {}).get("customer_list_id")
                if list_id not in self.lists:
                    return Answer(400, {"code": 1, "message": "Invalid customer_list_id"})
                self.audiences[audience_id]["rule"] = {"customer_list_id": list_id}
                return Answer(200, self.audiences[audience_id])
        return Answer(404, {"code": 404, "message": "Not found"})

    def audience_members(self, audience_id: str) -> set[str]:
        return self.lists[self.audiences[audience_id]["rule"]["customer_list_id"]]


class FakeCustomerIo(FakeServer):
    """Customer.io Track API v2 batch: basic auth site_id:api_key, 207 with per-index errors."""

    def __init__(self, site_id: str = "site-1", api_key: str = "cio-api-key-secret") -> None:  # noqa: S107
        super().__init__()
        self.credentials = base64.b64encode(f"{site_id}:{api_key}".encode()).decode()
        self.people: dict[str, dict[str, Any]] = {}

    def handle(self, request: Recorded) -> Answer:
        if request.headers.get("authorization") != f"Basic {self.credentials}":
            return Answer(401, {"meta": {"error": "Unauthorized request"}})
        if request.method != "POST" or request.path != "/api/v2/batch":
            return Answer(404, {"meta": {"error": "not found"}})
        if len(request.body) > 500 * 1024:
            return Answer(413, {"meta": {"error": "request too large, max 500kb"}})
        errors = []
        for index, item in enumerate((request.json() or {}).get("batch") or []):
            person_id = (item.get("identifiers") or {}).get("id")
            attributes = item.get("attributes") or {}
            if not person_id:
                errors.append(
                    {"batch_index": index, "reason": "required", "field": "identifiers", "message": "missing"}
                )
                continue
            if "email" in attributes and "@" not in str(attributes["email"]):
                errors.append({"batch_index": index, "reason": "invalid", "field": "email", "message": "invalid email"})
                continue
            self.people.setdefault(person_id, {}).update(attributes)
        if errors:
            return Answer(207, {"errors": errors})
        return Answer(200, {})


class FakeMetaGraph(FakeServer):
    """Meta Conversions API: POST /{version}/{pixel}/events?access_token=; one invalid event rejects the batch."""

    def __init__(self, token: str = "meta-access-token-secret", pixels: tuple[str, ...] = ()) -> None:  # noqa: S107
        super().__init__()
        self.token = token
        self.pixels = pixels  # the pixels that exist (empty: any)
        self.events: dict[tuple[str, str], dict[str, Any]] = {}  # (event_name, event_id) → event: Meta's dedup

    def handle(self, request: Recorded) -> Answer:
        if request.query.get("access_token") != [self.token]:
            return Answer(
                400,
                {
                    "error": {
                        "message": "Invalid OAuth access token - Cannot parse access token",
                        "type": "OAuthException",
                        "code": 190,
                        "fbtrace_id": "AbC",
                    }
                },
            )
        pixel = request.path.strip("/").split("/")[1] if request.path.count("/") >= 2 else ""
        if self.pixels and pixel not in self.pixels:
            message = (
                f"Unsupported post request. Object with ID '{pixel}' does not exist, cannot be loaded due to missing "
                "permissions, or does not support this operation."
            )
            error = {"message": message, "type": "GraphMethodException", "code": 100, "error_subcode": 33}
            return Answer(400, {"error": {**error, "fbtrace_id": "AbC"}})
        body = request.json() or {}
        data = body.get("data")
        if not isinstance(data, list) or not 1 <= len(data) <= 1000:
            return Answer(400, {"error": {"message": "Invalid parameter", "type": "OAuthException", "code": 100}})
        for event in data:
            problem = self._problem(event)
            if problem:
                return Answer(
                    400,
                    {
                        "error": {
                            "message": "Invalid parameter",
                            "type": "OAuthException",
                            "code": 100,
                            "error_subcode": 2804003,
                            "error_user_msg": problem,
                            "fbtrace_id": "AbC",
                        }
                    },
                )
        for event in data:
            self.events[(event["event_name"], event["event_id"])] = {
                **event,
                "test_event_code": body.get("test_event_code"),
            }
        return Answer(200, {"events_received": len(data), "messages": [], "fbtrace_id": "AbC"})

    def _problem(self, event: dict[str, Any]) -> str | None:
        if not event.get("event_name") or not event.get("action_source"):
            return "event_name and action_source are required"
        if not isinstance(event.get("event_time"), int) or event["event_time"] < time.time() - 7 * 86400:
            return "The timestamp for this event is too far in the past."
        user = event.get("user_data") or {}
        for key in ("em", "ph", "external_id"):
            for value in user.get(key) or []:
                if not HEX64.fullmatch(value):
                    return f"user_data.{key} must be SHA256 hashed"
        if event.get("custom_data", {}).get("value") == -1:
            return "custom_data.value must not be negative"
        return None


class FakeWebhookReceiver(FakeServer):
    def __init__(self, secret: str = "webhook-shared-secret") -> None:  # noqa: S107
        super().__init__()
        self.secret = secret
        self.batches: list[dict[str, Any]] = []

    def handle(self, request: Recorded) -> Answer:
        if not signature_verify(
            self.secret,
            request.headers.get("x-cdp-timestamp", ""),
            request.body,
            request.headers.get("x-cdp-signature", ""),
        ):
            return Answer(401, {"message": "bad signature"})
        self.batches.append(request.json())
        return Answer(202, {"ok": True})


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()
