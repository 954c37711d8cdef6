"""Pinterest audience destination (Pinterest Ads API v5, seed 003).

- `audience_id` empty: a customer list named `audience_name` is created from the first batch
  (`POST /v5/ad_accounts/{ad_account_id}/customer_lists`), later batches are added to it (`PATCH ... ADD`), and an
  audience of type CUSTOMER_LIST is created on it at the end (`POST .../audiences`). Only once per segment: the
  next export of the same segment to the destination (`context.previous`, same ad account) *replaces* the members
  of the audience the last one created, as `replace` below, rather than creating another audience of the same
  name each time (a daily schedule made one a day, and the campaigns aimed at the first never saw a new member).
  If that audience was deleted at Pinterest meanwhile, a new one is created.
- `audience_id` set, `audience_operation`:
  - `add` / `remove`: the batches are added to / removed from the audience's customer list (`PATCH` with
    `operation_type` ADD / REMOVE; the list id is read from `GET .../audiences/{audience_id}`).
  - `replace`: Pinterest has no REPLACE. We emulate it with **a new list**: the current members are uploaded to a
    fresh customer list and the audience is pointed at it (`PATCH .../audiences/{audience_id}` with the new
    `rule.customer_list_id`, `operation_type` UPDATE). Those who left the segment are gone because they are not
    in the new list; no earlier state is needed and a failed run leaves the audience on its old, complete list.
- `records` is ONE comma-separated string. Identifiers (the `identifier_attribute`, emails by default; every value
  of a customer counts) are trimmed and lower-cased, then hashed with SHA256 unless `hash` is false (SHA1 / MD5
  with `hash_algorithm`); values that already look hashed are sent as they are.
- Batches of `batch_size` identifiers. ADD / REMOVE of the same ids twice changes nothing, so a resumed export may
  safely repeat its last batch (the loader is idempotent); the created list id is checkpointed so a resumed
  export continues the same list instead of creating another.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import Any

from loaders.base import ConfigError, ConfigField, Customer, LoadContext, Loader, LoaderError, LoadResult
from loaders.hashing import ALGORITHMS, HASHERS, HEX, HEX_LENGTHS
from loaders.http import HttpClient

DIGITS_18 = r"[0-9]{1,18}"


class PinterestLoader(Loader):
    kind = "pinterest"
    label = "Pinterest audience"
    fields = (
        ConfigField("access_token", required=True, secret=True, max_length=2000, help="OAuth2 bearer token."),
        ConfigField(
            "ad_account_id",
            required=True,
            pattern=DIGITS_18,
            pattern_message="must be digits only, at most 18.",
            help="The ad account the audience belongs to.",
        ),
        ConfigField("audience_name", max_length=255, help="Required to create a new audience."),
        ConfigField(
            "audience_id",
            pattern=DIGITS_18,
            pattern_message="must be digits only, at most 18.",
            help="Empty: create a new audience. Set: update it with audience_operation.",
        ),
        ConfigField("audience_operation", kind="choice", choices=("add", "replace", "remove")),
        ConfigField("hash", kind="bool", default=True, help="Hash identifiers that are not hashed yet."),
        ConfigField("hash_algorithm", kind="choice", choices=ALGORITHMS, default="SHA256"),
        ConfigField("identifier_attribute", default="ps_email_address", max_length=64, attribute=True),
        ConfigField("list_type", kind="choice", choices=("EMAIL", "MAID", "IDFA"), default="EMAIL"),
        ConfigField("batch_size", kind="int", default=10_000, minimum=1, maximum=100_000),
        ConfigField("api_base_url", kind="url", default="https://api.pinterest.com"),
    )

    @classmethod
    def config_check(cls, config: dict[str, Any]) -> None:
        if config["audience_id"]:
            if not config["audience_operation"]:
                raise ConfigError("audience_operation", "is required when audience_id is set (add, replace or remove).")
        elif not config["audience_name"]:
            raise ConfigError("audience_name", "is required to create a new audience (audience_id is empty).")
        elif config["audience_operation"] and config["audience_operation"] != "add":
            raise ConfigError("audience_operation", "needs an audience_id; a new audience can only be created.")

    def attributes_required(self) -> list[str]:
        return [self.config["identifier_attribute"]]

    # --- HTTP ---------------------------------------------------------------------------------------------
    def _client(self, context: LoadContext) -> HttpClient:
        return self.http(
            context, provider="Pinterest", default_headers={"Authorization": f"Bearer {self.config['access_token']}"}
        )

    def _url(self, path: str) -> str:
        return f"{self.config['api_base_url'].rstrip('/')}/v5/ad_accounts/{self.config['ad_account_id']}{path}"

    # --- identifiers --------------------------------------------------------------------------------------
    def _batches(self, customers: Iterable[Customer], result: LoadResult) -> Iterator[tuple[list[str], int, str]]:
        """(identifiers, customers in the batch, last entity id) — batches of about `batch_size` identifiers."""
        # The hot loop of the loader (hundreds of thousands of ids per second): customers' values are normalised
        # inline (trim + lower-case), then a whole batch is hashed in one comprehension; hex digests pass as they
        # are (the rules of loaders.hashing.hash_value).
        attribute = self.config["identifier_attribute"]
        size = self.config["batch_size"]
        texts: list[str] = []
        append = texts.append
        pending = 0  # texts in this batch
        count = 0  # customers in this batch
        skipped = 0
        customer: Customer | None = None
        for customer in customers:
            attributes = customer.get("attributes")
            values = attributes.get(attribute) if attributes else None
            added = False
            if values:
                for value in values if values.__class__ is list else (values,):
                    if value.__class__ is str:
                        text = value.strip().lower()
                    elif value is None:
                        continue
                    else:
                        text = str(value).strip().lower()
                    if text:
                        append(text)
                        pending += 1
                        added = True
            if not added:
                skipped += 1
                continue
            count += 1
            if pending >= size:
                result.skipped += skipped
                skipped = 0
                yield self._records(texts), count, customer["id"]
                texts, count, pending = [], 0, 0
                append = texts.append
        result.skipped += skipped
        if customer is not None and (texts or count or skipped):
            yield self._records(texts), count, customer["id"]

    def _records(self, texts: list[str]) -> list[str]:
        if not self.config["hash"]:
            return [text for text in texts if "," not in text]  # a comma would split the records string
        hasher = HASHERS[self.config["hash_algorithm"]]
        fullmatch = HEX.fullmatch
        return [
            text if (len(text) in HEX_LENGTHS and fullmatch(text)) else hasher(text.encode()).hexdigest()
            for text in texts
        ]

    # --- load ---------------------------------------------------------------------------------------------
    def load(self, customers: Iterable[Customer], *, context: LoadContext | None = None) -> LoadResult:
        context = context or LoadContext()
        client = self._client(context)
        result = LoadResult()
        state = dict(context.state)
        operation = self.config["audience_operation"] if self.config["audience_id"] else "create"
        audience_id: str = self.config["audience_id"] or ""
        reused = ""
        if operation == "create":
            reused = state.get("reused_audience_id") or self._previous_audience(context)
            if reused:
                operation, audience_id = "replace", reused
                state["reused_audience_id"] = reused
        list_id: str | None = state.get("customer_list_id")
        if list_id is None and operation in {"add", "remove"}:
            audience = client.request("GET", self._url(f"/audiences/{self.config['audience_id']}")).json() or {}
            list_id = str((audience.get("rule") or {}).get("customer_list_id") or "")
            if not list_id:
                raise ConfigError("audience_id", "this audience is not based on a customer list; it cannot be updated.")
            state["customer_list_id"] = list_id
        identifiers = 0
        for records, count, last_id in self._batches(customers, result):
            context.sending(last_id)
            if records:
                if list_id is None:
                    list_id = self._list_create(client, records, context, replace=operation == "replace")
                    state["customer_list_id"] = list_id
                else:
                    patch = "REMOVE" if operation == "remove" else "ADD"
                    client.request(
                        "PATCH",
                        self._url(f"/customer_lists/{list_id}"),
                        json={"operation_type": patch, "records": ",".join(records)},
                    )
            identifiers += len(records)
            result.sent += count
            context.checkpoint(
                last_entity_id=last_id, sent=result.sent, skipped=result.skipped, failed=result.failed, state=state
            )
        result.details = {
            "identifiers": identifiers,
            "operation": operation,
            "ad_account_id": self.config["ad_account_id"],
        }
        if operation == "create" or reused:
            result.details["audience_created_by_export"] = True  # the next export may update it (_previous_audience)
        if list_id is None:
            if operation == "replace":
                # Pinterest cannot hold an empty customer list: the audience keeps its old members. A "finished"
                # export would let the campaign go on targeting people who all left the segment.
                raise LoaderError(
                    f"No member of the segment has an identifier ({self.config['identifier_attribute']}), and "
                    f"Pinterest cannot point an audience at an empty customer list: audience {audience_id} still "
                    "has its previous members. Pause the campaigns that use it, or export again when the segment "
                    "has members.",
                    permanent=True,
                )
            context.log("No customer had an identifier: nothing was sent to Pinterest.")
            return result
        result.details["customer_list_id"] = list_id
        if operation == "create":
            audience_id = state.get("audience_id") or self._audience_create(client, list_id)
            state["audience_id"] = audience_id
            result.details["audience_id"] = audience_id
            context.log(f"Created Pinterest audience {audience_id} on customer list {list_id}.")
        elif operation == "replace":
            try:
                client.request(
                    "PATCH",
                    self._url(f"/audiences/{audience_id}"),
                    json={"rule": {"customer_list_id": list_id}, "operation_type": "UPDATE"},
                )
            except LoaderError as exc:
                if not (reused and exc.status == 404):
                    raise
                context.log(f"Audience {audience_id} no longer exists at Pinterest: creating a new one.")
                audience_id = state.get("audience_id") or self._audience_create(client, list_id)
                state["audience_id"] = audience_id
                context.log(f"Created Pinterest audience {audience_id} on customer list {list_id}.")
            else:
                context.log(f"Audience {audience_id} now uses the new customer list {list_id}.")
            result.details["audience_id"] = audience_id
        context.checkpoint(
            last_entity_id=None, sent=result.sent, skipped=result.skipped, failed=result.failed, state=state
        )
        return result

    def _previous_audience(self, context: LoadContext) -> str:
        """The audience the last export of this segment to this destination created (or updated, having created it
        before), if it was made in this ad account (another account's audience cannot be updated)."""
        previous = context.previous or {}
        audience_id = str(previous.get("audience_id") or "")
        # Only an audience an export created: one the destination named with audience_id before (add / remove)
        # belongs to someone else's campaign, and a replace of its members was never asked for.
        created = previous.get("audience_created_by_export") or previous.get("operation") == "create"
        if audience_id and created and str(previous.get("ad_account_id") or "") == self.config["ad_account_id"]:
            return audience_id
        return ""

    def _list_create(self, client: HttpClient, records: list[str], context: LoadContext, *, replace: bool) -> str:
        name = self.config["audience_name"] or f"CDP audience {self.config['audience_id']}"
        if replace:
            name = f"{name} ({datetime.now(UTC):%Y-%m-%d %H:%M} replace)"
        created = client.request(
            "POST",
            self._url("/customer_lists"),
            json={"name": name[:255], "records": ",".join(records), "list_type": self.config["list_type"]},
        ).json()
        list_id = str((created or {}).get("id") or "")
        if not list_id:
            raise ConfigError("audience_name", "Pinterest did not return the id of the created customer list.")
        context.log(f"Created Pinterest customer list {list_id}.")
        return list_id

    def _audience_create(self, client: HttpClient, list_id: str) -> str:
        created = client.request(
            "POST",
            self._url("/audiences"),
            json={
                "name": self.config["audience_name"],
                "audience_type": "CUSTOMER_LIST",
                "rule": {"customer_list_id": list_id},
            },
        ).json()
        return str((created or {}).get("id") or "")
