"""manage.py recompute_attributes, and the attribute list's "up to date" status in the admin."""

import re
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from cdp.models import Attribute, CustomerEntity, StaleEntity
from cdp.services import attributes as svc
from tests.cdp.test_attributes import events_add, values

pytestmark = pytest.mark.django_db


@pytest.fixture
def customers(web_source):
    Attribute.objects.all().delete()
    svc.attribute_create(id="orders", name="Orders", computation="count", data_type="int", event_types=["order"])
    made = [CustomerEntity.objects.create() for _ in range(3)]
    for n, entity in enumerate(made):
        events_add(web_source, entity, [("order", {"customer": n})] * (n + 1))
    return made


def run(*args) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command("recompute_attributes", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def test_the_queue_is_worked_off_with_a_progress_bar(customers):
    assert StaleEntity.objects.count() == 3
    out, err = run()
    assert "recomputed: 3 customers" in out
    assert "3/3" in err  # tqdm's bar
    assert [values(c)["orders"] for c in customers] == [[1], [2], [3]]
    assert not StaleEntity.objects.exists()
    assert "recomputed: 0 customers" in run("--no-progress")[0]


def test_all_and_one_customer(customers):
    run("--no-progress")
    CustomerEntity.objects.update(attributes={})
    out, _ = run("--entity", customers[1].pk.upper(), "--no-progress")
    assert "recomputed: 1 customer in" in out
    assert values(customers[1])["orders"] == [2] and values(customers[0]) == {}
    out, _ = run("--all", "--no-progress")
    assert "recomputed: 3 customers" in out
    assert values(customers[0])["orders"] == [1]


def test_all_works_the_queue_off_itself_whatever_the_broker(customers, django_capture_on_commit_callbacks):
    """--all queues everyone without handing them to a task: in-process tasks (no broker) would recompute them at
    commit, before the progress bar, and a broker that is down would fail the command."""
    run("--no-progress")
    CustomerEntity.objects.update(attributes={})
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        out, err = run("--all")
    assert "recomputed: 3 customers" in out and "3/3" in err
    assert not callbacks
    assert [values(c)["orders"] for c in customers] == [[1], [2], [3]]


def test_bad_arguments_are_named(customers):
    with pytest.raises(CommandError, match="no customer entity 'f{32}'"):
        run("--entity", "f" * 32)
    with pytest.raises(CommandError, match="--all or --entity"):
        run("--all", "--entity", customers[0].pk)


def test_the_admin_says_whether_values_are_up_to_date(customers, admin_user, client):
    client.force_login(admin_user)
    page = client.get("/admin/cdp/attribute/").content.decode()
    assert "Recomputing:" in page and "3 customers" in page
    # How long the oldest has waited: whether the workers keep up.
    StaleEntity.objects.filter(pk=customers[0].pk).update(queued=timezone.now() - timedelta(minutes=10))
    page = client.get("/admin/cdp/attribute/").content.decode()
    assert re.search(r"the\s+longest for <span[^>]*>10(\xa0|&nbsp;| )minutes</span>", page), page[:3000]
    run("--no-progress")
    page = client.get("/admin/cdp/attribute/").content.decode()
    assert "Every customer&#x27;s values are up to date." in page or "Every customer's values are up to date." in page
