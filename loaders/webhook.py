"""Generic webhook destination: JSON batches POSTed to a URL, signed with HMAC-SHA256.

Each request body is
`{"batch_id": "...", "segment": {"id", "name"}, "sent_at": "...", "customers": [{"id", "attributes"}, ...]}`
with headers
- `X-CDP-Timestamp`: unix seconds when the request was signed (each retry is signed again, when it is sent);
- `X-CDP-Signature`: `sha256=` + hex HMAC-SHA256 of `"{timestamp}.{body}"` with the destination's secret;
- `X-CDP-Batch-Id`: stable for a batch of an export, so a receiver can deduplicate.

Receivers verify: recompute the HMAC over the timestamp, a dot and the raw body, compare in constant time, and
reject timestamps older than a few minutes (replay protection). Any 2xx acknowledges the batch; 429 / 5xx are
retried with backoff (honouring Retry-After); other 4xx stop the export with the receiver's message.

A webhook receiver may not be idempotent, so this loader is not `idempotent`: an export interrupted while a
batch was in flight fails cleanly instead of sending that batch again.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import orjson

from loaders.base import ConfigField, Customer, LoadContext, Loader, LoadResult, batched

SIGNATURE_HEADER = "X-CDP-Signature"
TIMESTAMP_HEADER = "X-CDP-Timestamp"
BATCH_HEADER = "X-CDP-Batch-Id"


def signature(secret: str, timestamp: str, body: bytes) -> str:
    mac = hmac.new(secret.encode("utf-8"), timestamp.encode("ascii") + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def signature_verify(secret: str, timestamp: str, body: bytes, header: str, *, max_age_s: int = 300) -> bool:
    """What a receiver does (used by our tests): constant-time compare and a freshness window."""
    try:
        fresh = abs(time.time() - int(timestamp)) <= max_age_s
    except ValueError:
        return False
    return fresh and hmac.compare_digest(signature(secret, timestamp, body), header)


class WebhookLoader(Loader):
    kind = "webhook"
    label = "Webhook"
    idempotent = False
    fields = (
        ConfigField("url", kind="url", required=True, max_length=2000, help="Where the batches are POSTed."),
        ConfigField("secret", required=True, secret=True, max_length=500, help="Shared secret for the signature."),
        ConfigField(
            "attributes", kind="list", default=[], help="Attribute ids to include (empty: all).", attribute=True
        ),
        ConfigField("batch_size", kind="int", default=500, minimum=1, maximum=10_000),
    )

    def attributes_required(self) -> list[str]:
        return list(self.config["attributes"])

    def _sign(self, body: bytes) -> dict[str, str]:
        """Signed when sent, every attempt anew: receivers reject a timestamp older than a few minutes, and the
        retries of one batch can span longer (backoff, Retry-After up to 5 minutes)."""
        timestamp = str(int(time.time()))
        return {TIMESTAMP_HEADER: timestamp, SIGNATURE_HEADER: signature(self.config["secret"], timestamp, body)}

    def load(self, customers: Iterable[Customer], *, context: LoadContext | None = None) -> LoadResult:
        context = context or LoadContext()
        client = self.http(context, provider="The webhook receiver")
        wanted = list(self.config["attributes"]) + [a for a in context.attributes if a not in self.config["attributes"]]
        result = LoadResult()
        number = int(context.state.get("batches", 0))
        for batch in batched(customers, self.config["batch_size"]):
            number += 1
            batch_id = f"{context.export_id or 'adhoc'}-{number}"
            rows: list[dict[str, Any]] = []
            for customer in batch:
                values = customer.get("attributes") or {}
                if wanted:
                    values = {key: values.get(key) for key in wanted}
                row = {"id": customer["id"], "attributes": values}
                if customer.get("left"):
                    row["left"] = True
                rows.append(row)
            body = orjson.dumps(
                {
                    "batch_id": batch_id,
                    "segment": {"id": context.segment_id, "name": context.segment_name},
                    "sent_at": datetime.now(UTC).isoformat(),
                    "customers": rows,
                }
            )
            headers = {"Content-Type": "application/json", BATCH_HEADER: batch_id}
            context.sending(batch[-1]["id"])
            client.request("POST", self.config["url"], body=body, headers=headers, sign=self._sign)
            result.sent += len(batch)
            context.checkpoint(
                last_entity_id=batch[-1]["id"],
                sent=result.sent,
                skipped=result.skipped,
                failed=result.failed,
                state={"batches": number},
            )
        return result
