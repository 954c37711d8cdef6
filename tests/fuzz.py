"""What the fuzz tests (tests/*/test_fuzz_*.py) share: hostile values and the checker of the rule "bad input gets a
4xx with a message that names the problem, never a 500"."""

from __future__ import annotations

import json
from typing import Any

HUGE = 10**30  # beyond bigint
BIGINT_PAST = 2**63  # one past bigint
INT_PAST = 2**31  # one past integer
LONG = "x" * 100_000
SURROGATE = "\\ud800"  # a JSON escape: valid JSON, decodes to a lone surrogate (not UTF-8)
# JSON number literals no count or id can be: 1e400 overflows a float to infinity (not the NaN / Infinity tokens
# the parser refuses), 1 followed by 400 zeros is beyond bigint; as an id also 1e-400 (0.0: no such id) and 1.5.
NUMBERS = ["1e400", "-1e400", "1" + "0" * 400]
ID_NUMBERS = [*NUMBERS, "1e-400", "-0.0", "1.5", "2.5e0"]


def with_number(body: dict, field: str, literal: str, *, in_list: bool = False) -> str:
    """The body as JSON text with `field` set to the number `literal` as written (json.dumps would round it)."""
    value = f"[{literal}]" if in_list else literal
    return json.dumps({**body, field: "PLACEHOLDER"}).replace('"PLACEHOLDER"', value)


def send(client, method: str, url: str, body: Any = None, raw: str | bytes | None = None, **extra):
    if raw is not None:
        return client.generic(method.upper(), url, raw, content_type="application/json", **extra)
    if body is None:
        return getattr(client, method)(url, **extra)
    return client.generic(method.upper(), url, json.dumps(body), content_type="application/json", **extra)


def problem(response, names: tuple[str, ...] = (), *, api: bool = True) -> str | None:
    """Why the response breaks the rule, or None: below 500; a 4xx with a JSON body carrying a message (in the API's
    error shape when `api`; the public endpoints' `status` is a code such as EmailInvalid); a 400's message naming
    one of `names` (the parameters / fields at fault) when given."""
    if response.status_code >= 500:
        return f"{response.status_code}: {response.content[:200]!r}"
    if response.status_code < 400:
        return None
    try:
        body = response.json()
    except ValueError:
        return f"{response.status_code} without a JSON body: {response.content[:200]!r}"
    if not str(body.get("message", "")).strip() or (api and body.get("status") != "error"):
        return f"{response.status_code} not in the error shape: {body!r:.200}"
    if response.status_code == 400 and names:
        text = json.dumps(body)
        # A number no field can take (1e400) is refused by the parser, naming the number instead of the field.
        if not any(name in text for name in names) and "is out of range" not in text:
            return f"400 that names none of {names}: {body!r:.200}"
    return None


def run(client, cases: list[tuple], *, refuse: bool = False, api: bool = True, **extra) -> list[str]:
    """cases: (method, url, body-or-None, names) or (method, url, None, names, raw JSON text). `refuse`: every case is
    bad input, so a 2xx breaks the rule too (and would change what the next case runs against). Returns the
    problems, one line each."""
    problems = []
    client.raise_request_exception = False  # an unhandled exception is the 500 a client gets (exc_info says which)
    for method, url, body, names, *raw in cases:
        response = send(client, method, url, body, raw[0] if raw else None, **extra)
        why = problem(response, names, api=api)
        if response.status_code >= 500 and getattr(response, "exc_info", None):
            why = f"{why} raised {response.exc_info[1]!r:.200}"
        if why is None and refuse and response.status_code < 400:
            why = f"{response.status_code}: accepted"
        if why is not None:
            shown = raw[0][:80] if raw else str(body)[:80]
            problems.append(f"{method.upper()} {url[:120]} {shown!r}: {why}")
    return problems
