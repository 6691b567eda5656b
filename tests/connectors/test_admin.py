import json
from datetime import timedelta
from functools import partial

import factory
import pytest
from django import forms
from django.contrib import admin
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils.html import escape
from django.utils.http import urlencode
from django_celery_beat.models import PeriodicTask

from connectors import base as connectors_base
from connectors import tasks
from connectors.admin import TypeMappingAdmin
from connectors.base import Connector, CredentialField, Page, ToolItem, registered_connectors
from connectors.client import RetryPolicy
from connectors.ingest import PageStore
from connectors.models import (
    FieldMapping,
    Integration,
    IntegrationBacklog,
    IntegrationPair,
    IntegrationRun,
    LinkRule,
    PendingLink,
    Person,
    PersonAccount,
    RawRecord,
    Scope,
    StatusMapping,
    SyncError,
    SyncRun,
    ToolConnection,
    TypeMapping,
    WebhookDelivery,
)
from connectors.selectors import load_mapping_set
from tests.factories import (
    BASE_TIME,
    ArtifactFactory,
    FieldMappingFactory,
    IntegrationFactory,
    IntegrationPairFactory,
    IntegrationRunFactory,
    LinkRuleFactory,
    PartnerFactory,
    PersonAccountFactory,
    PersonFactory,
    ProductFactory,
    ScopeFactory,
    StaffFactory,
    StatusMappingFactory,
    SyncErrorFactory,
    SyncRunFactory,
    TeamFactory,
    ToolConnectionFactory,
    TypeMappingFactory,
    UserFactory,
    artifact_model,
)
from vsm.choices import LinkKind
from vsm.models import Artifact, ArtifactModel

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("eager_tasks")]

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


# --- The connector framework's admin ----------------------------------------------------------------
#
# Pages are driven like a browser: a form is read from its page, changed and posted back (`submitted`).
# A tool that does not answer is a loopback port nobody listens on; the client's back-off is made instant.

SECRET_TOKEN = "tok-SECRET-123"
UNREACHABLE_URL = "http://127.0.0.1:9"
MAX_CHANGELIST_QUERIES = 15
STORY_FIELDS = "assignee, description, release, story_points"
REVENUE_ON_STORY = (
    f"“revenue” is not a field of Story; its fields are: {STORY_FIELDS}. "
    "(“revenue” fills the artifact's value only on models that have a revenue field.)"
)


def admin_url(model, view: str, *args) -> str:
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_{view}", args=args)


def submitted(response, **changes) -> dict:
    """What the browser sends for the page's form and inline formsets, with `changes` applied."""
    data = {}

    def add(form):
        for name, field in form.fields.items():
            bound = form[name]
            value = bound.value()
            if isinstance(field.widget, forms.CheckboxInput):
                if value:
                    data[bound.html_name] = "on"
            elif isinstance(field.widget, forms.MultiWidget):
                parts = value if isinstance(value, list) else field.widget.decompress(value)
                for index, part in enumerate(parts):
                    data[f"{bound.html_name}_{index}"] = "" if part is None else str(part)
            else:
                data[bound.html_name] = "" if value is None else str(value)

    add(response.context["adminform"].form)
    for inline in response.context["inline_admin_formsets"]:
        add(inline.formset.management_form)
        for form in inline.formset.forms:
            add(form)
    data.update({name: "" if value is None else value for name, value in changes.items()})
    return data


def inline_rows(prefix: str, rows: list[dict], initial: int = 0) -> dict:
    data = {
        f"{prefix}-TOTAL_FORMS": len(rows),
        f"{prefix}-INITIAL_FORMS": initial,
        f"{prefix}-MIN_NUM_FORMS": 0,
        f"{prefix}-MAX_NUM_FORMS": 1000,
    }
    for index, row in enumerate(rows):
        data.update({f"{prefix}-{index}-{name}": value for name, value in row.items()})
    return data


def messages_of(response) -> list[str]:
    return [str(message) for message in response.context["messages"]]


def html(response) -> str:
    return response.content.decode()


def secret_connection(**kwargs) -> ToolConnection:
    return ToolConnectionFactory(
        kind="jira",
        options={"flavour": "cloud"},
        credentials={"email": "a@b.c", "api_token": SECRET_TOKEN},
        **kwargs,
    )


def unreachable_connection() -> ToolConnection:
    return ToolConnectionFactory(
        kind="jira",
        base_url=UNREACHABLE_URL,
        options={"flavour": "cloud"},
        credentials={"email": "a@b.c", "api_token": "x"},
        requests_per_second=1000,
    )


@pytest.fixture
def instant_retries(monkeypatch):
    """The client retries connection errors with back-off; here the waits take no time."""
    monkeypatch.setattr(RetryPolicy, "backoff", lambda self, attempt, unit_random: 0.0)


@pytest.fixture
def run_on_commit(django_capture_on_commit_callbacks):
    """Actions enqueue on commit; the test's transaction never commits, so run them as the request ends."""
    return partial(django_capture_on_commit_callbacks, execute=True)


def act(client, model, action: str, objects, **query):
    """Run a changelist action on `objects`, from the changelist filtered by `query`."""
    url = admin_url(model, "changelist") + (f"?{urlencode(query)}" if query else "")
    data = {"action": action, ACTION_CHECKBOX_NAME: [obj.pk for obj in objects]}
    return client.post(url, data, follow=True)


def story() -> ArtifactModel:
    return artifact_model("story")


def type_mapping_form(connection, *, statuses=(), fields=(), **overrides) -> dict:
    data = {
        "connection": connection.pk,
        "tool_type": "Story",
        "artifact_model": story().pk,
        "flow_item_type": "",
        "priority": 100,
        "condition_path": "",
        "condition_value": "",
        **inline_rows("status_mappings", [{"tool_status": s, "flow_state": state} for s, state in statuses]),
        **inline_rows(
            "field_mappings",
            [
                {"tool_path": path, "model_field": name, "transform": "none", "value_map": value_map}
                for path, name, value_map in fields
            ],
        ),
    }
    data.update(overrides)
    return data


# Row builders whose related objects are all distinct, so a lookup per row would show in the count.


def connection_rows(count: int) -> None:
    for tool_connection in build_connections(count):
        SyncErrorFactory(connection=tool_connection, scope=ScopeFactory(connection=tool_connection))


def scope_rows(count: int) -> None:
    for scope in ScopeFactory.create_batch(count, team=factory.SubFactory(TeamFactory)):
        SyncRunFactory(scope=scope, outcome="failed")


def type_mapping_rows(count: int) -> None:
    for mapping in TypeMappingFactory.create_batch(count, flow_item_type=None):
        StatusMappingFactory(type_mapping=mapping)
        FieldMappingFactory(type_mapping=mapping)


def raw_record_rows(count: int) -> None:
    for scope in ScopeFactory.create_batch(count):
        RawRecord.objects.create(
            connection=scope.connection,
            scope=scope,
            external_id=f"id-{scope.pk}",
            key=f"RAW-{scope.pk}",
            payload={"key": f"RAW-{scope.pk}"},
            digest="0" * 64,
            fetched_at=BASE_TIME,
        )


def pending_link_rows(count: int) -> None:
    for artifact in ArtifactFactory.create_batch(count):
        PendingLink.objects.create(
            source=artifact,
            target_connection=ToolConnectionFactory(),
            target_key=f"LATER-{artifact.pk}",
            kind=LinkKind.CHILD_OF,
            first_seen_at=BASE_TIME,
        )


def webhook_delivery_rows(count: int) -> None:
    for n, tool_connection in enumerate(ToolConnectionFactory.create_batch(count)):
        WebhookDelivery.objects.create(
            connection=tool_connection,
            delivery_id=f"delivery-{tool_connection.pk}",
            event="jira:issue_updated",
            item_keys=[f"ABC-{n}"],
            received_at=BASE_TIME + timedelta(minutes=n),
        )


ROW_BUILDERS = {
    ToolConnection: connection_rows,
    Scope: scope_rows,
    TypeMapping: type_mapping_rows,
    StatusMapping: lambda count: StatusMappingFactory.create_batch(count),
    FieldMapping: lambda count: FieldMappingFactory.create_batch(count),
    SyncRun: lambda count: SyncRunFactory.create_batch(count),
    SyncError: lambda count: SyncErrorFactory.create_batch(count),
    RawRecord: raw_record_rows,
    PendingLink: pending_link_rows,
    LinkRule: lambda count: LinkRuleFactory.create_batch(count),
    WebhookDelivery: webhook_delivery_rows,
    Integration: lambda count: IntegrationFactory.create_batch(count),
    IntegrationPair: lambda count: IntegrationPairFactory.create_batch(count),
    IntegrationRun: lambda count: IntegrationRunFactory.create_batch(count),
    IntegrationBacklog: lambda count: [
        IntegrationBacklog.objects.create(integration=IntegrationFactory(), artifact=ArtifactFactory())
        for _ in range(count)
    ],
    Person: lambda count: PersonFactory.create_batch(count),
    PersonAccount: lambda count: PersonAccountFactory.create_batch(count),
}
CONNECTOR_MODELS = list(ROW_BUILDERS)
EDITABLE_MODELS = [ToolConnection, Scope, TypeMapping, StatusMapping, FieldMapping, Integration, Person]
RECORD_MODELS = [
    SyncRun,
    SyncError,
    RawRecord,
    PendingLink,
    WebhookDelivery,
    IntegrationPair,
    IntegrationRun,
    IntegrationBacklog,
]


def model_id(model) -> str:
    return model.__name__


def test_every_connectors_model_has_an_admin_and_a_row_builder_here():
    registered = {model for model in admin.site._registry if model._meta.app_label == "connectors"}
    assert registered == set(CONNECTOR_MODELS)


@pytest.mark.parametrize("model", CONNECTOR_MODELS, ids=model_id)
def test_connector_changelists_do_not_query_per_row(staff_client, model, django_assert_max_num_queries):
    url = admin_url(model, "changelist")
    ROW_BUILDERS[model](1)
    few_rows = queries_to_render(staff_client, url)
    ROW_BUILDERS[model](PAGE_SIZE - 1)

    with django_assert_max_num_queries(MAX_CHANGELIST_QUERIES) as full_page:
        response = staff_client.get(url)

    assert response.status_code == 200
    assert len(response.context["cl"].result_list) == PAGE_SIZE
    assert len(full_page) == few_rows


@pytest.mark.parametrize("model", CONNECTOR_MODELS, ids=model_id)
def test_connector_change_pages_load(staff_client, model):
    ROW_BUILDERS[model](1)
    obj = model.objects.get()
    assert staff_client.get(admin_url(model, "change", obj.pk)).status_code == 200
    assert staff_client.get(admin_url(model, "history", obj.pk)).status_code == 200


@pytest.mark.parametrize("model", EDITABLE_MODELS, ids=model_id)
def test_add_pages_load(staff_client, model):
    assert staff_client.get(admin_url(model, "add")).status_code == 200


@pytest.mark.parametrize("model", RECORD_MODELS, ids=model_id)
def test_sync_records_are_read_only(staff_client, model):
    ROW_BUILDERS[model](1)
    obj = model.objects.get()

    assert staff_client.get(admin_url(model, "add")).status_code == 403
    response = staff_client.get(admin_url(model, "change", obj.pk))
    assert response.status_code == 200
    assert not response.context["has_change_permission"]
    assert not response.context["has_delete_permission"]
    assert staff_client.post(admin_url(model, "change", obj.pk), {}).status_code == 403


# --- Tool connections: credentials are write-only ----------------------------------------------------


def secret_pages(connection: ToolConnection) -> dict[str, str]:
    scope = ScopeFactory(connection=connection)
    error = SyncErrorFactory(scope=scope, connection=connection)
    mapping = TypeMappingFactory(connection=connection)
    return {
        "change form": admin_url(ToolConnection, "change", connection.pk),
        "changelist": admin_url(ToolConnection, "changelist"),
        "history": admin_url(ToolConnection, "history", connection.pk),
        "delete page": admin_url(ToolConnection, "delete", connection.pk),
        "scope": admin_url(Scope, "change", scope.pk),
        "sync error": admin_url(SyncError, "change", error.pk),
        "type mapping": admin_url(TypeMapping, "change", mapping.pk),
    }


def test_stored_secrets_appear_on_no_admin_page(staff_client):
    connection = secret_connection()
    change_url = admin_url(ToolConnection, "change", connection.pk)
    # An edit that re-enters the token, so the history page has an entry about it to show.
    form = submitted(staff_client.get(change_url), name="Renamed Jira", credential__api_token=SECRET_TOKEN)
    assert staff_client.post(change_url, form).status_code == 302

    for page, url in secret_pages(connection).items():
        response = staff_client.get(url)
        assert response.status_code == 200, page
        assert SECRET_TOKEN not in html(response), page
    history = html(staff_client.get(admin_url(ToolConnection, "history", connection.pk)))
    assert "Changed Name and API token (Cloud)." in history


def test_a_typed_secret_is_not_echoed_when_the_form_comes_back_with_errors(staff_client):
    connection = secret_connection()
    url = admin_url(ToolConnection, "change", connection.pk)
    form = submitted(staff_client.get(url), base_url="not a url", credential__api_token="tok-SECRET-456")

    response = staff_client.post(url, form)

    assert response.status_code == 200
    assert response.context["adminform"].form.errors["base_url"]
    assert "tok-SECRET-456" not in html(response)
    assert ToolConnection.objects.get(pk=connection.pk).credentials["api_token"] == SECRET_TOKEN


def test_credential_fields_are_write_only_and_say_whether_a_value_is_stored(staff_client):
    connection = secret_connection()

    response = staff_client.get(admin_url(ToolConnection, "change", connection.pk))

    form = response.context["adminform"].form
    token = form.fields["credential__api_token"]
    assert isinstance(token.widget, forms.PasswordInput)
    assert not token.widget.render_value
    assert "leave empty to keep the stored value" in token.help_text
    assert "not set" in form.fields["credential__personal_access_token"].help_text
    assert all(form[name].value() in (None, "") for name in form.fields if name.startswith("credential__"))
    content = html(response)
    assert "API token (Cloud): stored" in content
    assert "Personal access token (Data Center): not set" in content


def test_an_empty_credential_box_keeps_the_stored_value_and_a_filled_one_replaces_it(staff_client):
    connection = secret_connection()
    url = admin_url(ToolConnection, "change", connection.pk)

    response = staff_client.post(url, submitted(staff_client.get(url), name="Kept token"))
    assert response.status_code == 302
    stored = ToolConnection.objects.get(pk=connection.pk)
    assert (stored.name, stored.credentials["api_token"]) == ("Kept token", SECRET_TOKEN)
    assert stored.credentials["email"] == "a@b.c"

    response = staff_client.post(url, submitted(staff_client.get(url), credential__api_token="tok-NEW"))
    assert response.status_code == 302
    stored = ToolConnection.objects.get(pk=connection.pk)
    assert (stored.credentials["api_token"], stored.credentials["email"]) == ("tok-NEW", "a@b.c")


def test_saving_a_connection_leaves_its_health_alone(staff_client):
    connection = secret_connection()
    url = admin_url(ToolConnection, "change", connection.pk)
    form = submitted(staff_client.get(url), name="Renamed")
    # A sync records the connection's health while the admin has the form open.
    ToolConnection.objects.filter(pk=connection.pk).update(last_success_at=BASE_TIME)

    assert staff_client.post(url, form).status_code == 302

    assert ToolConnection.objects.get(pk=connection.pk).last_success_at == BASE_TIME


def test_credentials_that_cannot_be_decrypted_are_reported_and_survive_an_edit(staff_client):
    connection = secret_connection()
    ToolConnection.objects.filter(pk=connection.pk).update(credentials="made-with-another-key")
    url = admin_url(ToolConnection, "change", connection.pk)

    response = staff_client.get(url)
    assert "unreadable with the current VSM_CREDENTIALS_KEY" in html(response)
    assert staff_client.post(url, submitted(response, name="Renamed")).status_code == 302

    saved = ToolConnection.objects.get(pk=connection.pk)
    # Still unreadable, so not overwritten: with the right key it may be readable again.
    assert (saved.name, saved.credentials.unreadable) == ("Renamed", True)


def test_kind_is_a_choice_of_the_registered_connectors(staff_client):
    response = staff_client.get(admin_url(ToolConnection, "add"))

    choices = [value for value, _ in response.context["adminform"].form.fields["kind"].choices if value]
    assert choices == list(registered_connectors())
    assert 'href="?kind=jira"' in html(response)


def test_the_add_form_for_a_kind_shows_its_options_and_credentials_and_stores_them(staff_client):
    url = admin_url(ToolConnection, "add") + "?kind=jira"
    response = staff_client.get(url)
    form = response.context["adminform"].form
    assert form.fields["option__flavour"].choices == [("cloud", "cloud"), ("datacenter", "datacenter")]
    assert form["option__flavour"].value() == "cloud"
    assert isinstance(form.fields["credential__email"].widget, forms.TextInput)

    data = submitted(
        response,
        name="New Jira",
        base_url="https://new.example.test",
        option__flavour="datacenter",
        credential__personal_access_token="pat-123",
    )
    response = staff_client.post(url, data)

    assert response.status_code == 302
    connection = ToolConnection.objects.get(name="New Jira")
    assert connection.kind == "jira"
    assert connection.options["flavour"] == "datacenter"
    assert connection.options["epic_link_field"] == "customfield_10014"
    assert connection.credentials["personal_access_token"] == "pat-123"
    assert response.url == admin_url(ToolConnection, "changelist")


def test_a_connection_added_without_credentials_opens_again_to_enter_them(staff_client):
    data = {
        "kind": "jira",
        "name": "Bare Jira",
        "base_url": "https://bare.example.test",
        "requests_per_second": 10,
    }

    response = staff_client.post(admin_url(ToolConnection, "add"), data, follow=True)

    connection = ToolConnection.objects.get(name="Bare Jira")
    assert connection.options == {"flavour": "cloud", "epic_link_field": "customfield_10014"}
    assert response.redirect_chain[-1][0] == admin_url(ToolConnection, "change", connection.pk)
    assert "now enter its Jira credentials" in " ".join(messages_of(response))
    assert "credential__api_token" in response.context["adminform"].form.fields


def test_a_required_credential_must_be_entered_unless_stored(staff_client, monkeypatch):
    class VaultConnector(Connector):
        slug = "vault"
        name = "Vault"
        credential_fields = (CredentialField("token", "Token"),)

    monkeypatch.setitem(connectors_base._registry, "vault", VaultConnector)
    data = {
        "kind": "vault",
        "name": "Vault",
        "base_url": "https://vault.example.test",
        "requests_per_second": 10,
    }

    response = staff_client.post(admin_url(ToolConnection, "add"), data)

    assert response.status_code == 200
    assert response.context["adminform"].form.errors["credential__token"] == [
        "Token is required for Vault: enter it."
    ]
    assert not ToolConnection.objects.exists()


def test_a_connection_of_a_kind_without_a_connector_can_still_be_edited(staff_client):
    connection = ToolConnectionFactory(kind="fogbugz", options={"org": "acme"})
    url = admin_url(ToolConnection, "change", connection.pk)

    response = staff_client.get(url)
    assert "fogbugz (no connector installed)" in html(response)
    assert staff_client.post(url, submitted(response, name="Old FogBugz")).status_code == 302

    connection.refresh_from_db()
    assert (connection.kind, connection.name, connection.options) == (
        "fogbugz",
        "Old FogBugz",
        {"org": "acme"},
    )


def test_changelist_shows_health_and_counts_only_open_errors(staff_client):
    healthy = ToolConnectionFactory(name="Healthy", last_success_at=BASE_TIME)
    unhealthy = ToolConnectionFactory(
        name="Unhealthy", last_success_at=BASE_TIME, last_error_at=BASE_TIME + timedelta(hours=1)
    )
    ToolConnectionFactory(name="Untested")
    scope = ScopeFactory(connection=unhealthy)
    SyncErrorFactory.create_batch(2, scope=scope)
    SyncErrorFactory(scope=scope, resolved_at=BASE_TIME)

    response = staff_client.get(admin_url(ToolConnection, "changelist"))

    rows = {connection.name: connection for connection in response.context["cl"].result_list}
    assert rows["Unhealthy"].open_error_count == 2
    assert rows["Healthy"].open_error_count == 0
    content = html(response)
    for label in ("healthy", "unhealthy", "unknown"):
        assert f">{label}</span>" in content
    assert "last success: 2026-01-05 09:00; last error: 2026-01-05 10:00" in content
    assert f"{admin_url(SyncError, 'changelist')}?connection__id__exact={unhealthy.pk}" in content
    assert healthy.pk


def test_testing_an_unreachable_connection_is_an_error_message(staff_client, instant_retries):
    connection = unreachable_connection()

    response = act(staff_client, ToolConnection, "check_connection", [connection])

    assert response.status_code == 200
    (message,) = messages_of(response)
    assert message.startswith(f"{connection}: the test failed:")
    assert "attempts" in message
    connection.refresh_from_db()
    assert connection.last_error_at is not None
    assert connection.healthy is False


def test_testing_a_connection_without_credentials_is_an_error_message(staff_client):
    connection = ToolConnectionFactory(kind="jira", options={"flavour": "cloud"})

    response = act(staff_client, ToolConnection, "check_connection", [connection])

    assert messages_of(response) == [
        f"{connection}: the test failed: Jira Cloud needs the account email and an API token"
    ]


def test_a_connection_that_answers_is_reported_with_who_we_are(staff_client, monkeypatch):
    connection = secret_connection()
    monkeypatch.setattr("connectors.services.connection_check", lambda c: f"connected to {c.base_url} as Ada")

    response = act(staff_client, ToolConnection, "check_connection", [connection])

    assert messages_of(response) == [f"{connection}: connected to {connection.base_url} as Ada."]


def test_the_change_page_button_tests_the_connection(staff_client, instant_retries):
    connection = unreachable_connection()
    url = reverse("admin:connectors_toolconnection_test", args=[connection.pk])
    change_url = admin_url(ToolConnection, "change", connection.pk)
    assert url in html(staff_client.get(change_url))

    assert staff_client.get(url).status_code == 405
    response = staff_client.post(url, follow=True)

    assert response.redirect_chain == [(change_url, 302)]
    assert "the test failed" in messages_of(response)[0]


# --- Scopes ------------------------------------------------------------------------------------------


def scope_add_form(staff_client, tool_connection, product, **changes) -> dict:
    response = staff_client.get(admin_url(Scope, "add"))
    fields = {"connection": tool_connection.pk, "name": "Board", "query": "ABC", "product": product.pk}
    return submitted(response, **fields, **changes)


def test_saving_a_scope_creates_and_updates_its_periodic_task(staff_client):
    connection, product = ToolConnectionFactory(), ProductFactory()

    response = staff_client.post(admin_url(Scope, "add"), scope_add_form(staff_client, connection, product))

    assert response.status_code == 302
    scope = Scope.objects.get()
    task = PeriodicTask.objects.get(pk=scope.periodic_task_id)
    assert task.name == f"Sync scope {scope.pk}: {connection} / Board"
    assert task.task == "connectors.tasks.scope_sync_task"
    assert json.loads(task.args) == [scope.pk]
    assert (task.interval.every, task.interval.period, task.enabled) == (15, "minutes", True)

    url = admin_url(Scope, "change", scope.pk)
    form = submitted(staff_client.get(url), interval_minutes=60)
    form.pop("enabled")
    assert staff_client.post(url, form).status_code == 302

    task.refresh_from_db()
    assert (task.interval.every, task.enabled) == (60, False)
    assert PeriodicTask.objects.count() == 1


def test_scope_form_explains_a_team_of_another_product_and_a_zero_interval(staff_client):
    connection, product = ToolConnectionFactory(), ProductFactory(name="Portal")
    team = TeamFactory(name="Mobile", product=ProductFactory(name="App"))
    form = scope_add_form(staff_client, connection, product, team=team.pk, interval_minutes=0)

    response = staff_client.post(admin_url(Scope, "add"), form)

    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert errors["team"] == ["Mobile is a team of App, not of Portal: pick one of Portal's teams."]
    assert errors["interval_minutes"] == ["The schedule syncs at most once a minute: enter 1 or more."]
    assert not Scope.objects.exists()
    assert not PeriodicTask.objects.exists()


def test_scope_list_shows_the_last_run_outcome(staff_client):
    scope = ScopeFactory()
    SyncRunFactory(scope=scope, outcome="success", started_at=BASE_TIME)
    SyncRunFactory(scope=scope, outcome="failed", started_at=BASE_TIME + timedelta(hours=1))
    ScopeFactory(name="Never synced")

    response = staff_client.get(admin_url(Scope, "changelist"))

    rows = {row.name: row for row in response.context["cl"].result_list}
    assert rows[scope.name].last_run_outcome == "failed"
    assert rows["Never synced"].last_run_outcome is None
    assert f"?scope__id__exact={scope.pk}" in html(response)


def test_scope_page_shows_the_newest_twenty_runs_read_only_and_still_saves(staff_client):
    scope = ScopeFactory()
    runs = [SyncRunFactory(scope=scope, started_at=BASE_TIME + timedelta(minutes=n)) for n in range(25)]
    url = admin_url(Scope, "change", scope.pk)

    response = staff_client.get(url)

    (inline,) = response.context["inline_admin_formsets"]
    shown = [form.instance for form in inline.formset.forms]
    assert shown == list(reversed(runs))[:20]
    assert not inline.has_add_permission and not inline.has_change_permission
    assert staff_client.post(url, submitted(response, name="Renamed")).status_code == 302
    assert Scope.objects.get(pk=scope.pk).name == "Renamed"


def test_the_query_help_comes_from_the_connector(staff_client):
    scope = ScopeFactory(connection=ToolConnectionFactory(kind="jira"))

    response = staff_client.get(admin_url(Scope, "change", scope.pk))

    help_text = response.context["adminform"].form.fields["query"].help_text
    assert help_text == "Jira: A project key (ABC) or a JQL filter without ORDER BY."


def test_sync_now_queues_a_manual_sync_and_an_unreachable_tool_is_a_failed_run(
    staff_client, instant_retries, run_on_commit
):
    scope = ScopeFactory(connection=unreachable_connection())

    with run_on_commit():
        response = act(staff_client, Scope, "sync_now", [scope])

    assert response.status_code == 200
    assert messages_of(response) == [f"Queued a sync of “{scope}”; its run shows on the scope page."]
    run = SyncRun.objects.get(scope=scope)
    assert (run.trigger, run.outcome) == ("manual", "failed")
    assert "attempts" in run.message


def test_sync_now_enqueues_only_once_the_transaction_commits(staff_client, monkeypatch, run_on_commit):
    scope = ScopeFactory()
    queued = []
    monkeypatch.setattr(tasks.scope_sync_task, "delay", lambda *args: queued.append(args))

    with run_on_commit() as callbacks:
        act(staff_client, Scope, "sync_now", [scope])
        assert queued == []

    assert len(callbacks) == 1
    assert queued == [(scope.pk, "manual")]


def test_full_scan_queues_a_full_scan(staff_client, instant_retries, run_on_commit):
    scope = ScopeFactory(connection=unreachable_connection())

    with run_on_commit():
        response = act(staff_client, Scope, "full_scan", [scope])

    assert "Queued a full scan" in messages_of(response)[0]
    run = SyncRun.objects.get(scope=scope)
    assert (run.trigger, run.outcome) == ("full_scan", "failed")


def test_the_sync_now_button_on_the_scope_page(staff_client, instant_retries, run_on_commit):
    scope = ScopeFactory(connection=unreachable_connection())
    url = reverse("admin:connectors_scope_sync_now", args=[scope.pk])
    assert url in html(staff_client.get(admin_url(Scope, "change", scope.pk)))

    with run_on_commit():
        response = staff_client.post(url, follow=True)

    assert response.redirect_chain == [(admin_url(Scope, "change", scope.pk), 302)]
    assert SyncRun.objects.get(scope=scope).trigger == "manual"


def test_previewing_an_unreachable_tool_is_an_error_message(staff_client, instant_retries):
    scope = ScopeFactory(connection=unreachable_connection())

    response = act(staff_client, Scope, "preview_mapping", [scope])

    assert response.status_code == 200
    assert response.redirect_chain[-1][0] == admin_url(Scope, "change", scope.pk)
    (message,) = messages_of(response)
    assert message.startswith(f"No preview: could not read from {scope.connection}:")
    assert not SyncRun.objects.exists()


def test_preview_asks_for_exactly_one_scope(staff_client):
    scopes = ScopeFactory.create_batch(2)

    response = act(staff_client, Scope, "preview_mapping", scopes)

    assert messages_of(response) == ["Select exactly one scope to preview its mapping."]


class SampleConnector:
    """Stands in for a provider: one page of items, as a tool would return them."""

    def __init__(self, items):
        self.items = items

    def read_changes(self, spec, since):
        yield Page(items=self.items)

    def close(self):
        pass


def tool_item(key: str, item_type: str, status: str, **fields) -> ToolItem:
    return ToolItem(
        native_id=key,
        key=key,
        item_type=item_type,
        url=f"https://jira.example.test/browse/{key}",
        title=f"{key} title",
        status=status,
        created=BASE_TIME,
        updated=BASE_TIME,
        fields=fields,
    )


def test_preview_lists_how_a_sample_maps_and_what_is_missing_and_saves_nothing(staff_client, monkeypatch):
    scope = ScopeFactory()
    mapping = TypeMappingFactory(connection=scope.connection)
    StatusMappingFactory(type_mapping=mapping, tool_status="In Progress", flow_state="active")
    FieldMappingFactory(
        type_mapping=mapping, tool_path="assignee", model_field="assignee", transform="person"
    )
    items = [
        tool_item("ABC-1", "Story", "In Progress", assignee={"displayName": "Ada Lovelace"}),
        tool_item("ABC-2", "Story", "Blocked"),
        tool_item("ABC-3", "Bug", "Open"),
    ]
    monkeypatch.setattr("connectors.services.connector_instance", lambda *a, **k: SampleConnector(items))

    response = act(staff_client, Scope, "preview_mapping", [scope])

    assert response.redirect_chain[-1][0] == reverse(
        "admin:connectors_scope_preview_mapping", args=[scope.pk]
    )
    lines = {line.key: line for line in response.context["lines"]}
    first = lines["ABC-1"]
    assert (first.tool_type, first.tool_status, first.artifact_model) == ("Story", "In Progress", "Story")
    assert (first.flow_item_type, first.flow_state, first.problems) == ("Feature", "Active", [])
    assert '"assignee": "Ada Lovelace"' in first.fields
    assert lines["ABC-2"].problems == ["unmapped status “Blocked”: add a status mapping"]
    assert lines["ABC-3"].problems == [f"no type mapping for type “Bug” in {scope.connection}"]
    content = html(response)
    assert escape("no type mapping for type “Bug”") in content
    assert "Ada Lovelace" in content
    assert not Artifact.objects.exists()
    assert not RawRecord.objects.exists()
    assert not SyncError.objects.exists()


# --- Type, field and status mappings -----------------------------------------------------------------


def post_type_mapping(staff_client, data):
    return staff_client.post(admin_url(TypeMapping, "add"), data)


def all_errors(response) -> list[str]:
    """Every error message on the page: the form's, and each inline form's and formset's."""
    forms_with_errors = [response.context["adminform"].form]
    messages = []
    for inline in response.context["inline_admin_formsets"]:
        forms_with_errors += inline.formset.forms
        messages += inline.formset.non_form_errors()
    return messages + [
        message for form in forms_with_errors for field in form.errors.values() for message in field
    ]


def test_a_type_mapping_with_its_statuses_and_fields_saves(staff_client):
    connection = ToolConnectionFactory()
    data = type_mapping_form(
        connection,
        statuses=[("In Progress", "active"), ("Done", "done")],
        fields=[("priority.name", "release", '{"P1": "Highest", "P2": 2}'), ("assignee", "assignee", "")],
    )

    response = post_type_mapping(staff_client, data)

    assert response.status_code == 302, all_errors(response)
    mapping = TypeMapping.objects.get()
    assert {s.tool_status: s.flow_state for s in mapping.status_mappings.all()} == {
        "In Progress": "active",
        "Done": "done",
    }
    assert {f.model_field: f.value_map for f in mapping.field_mappings.all()} == {
        "release": {"P1": "Highest", "P2": 2},
        "assignee": {},
    }


def test_a_field_mapping_must_name_a_field_of_the_model(staff_client):
    data = type_mapping_form(ToolConnectionFactory(), fields=[("priority.name", "foo", "")])

    response = post_type_mapping(staff_client, data)

    assert response.status_code == 200
    assert f"“foo” is not a field of Story; its fields are: {STORY_FIELDS}." in all_errors(response)
    assert escape(f"“foo” is not a field of Story; its fields are: {STORY_FIELDS}.") in html(response)
    assert not TypeMapping.objects.exists()
    assert not FieldMapping.objects.exists()


def test_revenue_is_a_field_only_of_models_that_have_it(staff_client):
    connection = ToolConnectionFactory()
    on_story = type_mapping_form(connection, fields=[("customfield_1", "revenue", "")])

    response = post_type_mapping(staff_client, on_story)
    assert response.status_code == 200
    assert REVENUE_ON_STORY in all_errors(response)

    on_request = {**on_story, "artifact_model": artifact_model("request").pk}
    assert post_type_mapping(staff_client, on_request).status_code == 302
    assert FieldMapping.objects.get().model_field == "revenue"


def test_the_model_field_is_checked_against_the_model_chosen_in_the_same_submit(staff_client):
    mapping = TypeMappingFactory(artifact_model=artifact_model("request"))
    FieldMappingFactory(
        type_mapping=mapping, tool_path="customfield_1", model_field="revenue", transform="number"
    )
    url = admin_url(TypeMapping, "change", mapping.pk)

    response = staff_client.post(url, submitted(staff_client.get(url), artifact_model=story().pk))

    assert response.status_code == 200
    assert REVENUE_ON_STORY in all_errors(response)
    assert TypeMapping.objects.get().artifact_model == artifact_model("request")


@pytest.mark.parametrize(
    ("statuses", "message"),
    [
        (
            [("Done", "done"), ("Done", "canceled")],
            "The status “Done” is mapped twice: keep one mapping for it.",
        ),
        (
            [("Done", "done"), ("done", "done")],
            "The status “done” is mapped twice (as “Done”; statuses are compared ignoring case): "
            "keep one mapping for it.",
        ),
    ],
    ids=["same", "differing-in-case"],
)
def test_a_status_mapped_twice_is_a_form_error_not_a_crash(staff_client, statuses, message):
    response = post_type_mapping(staff_client, type_mapping_form(ToolConnectionFactory(), statuses=statuses))

    assert response.status_code == 200
    assert message in all_errors(response)
    assert escape(message) in html(response)
    assert not TypeMapping.objects.exists()


def test_a_new_status_that_repeats_a_saved_one_in_another_case_is_refused(staff_client):
    mapping = TypeMappingFactory()
    StatusMappingFactory(type_mapping=mapping, tool_status="Done", flow_state="done")
    url = admin_url(TypeMapping, "change", mapping.pk)
    data = submitted(staff_client.get(url))
    data.update(
        {
            "status_mappings-TOTAL_FORMS": 2,
            "status_mappings-1-tool_status": "DONE",
            "status_mappings-1-flow_state": "done",
            "status_mappings-1-type_mapping": mapping.pk,
        }
    )

    response = staff_client.post(url, data)

    assert response.status_code == 200
    assert (
        "The status “DONE” is mapped twice (as “Done”; statuses are compared ignoring case): "
        "keep one mapping for it."
    ) in all_errors(response)
    assert StatusMapping.objects.count() == 1


def test_renaming_one_status_and_deleting_its_twin_in_one_submit_is_fine(staff_client):
    mapping = TypeMappingFactory()
    StatusMappingFactory(type_mapping=mapping, tool_status="Done", flow_state="done")
    StatusMappingFactory(type_mapping=mapping, tool_status="Closed", flow_state="done")
    url = admin_url(TypeMapping, "change", mapping.pk)
    data = submitted(staff_client.get(url))
    # Ordered by status: 0 is Closed, 1 is Done.
    data.update({"status_mappings-0-tool_status": "done", "status_mappings-1-DELETE": "on"})

    response = staff_client.post(url, data)

    assert response.status_code == 302, all_errors(response)
    assert list(StatusMapping.objects.values_list("tool_status", flat=True)) == ["done"]


@pytest.mark.parametrize(
    ("value_map", "message"),
    [
        (
            '["P1", "P2"]',
            'Value map must be a JSON object like {"P1": "Highest"}: a tool value to a model value.',
        ),
        (
            '{"P1": ["Highest"]}',
            'Value map must be a JSON object like {"P1": "Highest"}: the value of “P1” must be a text, '
            "number or true/false, not a list.",
        ),
        ("{P1: Highest}", 'Value map must be a JSON object like {"P1": "Highest"}.'),
    ],
    ids=["a-list", "a-nested-value", "not-json"],
)
def test_a_value_map_must_be_an_object_of_plain_values(staff_client, value_map, message):
    data = type_mapping_form(ToolConnectionFactory(), fields=[("priority.name", "release", value_map)])

    response = post_type_mapping(staff_client, data)

    assert response.status_code == 200
    assert message in all_errors(response)
    assert escape(message) in html(response)
    assert not TypeMapping.objects.exists()


@pytest.mark.parametrize(
    ("condition", "field", "message"),
    [
        (
            {"condition_value": "backend"},
            "condition_path",
            "A condition value needs the field it is compared with: enter a path such as fields.labels, "
            "or empty the condition value.",
        ),
        (
            {"condition_path": "labels"},
            "condition_value",
            "A condition on labels needs the value it must equal (or contain): enter it, "
            "or empty the condition path.",
        ),
    ],
    ids=["value-without-path", "path-without-value"],
)
def test_a_condition_needs_both_its_path_and_its_value(staff_client, condition, field, message):
    response = post_type_mapping(staff_client, type_mapping_form(ToolConnectionFactory(), **condition))

    assert response.status_code == 200
    assert response.context["adminform"].form.errors[field] == [message]
    assert not TypeMapping.objects.exists()


def test_unknown_is_not_offered_as_a_flow_state(staff_client):
    mapping = TypeMappingFactory()
    inline_response = staff_client.get(admin_url(TypeMapping, "change", mapping.pk))
    standalone_response = staff_client.get(admin_url(StatusMapping, "add"))

    inline_form = inline_response.context["inline_admin_formsets"][0].formset.empty_form
    for form in (inline_form, standalone_response.context["adminform"].form):
        offered = [value for value, _ in form.fields["flow_state"].choices if value]
        assert offered == ["new", "waiting", "active", "done", "canceled"]


def test_type_mappings_pick_connection_model_and_flow_type_by_autocomplete(staff_client):
    mapping = TypeMappingFactory(connection=ToolConnectionFactory(name="Acme Jira"))
    assert set(TypeMappingAdmin.autocomplete_fields) == {"connection", "artifact_model", "flow_item_type"}

    response = staff_client.get(
        reverse("admin:autocomplete"),
        {
            "app_label": "connectors",
            "model_name": "statusmapping",
            "field_name": "type_mapping",
            "term": "acme",
        },
    )

    assert [result["id"] for result in response.json()["results"]] == [str(mapping.pk)]


def test_the_standalone_status_form_compares_with_saved_statuses_ignoring_case(staff_client):
    mapping = TypeMappingFactory()
    StatusMappingFactory(type_mapping=mapping, tool_status="Done", flow_state="done")
    data = {"type_mapping": mapping.pk, "tool_status": "done", "flow_state": "canceled"}

    response = staff_client.post(admin_url(StatusMapping, "add"), data)

    assert response.status_code == 200
    assert response.context["adminform"].form.errors["tool_status"] == [
        f"“Done” is already mapped to Done in {mapping}: change that mapping instead "
        "(statuses are compared ignoring case)."
    ]
    assert StatusMapping.objects.count() == 1


def test_the_standalone_field_form_checks_the_model_field(staff_client):
    mapping = TypeMappingFactory()
    data = {
        "type_mapping": mapping.pk,
        "tool_path": "x",
        "model_field": "foo",
        "transform": "none",
        "value_map": "",
    }

    response = staff_client.post(admin_url(FieldMapping, "add"), data)

    assert response.status_code == 200
    assert response.context["adminform"].form.errors["model_field"] == [
        f"“foo” is not a field of Story; its fields are: {STORY_FIELDS}."
    ]


# --- Sync errors -------------------------------------------------------------------------------------


def unmapped_status_error(scope: Scope, status: str = "Blocked") -> SyncError:
    """An “unmapped status” error as the ingest records it, by storing an item in that status."""
    mapping = TypeMappingFactory(connection=scope.connection)
    StatusMappingFactory(type_mapping=mapping, tool_status="In Progress")
    run = SyncRunFactory(scope=scope)
    PageStore(scope, load_mapping_set(scope.connection), run).save_page(
        Page(items=[tool_item("ABC-7", "Story", status)])
    )
    return SyncError.objects.get(fingerprint__startswith="unmapped-status:")


def test_sync_errors_list_open_ones_unless_asked(staff_client):
    open_error = SyncErrorFactory(item_key="OPEN-1")
    resolved = SyncErrorFactory(item_key="DONE-1", resolved_at=BASE_TIME)
    url = admin_url(SyncError, "changelist")

    def listed(**query):
        return list(staff_client.get(url, query).context["cl"].result_list)

    assert listed() == [open_error]
    assert listed(status="resolved") == [resolved]
    assert set(listed(status="all")) == {open_error, resolved}
    assert listed(status="all", q="DONE") == [resolved]


def test_retry_queues_each_open_error_about_an_item_on_commit(staff_client, monkeypatch, run_on_commit):
    retriable = SyncErrorFactory.create_batch(2)
    resolved = SyncErrorFactory(resolved_at=BASE_TIME)
    not_an_item = SyncErrorFactory(item_key="")
    queued = []
    monkeypatch.setattr(tasks.sync_error_retry_task, "delay", queued.append)

    with run_on_commit():
        response = act(staff_client, SyncError, "retry", [*retriable, resolved, not_an_item], status="all")

    assert sorted(queued) == sorted(error.pk for error in retriable)
    assert messages_of(response) == [
        "Queued 2 of 4 selected errors for a retry. The others are resolved already or not about one item: "
        "the next sync retries those."
    ]


def test_retrying_against_an_unreachable_tool_records_a_failed_run(
    staff_client, instant_retries, run_on_commit
):
    error = SyncErrorFactory(scope=ScopeFactory(connection=unreachable_connection()))

    with run_on_commit():
        response = act(staff_client, SyncError, "retry", [error])

    assert response.status_code == 200
    run = SyncRun.objects.get(scope=error.scope)
    assert (run.trigger, run.outcome) == ("manual", "failed")
    error.refresh_from_db()
    assert error.resolved_at is None


def test_mark_resolved_resolves_open_errors(staff_client):
    errors = SyncErrorFactory.create_batch(2)

    response = act(staff_client, SyncError, "mark_resolved", errors)

    assert messages_of(response) == ["Marked 2 errors resolved."]
    assert not SyncError.objects.filter(resolved_at__isnull=True).exists()


def test_map_this_status_opens_the_status_form_filled_in(staff_client):
    scope = ScopeFactory()
    error = unmapped_status_error(scope, "Blocked")
    mapping = TypeMapping.objects.get(connection=scope.connection)
    link = reverse("admin:connectors_syncerror_map_status", args=[error.pk])
    assert link in html(staff_client.get(admin_url(SyncError, "changelist")))
    assert link in html(staff_client.get(admin_url(SyncError, "change", error.pk)))

    response = staff_client.get(link, follow=True)

    assert response.status_code == 200
    form = response.context["adminform"].form
    assert (form["type_mapping"].value(), form["tool_status"].value()) == (str(mapping.pk), "Blocked")
    assert f'<option value="{mapping.pk}" selected>' in html(response)
    data = {"type_mapping": mapping.pk, "tool_status": "Blocked", "flow_state": "waiting"}
    assert staff_client.post(admin_url(StatusMapping, "add"), data).status_code == 302
    assert mapping.status_mappings.get(tool_status="Blocked").flow_state == "waiting"


def test_map_this_status_still_fills_in_the_status_when_the_type_mapping_changed_since(staff_client):
    scope = ScopeFactory()
    error = unmapped_status_error(scope, "Blocked")
    TypeMapping.objects.update(tool_type="Renamed")

    response = staff_client.get(
        reverse("admin:connectors_syncerror_map_status", args=[error.pk]), follow=True
    )

    form = response.context["adminform"].form
    assert (form["type_mapping"].value(), form["tool_status"].value()) == (None, "Blocked")


def test_only_open_unmapped_status_errors_offer_map_this_status(staff_client):
    SyncErrorFactory()
    resolved = unmapped_status_error(ScopeFactory())
    SyncError.objects.filter(pk=resolved.pk).update(resolved_at=BASE_TIME)

    response = staff_client.get(admin_url(SyncError, "changelist"), {"status": "all"})

    assert "Map this status" not in html(response)


def test_a_sync_error_shows_its_payload_pretty_printed(staff_client):
    error = SyncErrorFactory(
        scope=ScopeFactory(connection=secret_connection()), payload={"key": "ABC-1", "n": 1}
    )

    response = staff_client.get(admin_url(SyncError, "change", error.pk))

    content = html(response)
    assert escape('{\n  "key": "ABC-1",\n  "n": 1\n}') in content
    assert SECRET_TOKEN not in content


# --- Raw records and pending links -------------------------------------------------------------------


def test_raw_records_are_found_by_key_or_external_id_and_filtered_by_connection(staff_client):
    raw_record_rows(3)
    wanted = RawRecord.objects.first()
    url = admin_url(RawRecord, "changelist")

    def listed(**query):
        return list(staff_client.get(url, query).context["cl"].result_list)

    assert listed(q=wanted.key) == [wanted]
    assert listed(q=wanted.external_id) == [wanted]
    assert listed(connection__id__exact=wanted.connection_id) == [wanted]
    content = html(staff_client.get(admin_url(RawRecord, "change", wanted.pk)))
    assert escape(f'{{\n  "key": "{wanted.key}"\n}}') in content


def test_pending_links_show_what_they_wait_for(staff_client):
    pending_link_rows(1)
    link = PendingLink.objects.get()

    response = staff_client.get(admin_url(PendingLink, "changelist"), {"q": link.target_key})

    assert list(response.context["cl"].result_list) == [link]
    content = html(response)
    assert link.target_key in content
    assert str(link.target_connection) in content
