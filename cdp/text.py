"""Whether a text from outside can be stored: PostgreSQL text holds neither NUL characters nor lone surrogates
(a JSON "\\ud800" escape decodes to one; it is not UTF-8)."""


def storable(text: str) -> bool:
    if "\x00" in text:
        return False
    if text.isascii():
        return True
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True
