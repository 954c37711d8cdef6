from pathlib import Path

import pytest
from django.conf import settings
from django.core.exceptions import ValidationError

from cdp.models import Attribute, CustomerEntity, StaleEntity
from cdp.services import attributes as svc
from segments.services import segment_create

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff(client, admin_user):
    client.force_login(admin_user)
    return client


def _form(**overrides):
    data = {"id": "lifetime_orders", "name": "Lifetime orders", "description": "", "data_type": "int", "unit": "",
            "computation": "count", "category": "", "event_types": "Order Completed", "path": ""}  # fmt: skip
    data.update(overrides)
    return data


def test_an_analyst_adds_an_attribute_and_customers_are_queued(staff):
    entity = CustomerEntity.objects.create()
    response = staff.post("/admin/cdp/attribute/add/", _form())
    assert response.status_code == 302, response.content.decode()[:2000]
    attribute = Attribute.objects.get(pk="lifetime_orders")
    assert attribute.event_types == ["Order Completed"]
    assert StaleEntity.objects.filter(pk=entity.pk).exists()


def test_the_services_checks_show_under_the_form(staff):
    response = staff.post("/admin/cdp/attribute/add/", _form(id="bad_sum", computation="sum", data_type="float"))
    assert response.status_code == 200
    assert not Attribute.objects.filter(pk="bad_sum").exists()
    assert b"errorlist" in response.content


def test_attribute_pages_render(staff, default_attributes):
    assert staff.get("/admin/cdp/attribute/").status_code == 200
    assert staff.get("/admin/cdp/attribute/total_revenue/change/").status_code == 200


def test_the_sources_chooser_fits_the_form_s_column(staff, default_attributes):
    # Its two fixed-width boxes made the form scroll sideways on a laptop's screen; the stylesheet lets them shrink.
    for url in ("/admin/cdp/attribute/add/", "/admin/cdp/attribute/total_revenue/change/"):
        assert "cdp/attribute_form.css" in staff.get(url).content.decode(), url
    css = (Path(settings.BASE_DIR) / "cdp/static/cdp/attribute_form.css").read_text()
    assert ".selector .selector-available, .selector .selector-chosen { min-width: 0;" in css


def _segment_on(attribute_id: str, name: str):
    conditions = {"operator": "and", "children": [{"attribute": attribute_id, "operator": "gt", "value": 100}]}
    return segment_create(owner=None, name=name, conditions=conditions)


def test_deleting_attributes_asks_first_and_keeps_one_a_segment_uses_saying_why(staff, default_attributes):
    _segment_on("total_revenue", "Big spenders")
    selected = {"action": "attributes_delete", "_selected_action": ["total_revenue", "events_count"]}

    confirmation = staff.post("/admin/cdp/attribute/", selected)
    assert confirmation.status_code == 200
    assert "every customer&#x27;s values" in confirmation.content.decode()
    assert Attribute.objects.filter(pk="events_count").exists()

    response = staff.post("/admin/cdp/attribute/", {**selected, "confirm": "yes"}, follow=True)

    assert response.status_code == 200
    page = response.content.decode()
    assert "“Total revenue” (total_revenue) cannot be deleted: it is used by 1 segment (“Big spenders”)." in page
    assert "1 attribute(s) deleted." in page
    assert Attribute.objects.filter(pk="total_revenue").exists()
    assert not Attribute.objects.filter(pk="events_count").exists()


def test_a_data_type_change_that_would_break_a_segment_shows_under_the_field(staff, default_attributes):
    _segment_on("total_revenue", "Big spenders")
    revenue = Attribute.objects.get(pk="total_revenue")
    form = _form(id=revenue.pk, name=revenue.name, computation="last_value", data_type="string", event_types="",
                 path="properties.revenue")  # fmt: skip

    response = staff.post("/admin/cdp/attribute/total_revenue/change/", form)

    assert response.status_code == 200
    assert "“Total revenue” cannot become text" in response.content.decode()
    assert Attribute.objects.get(pk="total_revenue").data_type == "float"


def test_event_types_are_one_per_line_and_a_line_break_is_never_part_of_one(staff):
    response = staff.post("/admin/cdp/attribute/add/", _form(
        id="refunds", name="Refunds", event_types="Order Refunded\r\nOrder Cancelled\r\n Order Refunded\r\n\r\n"
    ))  # fmt: skip
    assert response.status_code == 302, response.content.decode()[:2000]
    assert Attribute.objects.get(pk="refunds").event_types == ["Order Refunded", "Order Cancelled"]
    page = staff.get("/admin/cdp/attribute/refunds/change/").content.decode()
    assert "Order Refunded\nOrder Cancelled" in page


def test_an_api_event_type_with_a_line_break_is_refused(staff):
    from cdp.services.attributes import attribute_validate

    with pytest.raises(ValidationError, match="control character"):
        attribute_validate(computation="count", data_type="int", event_types=["Order Completed\r\nOrder Refunded"])


@pytest.mark.parametrize(
    ("data_type", "stored"),
    [("int", ["blue"]), ("float", [""]), ("int", [True]), ("datetime", ["soon"]), ("date", [None]), ("int", [None])],
)
def test_values_of_another_shape_never_break_the_page(staff, data_type, stored):
    """Values stored before a data type change stay until their customers are recomputed: the chart skips them."""
    from cdp.services.attributes import attribute_create

    attribute_create(id="fav", name="Favourite", computation="last_value", data_type=data_type, path="fav")
    CustomerEntity.objects.create(attributes={"fav": stored})
    CustomerEntity.objects.create(attributes={"fav": [7] if data_type in ("int", "float") else ["2026-02-03"]})
    page = staff.get("/admin/cdp/attribute/fav/change/")
    assert page.status_code == 200
    assert "Values across customers" in page.content.decode()


def test_whole_numbers_are_drawn_in_ranges_of_whole_numbers(db):
    from cdp.selectors import attribute_histogram

    orders = Attribute.objects.create(id="orders", name="Orders", computation="count", data_type="int")
    CustomerEntity.objects.bulk_create(CustomerEntity(attributes={"orders": [n]}) for n in (0, 0, 1, 3, 25))
    bars = attribute_histogram(attribute=orders)["bars"]
    assert [bar["label"] for bar in bars] == ["0 – 2", "3 – 5", "6 – 8", "9 – 11", "12 – 14", "15 – 17", "18 – 20",
                                               "21 – 23", "24 – 25"]  # fmt: skip
    assert [bar["count"] for bar in bars] == [3, 1, 0, 0, 0, 0, 0, 0, 1]
    # Few values: one bar each.
    CustomerEntity.objects.filter(attributes__orders=[25]).delete()
    assert [(b["label"], b["count"]) for b in attribute_histogram(attribute=orders)["bars"]] == [
        ("0", 2), ("1", 1), ("2", 0), ("3", 1)
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("before", "after"),
    [
        # identifier values of the email category -> the last value of a payload path
        (dict(computation="identifier_values", data_type="string", category="email"),
         dict(computation="last_value", data_type="string", path="traits.plan", category="email")),
        # the last value of a path for some event types -> identifier values (path and types still posted)
        (dict(computation="last_value", data_type="string", path="traits.plan", event_types=["identify"]),
         dict(computation="identifier_values", data_type="string", category="email", path="traits.plan",
              event_types="identify")),
        # the last value of a path -> a count (the path still posted)
        (dict(computation="last_value", data_type="string", path="traits.plan"),
         dict(computation="count", data_type="int", path="traits.plan", event_types="")),
    ],
)  # fmt: skip
def test_switching_the_computation_on_the_change_page_drops_what_the_page_hides(
    staff, default_categories, before, after
):
    """The page hides the fields that do not apply to the new computation, but they are posted as they were: the
    definition saved has none of them, instead of an error on a hidden field."""
    svc.attribute_create(id="plan", name="Plan", **before)
    form = _form(id="plan", name="Plan", **{"event_types": "", "path": "", "category": "", **after})
    response = staff.post("/admin/cdp/attribute/plan/change/", form)
    assert response.status_code == 302, response.content.decode()[:3000]
    saved = Attribute.objects.get(pk="plan")
    assert saved.computation == after["computation"]
    expected = {
        "identifier_values": ("email", "", []),
        "last_value": ("", "traits.plan", []),
        "count": ("", "", []),
    }[after["computation"]]
    assert (saved.category, saved.path, saved.event_types) == expected
