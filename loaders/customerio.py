"""Customer.io destination (Track API, seed 002): segment membership as person attributes.

Each customer is identified by its entity id (`identifiers: {"id": ...}`) and gets:
- `SegmentMembership`: the ids of the segments the customer is in, each in single quotes, comma-separated —
  `'11036','11034'` (target it in Customer.io with *contains* `'11034'`). The export passes the customer's
  memberships among the segments exported to this destination (`customer["segments"]`); without them, the
  exported segment alone.
- with `one_attribute_per_segment`: `In <segment name>` = true (false for a customer who left the segment; after
  the segment was renamed, `In <old name>` = false for everyone sent).
- `email`, `first_name`, `last_name` when the customer has them (the attributes are configurable).

Sent through the batch API (`POST /api/v2/batch`, `identify` actions) in requests under 500 KB; a 207 answer
lists the rows it refused (`errors[].batch_index`) — those count as failed with Customer.io's reason, the rest as
sent. Identify sets attributes, so repeating a batch changes nothing (idempotent). Deleting the destination does
not remove attributes already set (as the seed says). Limits from the Track API: at most 300 attributes per
person per request, an attribute value at most 1000 bytes (a longer value fails that row, with the reason).
"""

from __future__ import annotations

import base64
from collections.abc import Iterable
from typing import Any

import orjson

from loaders.base import ConfigField, Customer, LoadContext, Loader, LoadResult, first_values
from loaders.http import Response

REGION_HOSTS = {"US": "https://track.customer.io", "EU": "https://track-eu.customer.io"}
MAX_REQUEST_BYTES = 500 * 1024
MAX_VALUE_BYTES = 1000
MAX_ATTRIBUTES = 300


def segment_membership(segment_ids: Iterable[Any]) -> str:
    return ",".join(f"'{segment_id}'" for segment_id in segment_ids)


def _error_message(response: Response) -> str:
    data = response.json()
    if isinstance(data, dict):
        meta = data.get("meta")
        if isinstance(meta, dict) and meta.get("error"):
            return str(meta["error"])
        if isinstance(data.get("errors"), list) and data["errors"]:
            first = data["errors"][0]
            if isinstance(first, dict):
                return str(first.get("message") or first.get("reason") or first)
    return response.body[:300].decode("utf-8", "replace").strip() or f"HTTP {response.status}"


class CustomerIoLoader(Loader):
    kind = "customerio"
    label = "Customer.io"
    # The export adds `customer["segments"]`: every segment sent to this destination the customer is in.
    wants_memberships = True
    wants_leavers = True  # customers who left the segment since the last export hear `In <name>` = false
    fields = (
        ConfigField("site_id", required=True, max_length=100, help="From the Integration page of Customer.io."),
        ConfigField("api_key", required=True, secret=True, max_length=200, help="Tracking API key."),
        ConfigField("region", kind="choice", choices=("US", "EU"), default="US"),
        ConfigField(
            "one_attribute_per_segment",
            kind="bool",
            default=False,
            help="Also set 'In <segment name>' = true / false per segment.",
        ),
        ConfigField("email_attribute", default="ps_email_address", max_length=64, attribute=True),
        ConfigField("first_name_attribute", default="first_name", max_length=64, attribute=True),
        ConfigField("last_name_attribute", default="last_name", max_length=64, attribute=True),
        ConfigField("batch_size", kind="int", default=1000, minimum=1, maximum=10_000),
        ConfigField("api_base_url", kind="url", help="Override the regional Track API host (tests, proxies)."),
    )

    def attributes_required(self) -> list[str]:
        return [self.config[k] for k in ("email_attribute", "first_name_attribute", "last_name_attribute")]

    def _base(self) -> str:
        return (self.config["api_base_url"] or REGION_HOSTS[self.config["region"]]).rstrip("/")

    def person_attributes(self, customer: Customer, context: LoadContext) -> dict[str, Any]:
        values = customer.get("attributes") or {}
        left = bool(customer.get("left"))
        segments = customer.get("segments")
        if segments is None:
            segments = [] if left else [{"id": context.segment_id, "name": context.segment_name}]
        out: dict[str, Any] = {"SegmentMembership": segment_membership(s["id"] for s in segments)}
        if self.config["one_attribute_per_segment"]:
            # Renamed since the last export: `In <old name>` stayed true for ever on everyone it was sent to (a
            # Customer.io segment on it kept its members however the CDP segment changed); it is set false.
            renamed_from = (context.previous or {}).get("segment_name")
            if isinstance(renamed_from, str) and renamed_from and renamed_from != context.segment_name:
                out[f"In {renamed_from}"] = False
            for segment in segments:
                out[f"In {segment['name']}"] = True
            if context.segment_name:
                out[f"In {context.segment_name}"] = not left
        for key, attribute in (
            ("email", self.config["email_attribute"]),
            ("first_name", self.config["first_name_attribute"]),
            ("last_name", self.config["last_name_attribute"]),
        ):
            found = first_values(values, attribute)
            if found:
                out[key] = found[0]
        return out

    def _row_problem(self, attributes: dict[str, Any]) -> str | None:
        if len(attributes) > MAX_ATTRIBUTES:
            return f"more than {MAX_ATTRIBUTES} attributes"
        for key, value in attributes.items():
            if len(orjson.dumps(value)) > MAX_VALUE_BYTES:
                return f"attribute {key!r} is longer than {MAX_VALUE_BYTES} bytes"
        return None

    def load(self, customers: Iterable[Customer], *, context: LoadContext | None = None) -> LoadResult:
        context = context or LoadContext()
        client = self.http(context, provider="Customer.io", error_message=_error_message)
        credentials = base64.b64encode(f"{self.config['site_id']}:{self.config['api_key']}".encode()).decode()
        headers = {"Authorization": f"Basic {credentials}"}
        url = f"{self._base()}/api/v2/batch"
        result = LoadResult()
        items: list[bytes] = []
        size = 0
        last_id = ""
        envelope = len(b'{"batch":[]}')

        def flush() -> None:
            nonlocal items, size
            if not items:
                return
            context.sending(last_id)
            body = b'{"batch":[' + b",".join(items) + b"]}"
            response = client.request("POST", url, body=body, headers={**headers, "Content-Type": "application/json"})
            failed = 0
            if response.status == 207:
                errors = (response.json() or {}).get("errors") or []
                bad = {}
                for error in errors:
                    if isinstance(error, dict) and isinstance(error.get("batch_index"), int):
                        bad[error["batch_index"]] = error
                failed = len(bad)
                for index, error in sorted(bad.items()):
                    reason = error.get("reason") or error.get("message") or "refused"
                    field = f" ({error['field']})" if error.get("field") else ""
                    result.error(f"row {index} of a batch: {reason}{field}")
            result.failed += failed
            result.sent += len(items) - failed
            context.checkpoint(
                last_entity_id=last_id, sent=result.sent, skipped=result.skipped, failed=result.failed, state={}
            )
            items, size = [], 0

        for customer in customers:
            attributes = self.person_attributes(customer, context)
            problem = self._row_problem(attributes)
            if problem:
                result.failed += 1
                result.error(f"customer {customer['id']}: {problem}")
                last_id = customer["id"]
                continue
            item = orjson.dumps(
                {
                    "type": "person",
                    "action": "identify",
                    "identifiers": {"id": customer["id"]},
                    "attributes": attributes,
                }
            )
            if items and (
                size + len(item) + 1 + envelope > MAX_REQUEST_BYTES or len(items) >= self.config["batch_size"]
            ):
                flush()
            items.append(item)
            size += len(item) + 1
            last_id = customer["id"]
        flush()
        result.details = {"segment_name": context.segment_name}  # the attribute name this export set
        return result
