"""The email channel's tasks on a real worker: what its logs say about them."""

from __future__ import annotations

import json
import re
import time

import pytest

from emails.services.channel import channel_update
from tests.emails.servers import free_port

OPT_IN_RECEIVED = re.compile(r"Task emails\.tasks\.opt_in_email_send\[[0-9a-f-]+\] received$")


@pytest.fixture
def json_worker_logs(monkeypatch):
    """Workers started after this log JSON lines (production's default), which carry a task's arguments."""
    monkeypatch.setenv("LOG_FORMAT", "json")


def _lines(log: str) -> list[dict]:
    return [json.loads(line) for line in log.splitlines() if line.startswith("{")]


@pytest.mark.worker
def test_the_opt_in_task_logs_no_email_address_even_on_retry(json_worker_logs, celery_worker_process, public_client):
    """The worker logged `"args": "('ann.private@example.com', ...)"` when it received, retried and finished the
    opt-in task: personal data in the logs. The address is now '<redacted>', on the retried message too."""
    channel_update(
        provider="smtp",
        sender_email="news@shop.example.com",
        smtp_host="127.0.0.1",
        smtp_port=free_port(),
        smtp_security="none",
        public_base_url="http://shop.example.com",
    )  # fmt: skip  (nothing listens: a transient error, the task retries)

    response = public_client.post("/emails/subscribe", {"email": "ann.private@example.com"}, format="json")
    assert response.status_code == 200

    worker = celery_worker_process.first
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        received = [line for line in _lines(worker.log()) if OPT_IN_RECEIVED.match(line["message"])]
        if len(received) >= 2:  # the first delivery and its retry (held by the worker until its countdown)
            break
        time.sleep(0.2)
    log = worker.log()
    assert len(received) >= 2, log
    assert "retry" in log.lower()
    assert "ann.private" not in log
    assert all(line["data"]["args"].startswith("('<redacted>', ") for line in received), received


@pytest.mark.django_db
def test_an_opt_in_email_the_channel_cannot_send_is_a_warning(
    public_client, caplog, django_capture_on_commit_callbacks
):
    """A permanent failure (no sender address) was only the task's INFO 'succeeded' line: nobody noticed that no
    subscriber got a confirmation link. It is a warning now, naming the request (not the address)."""
    import logging

    channel_update(provider="smtp", sender_email="", smtp_host="127.0.0.1", smtp_port=free_port())

    with caplog.at_level(logging.WARNING, logger="emails.tasks"), django_capture_on_commit_callbacks(execute=True):
        response = public_client.post("/emails/subscribe", {"email": "ann.private@example.com"}, format="json")

    assert response.status_code == 200
    [record] = [r for r in caplog.records if r.name == "emails.tasks"]
    request_id = response.json()["subscription_request_id"]
    assert record.getMessage() == (
        f"opt-in email for request {request_id} not sent: the email channel has no sender address configured"
    )


@pytest.mark.worker
def test_a_tasks_log_lines_carry_the_request_id_of_the_request_that_sent_it(
    json_worker_logs, celery_worker_process, public_client
):
    """Worker log lines all had request_id "-": a client's X-Request-ID led to the web's lines only, not to what
    its request started in the background."""
    channel_update(provider="smtp", sender_email="", smtp_host="127.0.0.1", smtp_port=free_port())

    response = public_client.post(
        "/emails/subscribe", {"email": "ann.private@example.com"}, format="json", HTTP_X_REQUEST_ID="client-req-77"
    )
    assert response.status_code == 200

    worker = celery_worker_process.first
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        warnings = [line for line in _lines(worker.log()) if line["logger"] == "emails.tasks"]
        if warnings:
            break
        time.sleep(0.2)
    assert [line["request_id"] for line in warnings] == ["client-req-77"], worker.log()
