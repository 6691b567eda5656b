import factory
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from connectors.models import ToolConnection
from tests.factories import PartnerFactory, StaffFactory, ToolConnectionFactory, UserFactory

pytestmark = pytest.mark.django_db

PAGE_SIZE = 100


def changelist_url() -> str:
    return reverse("admin:connectors_toolconnection_changelist")


def build_connections(count: int) -> list[ToolConnection]:
    # Each with its own partner, so a partner lookup per row would show in the query count.
    return ToolConnectionFactory.create_batch(count, partner=factory.SubFactory(PartnerFactory))


def queries_to_render(client, url: str) -> int:
    # The first visit fills process-wide caches (content types); count a second, warm one.
    client.get(url)
    with CaptureQueriesContext(connection) as queries:
        assert client.get(url).status_code == 200
    return len(queries)


@pytest.fixture
def staff_client(client):
    client.force_login(StaffFactory())
    return client


def test_changelist_renders_a_full_page_without_a_query_per_row(staff_client, django_assert_max_num_queries):
    build_connections(1)
    few_rows = queries_to_render(staff_client, changelist_url())
    build_connections(PAGE_SIZE)

    with django_assert_max_num_queries(15) as full_page:
        response = staff_client.get(changelist_url())

    assert response.status_code == 200
    assert len(response.context["cl"].result_list) == PAGE_SIZE
    assert len(full_page) == few_rows


def test_changelist_filters_by_kind_and_partner_and_searches_base_url(staff_client):
    partner = PartnerFactory()
    wanted = ToolConnectionFactory(
        kind="github", partner=partner, base_url="https://github.example.test/acme"
    )
    ToolConnectionFactory(kind="github", base_url="https://github.example.test/other")
    ToolConnectionFactory(kind="jira", partner=partner, base_url="https://jira.example.test/acme")

    query = {"kind": "github", "partner__id__exact": partner.pk, "q": "acme"}

    response = staff_client.get(changelist_url(), query)

    assert response.status_code == 200
    assert list(response.context["cl"].result_list) == [wanted]


def test_change_and_add_pages_load(staff_client):
    (tool_connection,) = build_connections(1)

    change_url = reverse("admin:connectors_toolconnection_change", args=[tool_connection.pk])
    assert staff_client.get(change_url).status_code == 200
    assert staff_client.get(reverse("admin:connectors_toolconnection_add")).status_code == 200


def test_partner_is_picked_by_autocomplete(staff_client):
    PartnerFactory(name="Acme Delivery")

    response = staff_client.get(
        reverse("admin:autocomplete"),
        {"app_label": "connectors", "model_name": "toolconnection", "field_name": "partner", "term": "acme"},
    )

    assert response.status_code == 200
    assert [result["text"] for result in response.json()["results"]] == ["Acme Delivery"]


def test_non_staff_users_are_sent_to_the_admin_login(client):
    client.force_login(UserFactory())

    url = changelist_url()

    response = client.get(url)

    assert response.status_code == 302
    assert response.url == f"{reverse('admin:login')}?next={url}"
