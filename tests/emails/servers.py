"""Local servers the email tests talk to: a real SMTP server (aiosmtpd) and small HTTP servers speaking the
Brevo and Infobip send APIs. All bind 127.0.0.1 on a free port."""

from __future__ import annotations

import email
import email.policy
import json
import socket
import threading
import time
from dataclasses import dataclass, field
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult


@dataclass
class SmtpInbox:
    messages: list[EmailMessage] = field(default_factory=list)

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's hook name
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        message["X-Envelope-To"] = ", ".join(envelope.rcpt_tos)
        self.messages.append(message)
        return "250 Message accepted for delivery"

    def wait_for(self, count: int, timeout: float = 15.0) -> list[EmailMessage]:
        deadline = time.monotonic() + timeout
        while len(self.messages) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        return self.messages

    def to(self, address: str) -> list[EmailMessage]:
        return [m for m in self.messages if address in m["X-Envelope-To"]]


def free_port() -> int:
    """A port free right now (aiosmtpd's controller cannot bind port 0: it connects to its port to check)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class SmtpServer:
    """`require_auth=(user, password)`: AUTH is required (no TLS on loopback) and only that login accepted."""

    def __init__(self, *, require_auth: tuple[str, str] | None = None) -> None:
        self.inbox = SmtpInbox()
        auth = {}
        if require_auth is not None:
            expected = (require_auth[0].encode(), require_auth[1].encode())

            def authenticator(server, session, envelope, mechanism, auth_data) -> AuthResult:
                return AuthResult(success=(auth_data.login, auth_data.password) == expected, handled=False)

            auth = {"auth_required": True, "auth_require_tls": False, "authenticator": authenticator}
        self.controller = Controller(self.inbox, hostname="127.0.0.1", port=free_port(), **auth)

    def start(self) -> SmtpServer:
        self.controller.start()
        return self

    def __enter__(self) -> SmtpServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        return self.controller.port

    def stop(self) -> None:
        self.controller.stop()


def body_text(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("plain", "html"))
    return part.get_content() if part is not None else ""


@dataclass
class ApiCall:
    path: str
    headers: dict[str, str]
    body: bytes
    json: Any = None
    form: dict[str, list[str]] = field(default_factory=dict)


class FakeProviderApi:
    """Brevo (`POST /v3/smtp/email`, JSON, `api-key`) and Infobip (`POST /email/3/send`, multipart,
    `Authorization: App`) as far as sending goes. `fail_next` queues status codes to answer first (429, 500)."""

    def __init__(self, *, api_key: str) -> None:
        self.api_key = api_key
        self.calls: list[ApiCall] = []
        self.fail_next: list[int] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                call = ApiCall(self.path, {k.lower(): v for k, v in self.headers.items()}, raw)
                outer.calls.append(call)
                if outer.fail_next:
                    code = outer.fail_next.pop(0)
                    self._send(code, {"code": "too_many_requests" if code == 429 else "error", "message": "fail"},
                               {"x-sib-ratelimit-reset": "0", "Retry-After": "0"})  # fmt: skip
                    return
                if self.path.endswith("/smtp/email"):
                    if call.headers.get("api-key") != outer.api_key:
                        self._send(401, {"code": "unauthorized", "message": "Key not found"})
                        return
                    call.json = json.loads(raw)
                    self._send(201, {"messageId": f"<{len(outer.calls)}.brevo@smtp-relay.example>"})
                elif self.path.endswith("/email/3/send"):
                    if call.headers.get("authorization") != f"App {outer.api_key}":
                        self._send(401, {"requestError": {"serviceException": {"messageId": "UNAUTHORIZED"}}})
                        return
                    call.form = _multipart(raw, call.headers.get("content-type", ""))
                    to = call.form.get("to", [""])[0]
                    self._send(200, {"bulkId": "bulk-1", "messages": [
                        {"to": to, "messageId": f"ib-{len(outer.calls)}",
                         "status": {"groupId": 1, "groupName": "PENDING", "id": 26,
                                    "name": "PENDING_ACCEPTED", "description": "Message accepted"}}]})  # fmt: skip
                else:
                    self._send(404, {"message": "not found"})

            def _send(self, code: int, body: Any, headers: dict[str, str] | None = None) -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def start(self) -> FakeProviderApi:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _multipart(raw: bytes, content_type: str) -> dict[str, list[str]]:
    message = email.message_from_bytes(
        f"Content-Type: {content_type}\r\n\r\n".encode() + raw, policy=email.policy.default
    )
    fields: dict[str, list[str]] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        fields.setdefault(name, []).append(part.get_payload(decode=True).decode())
    return fields
