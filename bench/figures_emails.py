"""Email channel figures.

- `feedback_rps`: Brevo webhook payloads/s through POST /emails/feedback served by gunicorn (2 sync workers) on a
  free loopback port, load from wrk (4 connections) in 4 phases alternating with the baseline. Every payload is a
  new `delivered` report, accepted into the inbox; after the run: every request answered 200 and was accepted,
  and the worker's apply (timed and printed, not part of the figure) recorded each once. The production path:
  Redis rate-limit counters and broker, the apply task enqueued (no worker runs during the load).
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
import time

from run import FIGURES, ROOT, Bench, Figure, free_port, wrk_load

LOAD_THREADS = 16
BENCH_ATTRIBUTE = "bench_email_member"
WEBHOOK_SECRET = "whs_bench-webhook-secret-0123456789"  # noqa: S105 - a benchmark fixture


def _redis_url() -> str:
    return os.environ.get("BENCH_REDIS_URL") or os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/0"


def _gunicorn(port: int, redis_url: str) -> subprocess.Popen:
    """The production path: gunicorn's default sync workers, Redis for the rate-limit counters and as the Celery
    broker, stitching enqueued after each new event (no worker runs: the queued task waits, and is purged after)."""
    env = {**os.environ, "ALLOWED_HOSTS": "127.0.0.1", "DEBUG": "0", "REDIS_URL": redis_url, "LOG_LEVEL": "WARNING",
           "CDP_STITCH_AFTER_INGEST": "1", "DB_CONN_MAX_AGE": "600"}  # fmt: skip
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


# wrk Lua: each request a new Brevo `delivered` report (unique message id per run, phase, thread and request) for one of
# 5,000 addresses.
FEEDBACK_SCRIPT = """
local thread_counter = 0
function setup(thread)
  thread_counter = thread_counter + 1
  thread:set("tid", thread_counter)
end
local n = 0
local headers = {["Content-Type"] = "application/json", ["Authorization"] = "Bearer %(secret)s"}
function request()
  n = n + 1
  local body = string.format(
    '{"event":"delivered","email":"bench%%d@example.com","id":%%d,"ts":%(now)d,"ts_event":%(now)d,'
    .. '"ts_epoch":%(now)d000,"message-id":"<%(run)s.%(phase)d.%%d.%%d@bench.example>","subject":"Bench"}',
    n %% 5000, n, tid, n)
  return wrk.format("POST", "/emails/feedback", headers, body)
end
"""
PHASES = 4


def figure_feedback_rps(bench: Bench) -> Figure:
    """Brevo feedback webhook payloads/s through gunicorn (2 workers), vs a trivial Django view served the same."""
    from django.db import connection

    from cdp.services.global_settings import global_setting_get, global_setting_set
    from emails.models import FeedbackInbox
    from emails.services.channel import channel_update, webhook_secret_rotate
    from emails.services.feedback import feedback_apply
    from emails.services.setup import emails_setup_ensure

    seconds = max(8.0, 20.0 * min(1.0, bench.scale * 2))
    emails_setup_ensure()
    channel = channel_update(webhook_provider="brevo")
    webhook_secret_rotate(channel=channel, secret=WEBHOOK_SECRET)
    limit_before = global_setting_get("public_rate_limit_per_minute")
    # Count every request (the production path), never limit the benchmark's one client IP.
    global_setting_set(key="public_rate_limit_per_minute", value=1_000_000, user=None)
    run_id = time.time_ns()
    now = int(time.time())
    feedback_apply()  # an earlier run's leftovers: the inbox starts empty
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    redis_url = _redis_url()
    server = _gunicorn(port, redis_url)
    runs: dict[str, list[dict]] = {"trivial": [], "feedback": []}
    try:
        wrk_load(url + "/healthz", 1)  # warm both workers up
        for phase in range(PHASES):  # alternate, so a burst of other work on this shared machine hits both alike
            script = FEEDBACK_SCRIPT % {"secret": WEBHOOK_SECRET, "now": now, "run": run_id, "phase": phase}
            runs["trivial"].append(wrk_load(url + "/healthz", seconds / PHASES))
            runs["feedback"].append(wrk_load(url, seconds / PHASES, script=script))
    finally:
        server.terminate()
        server.wait(timeout=30)
        global_setting_set(key="public_rate_limit_per_minute", value=limit_before, user=None)
        import redis

        redis.Redis.from_url(redis_url).delete("celery")  # the stitching task the webhooks queued (no worker ran)
    accepted = sum(len(events) for events in FeedbackInbox.objects.values_list("events", flat=True))
    sent = sum(run["requests"] for run in runs["feedback"])
    ok = sum(run["statuses"].get("200", 0) for run in runs["feedback"])
    errors = sum(run["socket_errors"] for run in runs["feedback"] + runs["trivial"])
    # wrk stops counting at the deadline: requests then in flight (at most one per connection and phase) are
    # accepted but not counted.
    if ok != sent or errors or not ok <= accepted <= ok + PHASES * 4:
        raise RuntimeError(f"feedback under load: {sent} sent, {ok} answered 200, {accepted} accepted, {errors} errors")
    # What the worker does next, timed here (not part of the figure): apply the accepted payloads in order.
    with connection.cursor() as cursor:
        cursor.execute("SELECT coalesce(max(id), 0) FROM customer_events")
        before = cursor.fetchone()[0]
    started = time.perf_counter()
    applied = feedback_apply()
    apply_seconds = time.perf_counter() - started
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM customer_events WHERE id > %s AND type = 'email_delivered'", [before])
        recorded = cursor.fetchone()[0]
    if applied != accepted or recorded != accepted:
        raise RuntimeError(f"feedback apply: {accepted} accepted, {applied} applied, {recorded} recorded")
    print(f"  applied by the worker's task: {applied:,} events in {apply_seconds:.1f} s "
          f"({applied / apply_seconds:,.0f}/s), each recorded once", flush=True)  # fmt: skip
    rps = sent / sum(run["seconds"] for run in runs["feedback"])
    base_rps = sum(run["requests"] for run in runs["trivial"]) / sum(run["seconds"] for run in runs["trivial"])
    print(f"  feedback: {sent:,} payloads accepted, {rps:,.0f}/s; /healthz {base_rps:,.0f}/s", flush=True)
    return Figure("feedback_rps", rps, "payloads/s", base_rps, rps / base_rps, sent,
                  "baseline: trivial Django view, same server and load (wrk, 4 connections)")  # fmt: skip


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
