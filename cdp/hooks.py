"""After-commit hooks other apps register for (e.g. stitching enqueues itself when new events arrive), and the
GDPR erase's hooks (apps that keep data of their own about a customer's identifiers).

Apps talk through this small registry instead of signals so the call order and contract stay explicit.
"""

from collections.abc import Callable

_events_ingested: list[Callable[[int], None]] = []
_erase_preparing: list[Callable[[float], bool]] = []
_identifiers_erased: list[Callable[[dict[str, list[str]]], None]] = []


def on_events_ingested(callback: Callable[[int], None]) -> Callable[[int], None]:
    _events_ingested.append(callback)
    return callback


def run_events_ingested(count: int) -> None:
    for callback in _events_ingested:
        callback(count)


def on_erase_preparing(callback: Callable[[float], bool]) -> Callable[[float], bool]:
    """Before a customer is erased, outside its transaction: apply what the app has queued until now (it may be
    about the customer) as events, so they are stitched and erased with the customer. The callback gets a
    deadline (`time.monotonic()`) and returns False when it could not finish by then."""
    _erase_preparing.append(callback)
    return callback


def run_erase_preparing(deadline: float) -> bool:
    return all(callback(deadline) for callback in _erase_preparing)


def on_identifiers_erased(callback: Callable[[dict[str, list[str]]], None]) -> Callable[[dict[str, list[str]]], None]:
    """In the erase's transaction: the identifier values (category id -> values) deleted with the customer (no
    remaining event carries them); the app deletes what it keeps per value."""
    _identifiers_erased.append(callback)
    return callback


def run_identifiers_erased(values: dict[str, list[str]]) -> None:
    for callback in _identifiers_erased:
        callback(values)
