"""Pinterest audience loader against a local server speaking the Ads API v5 shapes."""

import pytest

from loaders.base import ConfigError, LoadContext, LoaderError
from loaders.registry import loader_for
from tests.loaders.fakes import sha256


def customers(n: int, start: int = 0):
    for i in range(start, start + n):
        yield {"id": f"{i:032x}", "attributes": {"ps_email_address": [f" User{i}@Example.com "]}}


def pinterest_loader(fake, **config):
    return loader_for(
        "pinterest",
        {"access_token": fake.token, "ad_account_id": "549755885175", "api_base_url": fake.url, **config},
    )


def test_create_makes_a_customer_list_then_an_audience(pinterest, sleeps):
    loader = pinterest_loader(pinterest, audience_name="VIP", batch_size=4)
    checkpoints = []
    context = LoadContext(sleep=sleeps, checkpoint=lambda **kw: checkpoints.append(kw))
    people = [*customers(9), {"id": "f" * 32, "attributes": {}}]
    result = loader.load(people, context=context)
    assert (result.sent, result.skipped, result.failed) == (9, 1, 0)
    audience_id = result.details["audience_id"]
    assert pinterest.audience_members(audience_id) == {sha256(f"user{i}@example.com") for i in range(9)}
    first = pinterest.requests[0]
    assert first.method == "POST" and first.path.endswith("/customer_lists")
    assert isinstance(first.json()["records"], str) and first.json()["records"].count(",") == 3  # ONE string
    assert first.json()["list_type"] == "EMAIL"
    assert [r.method for r in pinterest.requests] == ["POST", "PATCH", "PATCH", "POST"]
    assert checkpoints[0]["state"]["customer_list_id"] == result.details["customer_list_id"]


def test_already_hashed_and_unhashed_mode(pinterest, sleeps):
    digest = sha256("known@example.com")
    loader = pinterest_loader(pinterest, audience_name="VIP", hash=False)
    people = [{"id": "a" * 32, "attributes": {"ps_email_address": [digest.upper(), "Plain@Example.com"]}}]
    result = loader.load(people, context=LoadContext(sleep=sleeps))
    assert pinterest.audience_members(result.details["audience_id"]) == {digest, "plain@example.com"}


def test_sha1_when_configured(pinterest, sleeps):
    import hashlib

    loader = pinterest_loader(pinterest, audience_name="VIP", hash_algorithm="SHA1")
    result = loader.load(customers(1), context=LoadContext(sleep=sleeps))
    expected = hashlib.sha1(b"user0@example.com").hexdigest()  # noqa: S324
    assert pinterest.audience_members(result.details["audience_id"]) == {expected}


def test_add_and_remove_use_the_audience_list(pinterest, sleeps):
    created = pinterest_loader(pinterest, audience_name="VIP").load(customers(3), context=LoadContext(sleep=sleeps))
    audience_id = created.details["audience_id"]
    add = pinterest_loader(pinterest, audience_id=audience_id, audience_operation="add")
    add.load(customers(2, start=3), context=LoadContext(sleep=sleeps))
    assert len(pinterest.audience_members(audience_id)) == 5
    remove = pinterest_loader(pinterest, audience_id=audience_id, audience_operation="remove")
    remove.load(customers(2), context=LoadContext(sleep=sleeps))
    assert pinterest.audience_members(audience_id) == {sha256(f"user{i}@example.com") for i in (2, 3, 4)}


def test_replace_points_the_audience_at_a_new_list_with_exactly_the_current_members(pinterest, sleeps):
    created = pinterest_loader(pinterest, audience_name="VIP").load(customers(5), context=LoadContext(sleep=sleeps))
    audience_id = created.details["audience_id"]
    old_list = created.details["customer_list_id"]
    loader = pinterest_loader(pinterest, audience_id=audience_id, audience_operation="replace", audience_name="VIP")
    result = loader.load(customers(3, start=3), context=LoadContext(sleep=sleeps))  # 0-2 left, 5 joined
    assert result.details["customer_list_id"] != old_list
    assert pinterest.audience_members(audience_id) == {sha256(f"user{i}@example.com") for i in (3, 4, 5)}
    assert pinterest.requests[-1].method == "PATCH" and pinterest.requests[-1].json()["operation_type"] == "UPDATE"


def test_resume_continues_the_checkpointed_list(pinterest, sleeps):
    first = pinterest_loader(pinterest, audience_name="VIP", batch_size=2)
    states = []
    with pytest.raises(LoaderError):

        def checkpoint(**kw):
            states.append(kw)
            if len(states) == 1:
                raise LoaderError("worker died", permanent=False)

        first.load(customers(4), context=LoadContext(sleep=sleeps, checkpoint=checkpoint))
    state = states[0]["state"]
    resumed = pinterest_loader(pinterest, audience_name="VIP", batch_size=2)
    result = resumed.load(customers(2, start=2), context=LoadContext(sleep=sleeps, state=state))
    assert result.details["customer_list_id"] == state["customer_list_id"]
    assert len(pinterest.lists) == 1
    assert len(pinterest.audience_members(result.details["audience_id"])) == 4


def test_rate_limit_and_server_errors_are_retried(pinterest, sleeps):
    pinterest.fail_next(429, {"Retry-After": "3"}, {"code": 8, "message": "Rate limit exceeded"})
    pinterest.fail_next(500, {}, {"code": 0, "message": "internal"})
    result = pinterest_loader(pinterest, audience_name="VIP").load(customers(2), context=LoadContext(sleep=sleeps))
    assert result.sent == 2 and sleeps.waits[0] == 3 and len(sleeps.waits) == 2


def test_permanent_error_stops_with_pinterest_message_and_no_token(pinterest, sleeps):
    loader = loader_for(
        "pinterest",
        {
            "access_token": "wrong-token-value",
            "ad_account_id": "1",
            "audience_name": "x",
            "api_base_url": pinterest.url,
        },
    )
    with pytest.raises(LoaderError) as info:
        loader.load(customers(1), context=LoadContext(sleep=sleeps))
    assert info.value.permanent and "Authentication failed." in str(info.value)
    assert "wrong-token-value" not in str(info.value) and sleeps.waits == []


def test_unknown_audience_is_a_permanent_error(pinterest, sleeps):
    loader = pinterest_loader(pinterest, audience_id="999", audience_operation="add")
    with pytest.raises(LoaderError) as info:
        loader.load(customers(1), context=LoadContext(sleep=sleeps))
    assert info.value.permanent and "Audience not found." in str(info.value)


def test_nothing_to_send_creates_nothing(pinterest, sleeps):
    result = pinterest_loader(pinterest, audience_name="VIP").load(
        [{"id": "a" * 32, "attributes": {}}], context=LoadContext(sleep=sleeps)
    )
    assert result.skipped == 1 and pinterest.requests == []


def test_invalid_config_sends_nothing(pinterest):
    with pytest.raises(ConfigError):
        pinterest_loader(pinterest, audience_id="12")
    assert pinterest.requests == []


def test_a_second_export_replaces_the_members_of_the_audience_the_first_created(pinterest, sleeps):
    first = pinterest_loader(pinterest, audience_name="VIP").load(customers(5), context=LoadContext(sleep=sleeps))
    audience_id = first.details["audience_id"]
    assert first.details["ad_account_id"] == "549755885175"

    second = pinterest_loader(pinterest, audience_name="VIP").load(
        customers(3, start=3), context=LoadContext(sleep=sleeps, previous=first.details)
    )

    assert len(pinterest.audiences) == 1  # not one more audience named "VIP" per export
    assert second.details["audience_id"] == audience_id and second.details["operation"] == "replace"
    assert pinterest.audience_members(audience_id) == {sha256(f"user{i}@example.com") for i in (3, 4, 5)}


def test_an_audience_made_in_another_ad_account_is_not_reused(pinterest, sleeps):
    first = pinterest_loader(pinterest, audience_name="VIP").load(customers(2), context=LoadContext(sleep=sleeps))
    other = loader_for(
        "pinterest",
        {"access_token": pinterest.token, "ad_account_id": "42", "audience_name": "VIP", "api_base_url": pinterest.url},
    )
    second = other.load(customers(2), context=LoadContext(sleep=sleeps, previous=first.details))
    assert second.details["audience_id"] != first.details["audience_id"] and len(pinterest.audiences) == 2


def test_an_audience_deleted_at_pinterest_is_created_again(pinterest, sleeps):
    first = pinterest_loader(pinterest, audience_name="VIP").load(customers(2), context=LoadContext(sleep=sleeps))
    del pinterest.audiences[first.details["audience_id"]]
    second = pinterest_loader(pinterest, audience_name="VIP").load(
        customers(1), context=LoadContext(sleep=sleeps, previous=first.details)
    )
    audience_id = second.details["audience_id"]
    assert audience_id and audience_id != first.details["audience_id"]
    assert pinterest.audience_members(audience_id) == {sha256("user0@example.com")}


def test_replacing_with_no_identifier_is_an_error_not_a_silent_finish(pinterest, sleeps):
    first = pinterest_loader(pinterest, audience_name="VIP").load(customers(2), context=LoadContext(sleep=sleeps))
    audience_id = first.details["audience_id"]
    loader = pinterest_loader(pinterest, audience_id=audience_id, audience_operation="replace", audience_name="VIP")
    with pytest.raises(LoaderError) as info:
        loader.load([{"id": "a" * 32, "attributes": {}}], context=LoadContext(sleep=sleeps))
    assert info.value.permanent and f"audience {audience_id} still has its previous members" in str(info.value)
    assert len(pinterest.audience_members(audience_id)) == 2


def test_an_audience_the_destination_named_before_is_not_taken_over(pinterest, sleeps):
    created = pinterest_loader(pinterest, audience_name="VIP").load(customers(3), context=LoadContext(sleep=sleeps))
    audience_id = created.details["audience_id"]
    # The destination used to replace someone's audience by id; its audience_id was then cleared to create one.
    replaced = pinterest_loader(
        pinterest, audience_id=audience_id, audience_operation="replace", audience_name="Theirs"
    ).load(customers(4, start=10), context=LoadContext(sleep=sleeps))
    result = pinterest_loader(pinterest, audience_name="Mine").load(
        customers(1, start=20), context=LoadContext(sleep=sleeps, previous=replaced.details)
    )
    assert result.details["audience_id"] != audience_id and len(pinterest.audience_members(audience_id)) == 4
