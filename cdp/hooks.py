"""After-commit hooks other apps register for (e.g. stitching enqueues itself when new events arrive).

Apps talk through this small registry instead of signals so the call order and contract stay explicit.
"""

from collections.abc import Callable

_events_ingested: list[Callable[[int], None]] = []


def on_events_ingested(callback: Callable[[int], None]) -> Callable[[int], None]:
    _events_ingested.append(callback)
    return callback


def run_events_ingested(count: int) -> None:
    for callback in _events_ingested:
        callback(count)
