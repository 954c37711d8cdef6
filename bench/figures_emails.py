"""Email channel figures.

- `feedback_rps`: Brevo webhook payloads/s through POST /emails/feedback served by gunicorn (2 sync workers) on a
  free loopback port, load from a second process (threads, one connection per request, as a sync worker closes
  after each response). Every payload is a new `delivered` event (a customer event + the address's state).
  Baseline: GET /healthz (a trivial Django view) served and loaded the same way.
- `campaign_prepare_s`: seconds to prepare a campaign's recipient rows for a 100,000-member segment (segment SQL
  → stitched email identifiers → consent / block state → one row per address, skipped rows with their reason).
  Baseline: a raw SQL INSERT ... SELECT of the same rows into an unindexed table.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import time

from run import FIGURES, ROOT, Bench, Figure, free_port

LOAD_THREADS = 16
BENCH_ATTRIBUTE = "bench_email_member"
WEBHOOK_SECRET = "whs_bench-webhook-secret-0123456789"  # noqa: S105 - a benchmark fixture


def _gunicorn(port: int) -> subprocess.Popen:
    env = {**os.environ, "ALLOWED_HOSTS": "127.0.0.1", "DEBUG": "0", "REDIS_URL": "", "LOG_LEVEL": "WARNING"}
    command = [sys.executable, "-m", "gunicorn", "cdp.wsgi:application", "--workers", "2", "--bind",
               f"127.0.0.1:{port}", "--log-level", "warning", "--backlog", "2048"]  # fmt: skip
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return process
        except OSError:
            if process.poll() is not None:
                raise RuntimeError(f"gunicorn exited: {process.stderr.read().decode()[-2000:]}") from None
            time.sleep(0.2)
    process.kill()
    raise RuntimeError("gunicorn did not start in 30 s")


# The load generator, run as its own process: sends pre-built requests from LOAD_THREADS threads and prints
# {"seconds", "ok", "errors", "statuses"} as JSON. Requests come as a JSON list of latin-1 strings on stdin.
LOADER = textwrap.dedent(
    """
    import json, socket, sys, threading, time
    port, threads = int(sys.argv[1]), int(sys.argv[2])
    requests = [r.encode("latin-1") for r in json.loads(sys.stdin.read())]
    lock = threading.Lock()
    state = {"next": 0, "ok": 0, "errors": 0, "statuses": {}}
    def worker():
        while True:
            with lock:
                i = state["next"]; state["next"] += 1
            if i >= len(requests):
                return
            sock = socket.create_connection(("127.0.0.1", port))
            sock.sendall(requests[i])
            data = b""
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                data += chunk
            sock.close()
            status = data[9:12].decode() or "none"
            with lock:
                state["statuses"][status] = state["statuses"].get(status, 0) + 1
                state["ok" if status == "200" else "errors"] += 1
    started = time.perf_counter()
    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for t in pool: t.start()
    for t in pool: t.join()
    print(json.dumps({"seconds": time.perf_counter() - started, "ok": state["ok"], "errors": state["errors"],
                      "statuses": state["statuses"]}))
    """
)


def _load(port: int, requests: list[bytes]) -> dict:
    data = json.dumps([r.decode("latin-1") for r in requests]).encode()
    result = subprocess.run([sys.executable, "-c", LOADER, str(port), str(LOAD_THREADS)], input=data,
                            capture_output=True, check=True)  # fmt: skip
    return json.loads(result.stdout)


def _post(path: str, body: bytes, headers: dict[str, str]) -> bytes:
    head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    return (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n{head}\r\n").encode() + body  # fmt: skip


def figure_feedback_rps(bench: Bench) -> Figure:
    """Brevo feedback webhook payloads/s through gunicorn (2 workers), vs a trivial Django view served the same."""
    from cdp.services.global_settings import global_setting_get, global_setting_set
    from emails.services.channel import channel_update, webhook_secret_rotate
    from emails.services.setup import emails_setup_ensure

    size = bench.size(20_000)
    emails_setup_ensure()
    channel = channel_update(webhook_provider="brevo")
    webhook_secret_rotate(channel=channel, secret=WEBHOOK_SECRET)
    limit_before = global_setting_get("public_rate_limit_per_minute")
    global_setting_set(key="public_rate_limit_per_minute", value=0, user=None)  # one client IP sends it all
    run_id = time.time_ns()
    now = int(time.time())
    auth = {"Authorization": f"Bearer {WEBHOOK_SECRET}"}
    payloads = [
        _post("/emails/feedback", json.dumps({
            "event": "delivered", "email": f"bench{n % 5000}@example.com", "id": n, "ts": now, "ts_event": now,
            "ts_epoch": now * 1000, "message-id": f"<{run_id}.{n}@bench.example>", "subject": "Bench",
        }).encode(), auth)
        for n in range(size)
    ]  # fmt: skip
    trivial = [b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"] * size
    port = free_port()
    server = _gunicorn(port)
    try:
        _load(port, trivial[:200])  # warm both workers up
        base = _load(port, trivial)
        value = _load(port, payloads)
    finally:
        server.terminate()
        server.wait(timeout=30)
        global_setting_set(key="public_rate_limit_per_minute", value=limit_before, user=None)
    if value["errors"] or base["errors"]:
        raise RuntimeError(f"errors under load: feedback {value}, baseline {base}")
    rps, base_rps = size / value["seconds"], size / base["seconds"]
    print(f"  feedback {size:,} payloads: {value['seconds']:.1f} s; /healthz: {base['seconds']:.1f} s", flush=True)
    return Figure("feedback_rps", rps, "payloads/s", base_rps, rps / base_rps, size,
                  "baseline: trivial Django view, same server and load")  # fmt: skip


# --- campaign preparation ---------------------------------------------------------------------------------------

_MEMBERS_SQL = """
INSERT INTO customer_entities (id, created, modified, attributes)
SELECT md5('bench-email-' || n), now(), now(), jsonb_build_object(%(attribute)s, jsonb_build_array(true))
FROM generate_series(1, %(size)s) AS n
ON CONFLICT (id) DO NOTHING;
INSERT INTO stitching_identifiers (category_id, value, customer_entity_id, first_seen)
SELECT 'email', 'bench-member-' || n || '@example.com', md5('bench-email-' || n), now()
FROM generate_series(1, %(size)s) AS n
ON CONFLICT (category_id, value) DO NOTHING;
INSERT INTO emails_emailaddress (email, consent, consent_source, blocked, blocked_reason, blocked_by,
                                 soft_bounces_in_row, created, modified)
SELECT 'bench-member-' || n || '@example.com',
       CASE WHEN n %% 10 = 0 THEN NULL WHEN n %% 10 = 1 THEN false ELSE true END,
       'bench', n %% 10 = 2, '', '', 0, now(), now()
FROM generate_series(1, %(size)s) AS n
WHERE n %% 10 <> 3
ON CONFLICT (email) DO NOTHING;
ANALYZE customer_entities; ANALYZE stitching_identifiers; ANALYZE emails_emailaddress;
"""

_BASELINE_SQL = """
INSERT INTO bench_email_recipients (campaign_id, email, customer_entity_id, status, reason, message_id)
SELECT %s, i.value, i.customer_entity_id,
       CASE WHEN a.blocked THEN 'skipped' WHEN a.consent THEN 'pending' ELSE 'skipped' END,
       CASE WHEN a.blocked THEN 'blocked' WHEN a.consent THEN '' WHEN a.consent = false THEN 'unsubscribed'
            ELSE 'no_consent' END,
       md5('c' || i.value)
FROM customer_entities e
JOIN stitching_identifiers i ON i.customer_entity_id = e.id AND i.category_id = 'email'
LEFT JOIN emails_emailaddress a ON a.email = i.value
WHERE e.attributes @> %s::jsonb
"""


def figure_campaign_prepare_s(bench: Bench) -> Figure:
    """Campaign recipient rows for a 100k-member segment (consent / block filtering), vs raw INSERT ... SELECT."""
    from django.db import connection

    from cdp.models import Attribute
    from emails.models import Campaign, CampaignRecipient
    from emails.services.campaigns import campaign_prepare
    from emails.services.setup import emails_setup_ensure
    from emails.services.templates import template_create
    from segments.services import segment_create
    from stitching.services.defaults import default_categories_ensure

    size = bench.size(100_000)
    emails_setup_ensure()
    default_categories_ensure()
    defaults = {"name": "Bench email member", "data_type": "bool", "computation": "last_value", "path": "x"}
    Attribute.objects.get_or_create(id=BENCH_ATTRIBUTE, defaults=defaults)
    with connection.cursor() as cursor:
        cursor.execute(_MEMBERS_SQL, {"attribute": BENCH_ATTRIBUTE, "size": size})
    segment = segment_create(owner=None, name=f"Bench email members {time.time_ns()}",
                             conditions={"attribute": BENCH_ATTRIBUTE, "operator": "is_true"})  # fmt: skip
    template = template_create(name=f"Bench {time.time_ns()}", subject="Bench", text_body="Hi {{ email }}")
    campaign = Campaign.objects.create(name="Bench", template=template, segment_id=segment.pk)
    try:
        with connection.cursor() as cursor:
            cursor.execute("DROP TABLE IF EXISTS bench_email_recipients")
            cursor.execute("CREATE TABLE bench_email_recipients (campaign_id bigint, email varchar(254), "
                           "customer_entity_id varchar(32), status varchar(10), reason varchar(255), "
                           "message_id varchar(64))")  # fmt: skip
            started = time.perf_counter()
            cursor.execute(_BASELINE_SQL, [campaign.pk, json.dumps({BENCH_ATTRIBUTE: [True]})])
            baseline = time.perf_counter() - started
            cursor.execute("DROP TABLE bench_email_recipients")
        started = time.perf_counter()
        inserted = campaign_prepare(campaign=campaign)
        seconds = time.perf_counter() - started
        campaign.refresh_from_db()
        print(f"  prepare {inserted:,} recipients ({campaign.skipped:,} skipped): {seconds:.2f} s; "
              f"raw INSERT ... SELECT {baseline:.2f} s", flush=True)  # fmt: skip
    finally:
        CampaignRecipient.objects.filter(campaign=campaign).delete()
        campaign.delete()
        template.delete()
        segment.delete()
    return Figure("campaign_prepare_s", seconds, "s", baseline, seconds / baseline, size,
                  "baseline: raw INSERT ... SELECT of the same rows")  # fmt: skip


FIGURES.extend([figure_feedback_rps, figure_campaign_prepare_s])
