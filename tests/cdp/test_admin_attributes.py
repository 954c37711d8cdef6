import pytest

from cdp.models import Attribute, CustomerEntity, StaleEntity

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
