import hashlib

from loaders.hashing import hash_value, hash_values, looks_hashed, normalise_phone


def test_email_is_trimmed_lowercased_then_sha256():
    expected = hashlib.sha256(b"vincenoir@mail.com").hexdigest()
    assert hash_value("  VinceNoir@Mail.com ") == expected


def test_sha1_and_md5_when_configured():
    assert hash_value("a@b.co", algorithm="SHA1") == hashlib.sha1(b"a@b.co").hexdigest()  # noqa: S324
    assert hash_value("a@b.co", algorithm="MD5") == hashlib.md5(b"a@b.co").hexdigest()  # noqa: S324


def test_already_hashed_values_pass_unchanged():
    digest = hashlib.sha256(b"x@y.z").hexdigest()
    assert hash_value(digest.upper()) == digest
    md5 = hashlib.md5(b"x").hexdigest()  # noqa: S324
    assert hash_value(md5, algorithm="SHA256") == md5
    assert looks_hashed(md5) and not looks_hashed("abc") and not looks_hashed("z" * 64)


def test_phone_digits_with_country_code():
    assert normalise_phone("+420 (602) 123-456") == "420602123456"
    assert normalise_phone("00420602123456") == "420602123456"
    assert hash_value("+1 650 555 1234", kind="phone") == hashlib.sha256(b"16505551234").hexdigest()


def test_phone_trunk_zero_and_leading_zeros_are_dropped():
    # The "(0)" is dialled only inside the country: +44 (0)20 7946 0958 is 442079460958 internationally.
    assert normalise_phone("+44 (0)20 7946 0958") == "442079460958"
    assert normalise_phone("+49 (0) 30 1234567") == "49301234567"
    assert normalise_phone("0044 20 7946 0958") == "442079460958"


def test_empty_values_are_skipped():
    assert list(hash_values(["", "  ", "a@b.c"])) == [hashlib.sha256(b"a@b.c").hexdigest()]
    assert hash_value(" ") is None
