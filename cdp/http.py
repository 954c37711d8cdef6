"""Reading a public request's headers as our own code needs them, whoever serves it (Django or the fast lane)."""


def declared_length(value: object) -> int | None:
    """The Content-Length header's number of bytes (0 when absent), None when it is not a number of bytes. Read as 0
    instead, it reached Django's `request.body`, which raised ValueError on it (a 500)."""
    try:
        declared = int(value or 0)
    except ValueError:
        return None
    return declared if declared >= 0 else None
