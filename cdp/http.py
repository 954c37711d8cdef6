"""Reading a request's headers and body as our own code needs them, whoever serves it (Django or the fast lane)."""

import zlib


def declared_length(value: object) -> int | None:
    """The Content-Length header's number of bytes (0 when absent), None when it is not a number of bytes. Read as 0
    instead, it reached Django's `request.body`, which raised ValueError on it (a 500)."""
    try:
        declared = int(value or 0)
    except ValueError:
        return None
    return declared if declared >= 0 else None


GZIP_ENCODINGS = frozenset({"gzip", "x-gzip"})
ACCEPTED_ENCODINGS = frozenset({"", "identity"}) | GZIP_ENCODINGS


class ServiceBusy(Exception):
    """A write that could not get its turn in time (another long job holds what it needs); nothing was changed.
    Answered 503 with Retry-After by cdp.middleware.ServiceBusyMiddleware: JSON for the API, a page in the admin."""

    retry_after = 60


class BodyInvalid(ValueError):
    """A request body that cannot be read: the message says why."""


class BodyTooLarge(BodyInvalid):
    """A body over the size limit (a 413)."""


def gunzip_limited(data: bytes, *, limit: int) -> bytes:
    """Decompress gzip (several members allowed), refusing to produce more than `limit` bytes, so a small
    compressed body cannot expand into gigabytes."""
    out = bytearray()
    while data:
        decompressor = zlib.decompressobj(16 + zlib.MAX_WBITS)
        try:
            out += decompressor.decompress(data, limit + 1 - len(out))
        except zlib.error as exc:
            raise BodyInvalid(f"body is not valid gzip: {exc}") from None
        if len(out) > limit:
            raise BodyTooLarge(f"body is over {limit // 1024} KB after decompression")
        if not decompressor.eof:
            raise BodyInvalid("body is not valid gzip: the compressed data is truncated")
        data = decompressor.unused_data.lstrip(b"\x00")  # padding between members is allowed
    return bytes(out)
