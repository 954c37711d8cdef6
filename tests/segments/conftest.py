"""Segments fixtures: attribute definitions of the exclusion-marketing example, customers, the ACL cast."""

import pytest

from cdp.features import Feature
from cdp.models import Attribute, CustomerEntity
from cdp.services.auth import role_create, user_create
from segments.audience import audience_cache_forget
from segments.conditions import EXCLUSION_EXAMPLE
from segments.services import segment_create

# id, data type, computation
EXAMPLE_ATTRIBUTES = [
    ("consent", "bool", "last_value"),
    ("age", "int", "last_value"),
    ("gender", "string", "last_value"),
    ("total_revenue", "float", "sum"),
    ("ps_email_address", "string", "identifier_values"),
    ("birthday", "date", "last_value"),
    ("last_seen", "datetime", "last_event_time"),
    ("email_consent", "bool", "last_value"),
]

# The seed's exclusion segment: consent AND age >= 18 AND NOT gender = male AND total revenue = 0.
EXCLUSION_TREE = EXCLUSION_EXAMPLE


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    """The ACL cast is six users per test; real password hashing would dominate the run time."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def _audience_cache_fresh():
    audience_cache_forget()
    yield
    audience_cache_forget()


def example_attributes_create() -> dict[str, str]:
    for attribute_id, data_type, computation in EXAMPLE_ATTRIBUTES:
        Attribute.objects.update_or_create(
            id=attribute_id,
            defaults={
                "name": attribute_id.replace("_", " ").capitalize(),
                "data_type": data_type,
                "computation": computation,
                "path": "" if computation in ("identifier_values", "last_event_time") else f"traits.{attribute_id}",
                "category": "email" if computation == "identifier_values" else "",
            },
        )
    return {attribute_id: data_type for attribute_id, data_type, _ in EXAMPLE_ATTRIBUTES}


@pytest.fixture
def example_attributes(db):
    return example_attributes_create()


def entity(entity_id: str, **attributes) -> CustomerEntity:
    return CustomerEntity.objects.create(id=entity_id.ljust(32, "0"), attributes=attributes, attributes_stale=False)


def customers_create() -> dict[str, CustomerEntity]:
    """Five customers; the exclusion segment holds alice and carol."""
    return {
        "alice": entity(
            "a1",
            consent=[True],
            age=[30],
            gender=["female"],
            total_revenue=[0],
            ps_email_address=["alice@example.com"],
            email_consent=[True],
        ),  # fmt: skip
        "bob": entity(
            "b2", consent=[True], age=[40], gender=["male"], total_revenue=[0], ps_email_address=["bob@example.com"]
        ),  # fmt: skip
        "carol": entity(
            "c3",
            consent=[True],
            age=[18],
            total_revenue=[0],
            ps_email_address=["carol@example.com"],
            email_consent=[False],
        ),  # fmt: skip
        "dave": entity(
            "d4",
            consent=[False],
            age=[25],
            gender=["female"],
            total_revenue=[10.5],
            ps_email_address=["dave@example.com"],
        ),  # fmt: skip
        "erin": entity("e5", consent=[True], age=[16], gender=["female"], total_revenue=[0]),
    }


@pytest.fixture
def customers(example_attributes):
    return customers_create()


@pytest.fixture
def editor_role(db):
    return role_create(name="Marketer", features=[Feature.SEGMENTS_VIEW, Feature.SEGMENTS_EDIT,
                                                  Feature.CUSTOMERS_VIEW])  # fmt: skip


@pytest.fixture
def viewer_role(db):
    return role_create(name="Viewer", features=[Feature.SEGMENTS_VIEW, Feature.CUSTOMERS_VIEW])


@pytest.fixture
def cast(editor_role, viewer_role):
    """owner, granted viewer, granted editor, role member (grant to the viewer role), outsider, admin."""
    other_role = role_create(name="Other marketers", features=[Feature.SEGMENTS_VIEW, Feature.SEGMENTS_EDIT])
    return {
        "owner": user_create(username="owner", password="Owner-password-1!", role=editor_role),
        "viewer": user_create(username="viewer", password="Viewer-password-1!", role=editor_role),
        "editor": user_create(username="editor", password="Editor-password-1!", role=editor_role),
        "role_member": user_create(username="rolemember", password="Role-password-1!", role=other_role),
        "outsider": user_create(username="stranger", password="Stranger-password-1!", role=editor_role),
        "admin": user_create(username="boss", password="Boss-password-1!", is_superuser=True),
    }


@pytest.fixture
def exclusion_segment(customers, cast):
    return segment_create(owner=cast["owner"], name="Exclusion", conditions=EXCLUSION_TREE, tags=["campaign"])
