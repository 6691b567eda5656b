import json
from datetime import timedelta

import factory
import pytest
from django.contrib import admin
from django.contrib.admin.views.autocomplete import AutocompleteJsonView
from django.contrib.admin.widgets import AutocompleteMixin
from django.contrib.auth import get_user_model
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils.html import escape

from connectors.models import Integration, Person, Scope, ToolConnection, TypeMapping
from tests.factories import (
    BASE_TIME,
    ArtifactFactory,
    ArtifactLinkFactory,
    ArtifactModelFactory,
    FlowItemTypeFactory,
    IntegrationFactory,
    ModelFieldFactory,
    PartnerFactory,
    PartnerGrantFactory,
    PartnerMembershipFactory,
    PersonFactory,
    ProductFactory,
    ProductRoleFactory,
    ScopeFactory,
    StaffFactory,
    StateTransitionFactory,
    TeamFactory,
    ToolConnectionFactory,
    TypeMappingFactory,
    UserFactory,
    artifact_model,
)
from vsm.models import (
    Artifact,
    ArtifactLink,
    ArtifactModel,
    FlowItemType,
    ModelField,
    Partner,
    PartnerGrant,
    PartnerMembership,
    Product,
    ProductRole,
    StateTransition,
    Team,
)

pytestmark = pytest.mark.django_db

# Session, user, pagination and filter choices: a changelist page needs about ten queries whatever its size.
MAX_CHANGELIST_QUERIES = 15
PAGE_SIZE = 100
PROJECT_APPS = {"vsm", "connectors"}
# Tables that grow with use: a plain <select> of them would load every row into the page.
LARGE_TABLES = {Artifact, Product, Team, Partner, ToolConnection, get_user_model()}

# Each builder makes rows whose related objects are all distinct, so a lookup per row would show.
ROW_FACTORIES = {
    Product: ProductFactory,
    Partner: PartnerFactory,
    PartnerGrant: PartnerGrantFactory,
    PartnerMembership: PartnerMembershipFactory,
    Team: TeamFactory,
    ProductRole: ProductRoleFactory,
    FlowItemType: FlowItemTypeFactory,
    ArtifactModel: ArtifactModelFactory,
    ModelField: ModelFieldFactory,
    Artifact: ArtifactFactory,
    StateTransition: StateTransitionFactory,
    ArtifactLink: ArtifactLinkFactory,
}
ROW_OVERRIDES = {
    Team: {"partner": factory.SubFactory(PartnerFactory)},
    Artifact: {"team": factory.SubFactory(TeamFactory)},
}
VSM_MODELS = list(ROW_FACTORIES)


def build_rows(model, count: int) -> list:
    return ROW_FACTORIES[model].create_batch(count, **ROW_OVERRIDES.get(model, {}))


def admin_url(model, view: str, *args) -> str:
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_{view}", args=args)


def model_id(model) -> str:
    return model.__name__


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


def test_every_vsm_model_has_an_admin_and_a_row_builder_here():
    registered = {model for model in admin.site._registry if model._meta.app_label == "vsm"}
    assert registered == set(VSM_MODELS)


@pytest.mark.parametrize("model", VSM_MODELS, ids=model_id)
def test_changelist_renders_a_full_page_without_a_query_per_row(
    staff_client, model, django_assert_max_num_queries
):
    url = admin_url(model, "changelist")
    build_rows(model, 1)
    few_rows = queries_to_render(staff_client, url)
    build_rows(model, PAGE_SIZE)

    with django_assert_max_num_queries(MAX_CHANGELIST_QUERIES) as full_page:
        response = staff_client.get(url)

    assert response.status_code == 200
    assert len(response.context["cl"].result_list) == PAGE_SIZE
    content = response.content.decode()
    rendered = [
        obj for obj in response.context["cl"].result_list if admin_url(model, "change", obj.pk) in content
    ]
    assert len(rendered) == PAGE_SIZE
    assert len(full_page) == few_rows


@pytest.mark.parametrize("model", VSM_MODELS, ids=model_id)
def test_change_and_add_pages_load(staff_client, model):
    (obj,) = build_rows(model, 1)
    assert staff_client.get(admin_url(model, "change", obj.pk)).status_code == 200
    assert staff_client.get(admin_url(model, "add")).status_code == 200


def artifact_with_history(transitions: int, links_each_way: int) -> Artifact:
    artifact = ArtifactFactory(team=TeamFactory())
    StateTransitionFactory.create_batch(transitions, artifact=artifact)
    ArtifactLinkFactory.create_batch(links_each_way, source=artifact)
    ArtifactLinkFactory.create_batch(links_each_way, target=artifact)
    return artifact


def test_artifact_change_page_shows_long_history_in_a_bounded_number_of_queries(
    staff_client, django_assert_max_num_queries
):
    short = artifact_with_history(transitions=1, links_each_way=1)
    short_page = queries_to_render(staff_client, admin_url(Artifact, "change", short.pk))
    long = artifact_with_history(transitions=50, links_each_way=10)

    with django_assert_max_num_queries(25) as long_page:
        response = staff_client.get(admin_url(Artifact, "change", long.pk))

    assert response.status_code == 200
    assert len(long_page) == short_page
    rows = {
        inline.formset.prefix: len(inline.formset.forms)
        for inline in response.context["inline_admin_formsets"]
    }
    assert rows == {"transitions": 50, "outgoing_links": 10, "incoming_links": 10}
    for link in long.outgoing_links.all():
        assert escape(str(link.target)) in response.content.decode()


def test_artifact_history_inlines_are_read_only(staff_client):
    artifact = artifact_with_history(transitions=2, links_each_way=1)
    response = staff_client.get(admin_url(Artifact, "change", artifact.pk))

    for inline in response.context["inline_admin_formsets"]:
        assert not inline.has_add_permission
        assert not inline.has_change_permission
        assert not inline.has_delete_permission
        assert not inline.formset.forms[0].fields.keys() - {"id", inline.formset.fk.name}


def artifact_post_data(artifact: Artifact, **changes) -> dict:
    """What the artifact change form posts, with its three read-only inlines left as they are."""
    data = {
        "product": artifact.product_id,
        "key": artifact.key,
        "title": artifact.title,
        "url": artifact.url,
        "artifact_model": artifact.artifact_model_id,
        "flow_item_type": artifact.flow_item_type_id or "",
        "team": artifact.team_id or "",
        "connection": artifact.connection_id,
        "external_id": artifact.external_id,
        "tool_status": artifact.tool_status,
        "flow_state": artifact.flow_state,
        "fields": json.dumps(artifact.fields),
        "value": "",
    }
    for name in ("created_at", "first_started_at", "done_at", "updated_at", "deleted_at"):
        moment = getattr(artifact, name)
        data[f"{name}_0"] = f"{moment:%Y-%m-%d}" if moment else ""
        data[f"{name}_1"] = f"{moment:%H:%M:%S}" if moment else ""
    for prefix, rows in (
        ("transitions", artifact.transitions.count()),
        ("outgoing_links", artifact.outgoing_links.count()),
        ("incoming_links", artifact.incoming_links.count()),
    ):
        data |= {f"{prefix}-TOTAL_FORMS": rows, f"{prefix}-INITIAL_FORMS": rows}
    return data | changes


def test_artifact_edit_saves_and_leaves_its_history_alone(staff_client):
    artifact = artifact_with_history(transitions=3, links_each_way=2)
    history_before = list(artifact.transitions.values_list("at", "to_status", "to_state"))

    response = staff_client.post(
        admin_url(Artifact, "change", artifact.pk),
        artifact_post_data(artifact, title="Fixed by an admin", fields=""),
    )

    assert response.status_code == 302
    artifact.refresh_from_db()
    assert artifact.title == "Fixed by an admin"
    assert artifact.fields == {}
    assert list(artifact.transitions.values_list("at", "to_status", "to_state")) == history_before
    assert artifact.outgoing_links.count() == artifact.incoming_links.count() == 2


@pytest.mark.parametrize(
    ("changes", "field", "message"),
    [
        (
            {"fields": '["not", "an", "object"]'},
            "fields",
            'Fields must be a JSON object of field name to value, e.g. {"priority": "High"}.',
        ),
        (
            {"done_at_0": "2026-01-04", "done_at_1": "09:00:00"},
            "done_at",
            "Done at is before created at (2026-01-05 09:00). Enter a time on or after it, "
            "or correct created at.",
        ),
        (
            {"created_at_0": "2026-01-09", "created_at_1": "10:30:00"},
            "done_at",
            "Done at is before created at (2026-01-09 10:30). Enter a time on or after it, "
            "or correct created at.",
        ),
    ],
    ids=["fields-not-an-object", "done-moved-before-created", "created-moved-after-done"],
)
def test_artifact_form_explains_what_is_wrong(staff_client, changes, field, message):
    artifact = ArtifactFactory(title="Untouched", done_at=BASE_TIME + timedelta(days=2))

    response = staff_client.post(
        admin_url(Artifact, "change", artifact.pk), artifact_post_data(artifact, title="Edited", **changes)
    )

    assert response.status_code == 200
    assert response.context["adminform"].form.errors[field] == [message]
    assert escape(message) in response.content.decode()
    artifact.refresh_from_db()
    assert artifact.title == "Untouched"


def test_artifact_keeps_a_wrong_tool_timestamp_when_another_field_is_edited(staff_client):
    artifact = ArtifactFactory(done_at=BASE_TIME - timedelta(days=1))

    response = staff_client.post(
        admin_url(Artifact, "change", artifact.pk), artifact_post_data(artifact, title="Retitled")
    )

    assert response.status_code == 302
    artifact.refresh_from_db()
    assert artifact.title == "Retitled"


def model_field_data(**changes) -> dict:
    data = {
        "artifact_model": artifact_model("story").pk,
        "name": "colour",
        "label": "Colour",
        "field_type": "text",
        "allowed_values": "",
        "partner_visible": "on",
    }
    return data | changes


CHOICE_NEEDS_VALUES = 'A choice field needs its allowed values: enter a JSON list such as ["Yes", "No"].'


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (
            {"allowed_values": '{"a": 1}'},
            'Allowed values must be a JSON list of strings, e.g. ["High", "Medium", "Low"].',
        ),
        (
            {"field_type": "choice", "allowed_values": "[1, 2]"},
            'Allowed values must be a JSON list of strings, e.g. ["High", "Medium", "Low"].',
        ),
        ({"field_type": "choice", "allowed_values": "[]"}, CHOICE_NEEDS_VALUES),
        ({"field_type": "choice", "allowed_values": ""}, CHOICE_NEEDS_VALUES),
        (
            {"field_type": "choice", "allowed_values": '["Red", " "]'},
            "Allowed values must not be blank: remove the empty entries.",
        ),
        (
            {"field_type": "choice", "allowed_values": '["Red", "Blue", "Red"]'},
            "Each allowed value must appear once; repeated: Red.",
        ),
        (
            {"allowed_values": '["Red"]'},
            "Only choice fields have allowed values: empty this list, "
            "or set the type to “One of the allowed values”.",
        ),
    ],
    ids=["object", "numbers", "choice-empty-list", "choice-empty-box", "blank", "repeated", "not-a-choice"],
)
def test_model_field_form_explains_wrong_allowed_values(staff_client, changes, message):
    response = staff_client.post(admin_url(ModelField, "add"), model_field_data(**changes))

    assert response.status_code == 200
    assert response.context["adminform"].form.errors["allowed_values"] == [message]
    assert escape(message) in response.content.decode()
    assert not ModelField.objects.filter(name="colour").exists()


@pytest.mark.parametrize(
    ("changes", "saved_values"),
    [
        ({"field_type": "text", "allowed_values": ""}, []),
        ({"field_type": "choice", "allowed_values": '["Red", "Blue"]'}, ["Red", "Blue"]),
    ],
    ids=["text-empty-box", "choice"],
)
def test_model_field_form_saves_valid_allowed_values(staff_client, changes, saved_values):
    response = staff_client.post(admin_url(ModelField, "add"), model_field_data(**changes))

    assert response.status_code == 302
    assert ModelField.objects.get(name="colour").allowed_values == saved_values


def test_model_field_inline_under_artifact_model_validates_the_same_way(staff_client):
    data = {
        "name": "Spike",
        "slug": "spike",
        "description": "",
        "default_flow_item_type": "",
        "fields-TOTAL_FORMS": 1,
        "fields-INITIAL_FORMS": 0,
        "fields-0-name": "outcome",
        "fields-0-label": "Outcome",
        "fields-0-field_type": "choice",
        "fields-0-allowed_values": "[]",
        "fields-0-partner_visible": "on",
    }

    response = staff_client.post(admin_url(ArtifactModel, "add"), data)

    assert response.status_code == 200
    assert escape(CHOICE_NEEDS_VALUES) in response.content.decode()
    assert not ArtifactModel.objects.filter(slug="spike").exists()


def test_standard_artifact_model_stays_editable_but_not_its_standard_flag(staff_client):
    story = artifact_model("story")
    response = staff_client.get(admin_url(ArtifactModel, "change", story.pk))

    form = response.context["adminform"].form
    assert {"name", "slug", "description", "default_flow_item_type"} <= form.fields.keys()
    assert "is_standard" not in form.fields
    assert "is_standard" in response.context["adminform"].readonly_fields


def test_flow_item_type_form_explains_a_wrong_colour(staff_client):
    message = "“red” is not a colour code. Enter # and six hex digits (#rrggbb), e.g. #4e79a7."
    data = {"name": "Spike", "slug": "spike", "color": "red", "order": 5}

    response = staff_client.post(admin_url(FlowItemType, "add"), data)

    assert response.status_code == 200
    assert response.context["adminform"].form.errors["color"] == [message]
    assert escape(message) in response.content.decode()
    assert not FlowItemType.objects.filter(slug="spike").exists()


def product_data(time_zone: str) -> dict:
    data = {"name": "Checkout", "slug": "checkout", "description": "", "time_zone": time_zone}
    for prefix in ("partner_grants", "roles", "teams"):
        data |= {f"{prefix}-TOTAL_FORMS": 0, f"{prefix}-INITIAL_FORMS": 0}
    return data


def test_product_form_explains_an_unknown_time_zone(staff_client):
    message = "“Mars/Olympus” is not an IANA time zone. Enter a name such as Europe/Berlin or UTC."

    response = staff_client.post(admin_url(Product, "add"), product_data("Mars/Olympus"))

    assert response.status_code == 200
    (error,) = response.context["adminform"].form.errors["time_zone"]
    assert error.startswith(message)
    assert escape(message) in response.content.decode()
    assert not Product.objects.filter(slug="checkout").exists()


def test_product_form_suggests_the_time_zone_meant(staff_client):
    response = staff_client.post(admin_url(Product, "add"), product_data("europe/berlin"))

    assert response.status_code == 200
    assert "Did you mean Europe/Berlin?" in response.content.decode()


def test_product_form_saves_a_valid_time_zone(staff_client):
    response = staff_client.post(admin_url(Product, "add"), product_data("Europe/Berlin"))

    assert response.status_code == 302
    assert Product.objects.get(slug="checkout").time_zone == "Europe/Berlin"


def admins_and_inlines(request):
    """Every admin of this project's models, and every inline under them, as the given request sees it."""
    for model, model_admin in admin.site._registry.items():
        if model._meta.app_label in PROJECT_APPS:
            yield model_admin
            yield from model_admin.get_inline_instances(request)


def test_every_foreign_key_to_a_large_table_is_picked_by_autocomplete(rf):
    request = rf.get("/admin/")
    request.user = StaffFactory()
    dropdowns = []

    for model_admin in admins_and_inlines(request):
        if isinstance(model_admin, admin.options.InlineModelAdmin):
            form = model_admin.get_formset(request).form
        else:
            form = model_admin.get_form(request)
        for name, field in form.base_fields.items():
            queryset = getattr(field, "queryset", None)
            if queryset is None or queryset.model not in LARGE_TABLES:
                continue
            if not isinstance(getattr(field.widget, "widget", field.widget), AutocompleteMixin):
                dropdowns.append(f"{model_admin.model.__name__}.{name} in {type(model_admin).__name__}")

    assert dropdowns == []


def test_artifact_autocomplete_finds_artifacts_by_key(staff_client):
    wanted = ArtifactFactory.create_batch(3)
    ArtifactFactory(key="XYZ-1", title="Something else")

    response = staff_client.get(
        "/admin/autocomplete/",
        {"app_label": "vsm", "model_name": "artifactlink", "field_name": "source", "term": "ABC"},
    )

    assert response.status_code == 200
    found = {int(result["id"]) for result in response.json()["results"]}
    assert found == {artifact.pk for artifact in wanted}


def autocomplete_fields() -> list:
    """Each (model, foreign key) the admin picks by autocomplete, from admins and inlines alike."""
    pairs = set()
    for model, model_admin in admin.site._registry.items():
        if model._meta.app_label in PROJECT_APPS:
            pairs |= {(model, name) for name in model_admin.autocomplete_fields}
            pairs |= {
                (inline.model, name) for inline in model_admin.inlines for name in inline.autocomplete_fields
            }
    return [
        pytest.param(model, name, id=f"{model.__name__}.{name}")
        for model, name in sorted(pairs, key=lambda pair: (pair[0].__name__, pair[1]))
    ]


AUTOCOMPLETE_PAGE = AutocompleteJsonView.paginate_by
TARGET_FACTORIES = {
    ToolConnection: ToolConnectionFactory,
    Product: ProductFactory,
    Partner: PartnerFactory,
    Team: TeamFactory,
    Artifact: ArtifactFactory,
    get_user_model(): UserFactory,
    TypeMapping: TypeMappingFactory,
    ArtifactModel: ArtifactModelFactory,
    FlowItemType: FlowItemTypeFactory,
    Scope: ScopeFactory,
    Integration: IntegrationFactory,
    Person: PersonFactory,
}


@pytest.mark.parametrize(("model", "field_name"), autocomplete_fields())
def test_every_autocomplete_answers_without_a_query_per_result(
    staff_client, model, field_name, django_assert_max_num_queries
):
    target = model._meta.get_field(field_name).related_model
    TARGET_FACTORIES[target].create_batch(AUTOCOMPLETE_PAGE + 5)
    query = {
        "app_label": model._meta.app_label,
        "model_name": model._meta.model_name,
        "field_name": field_name,
    }

    with django_assert_max_num_queries(6):
        response = staff_client.get("/admin/autocomplete/", query)

    assert response.status_code == 200
    assert len(response.json()["results"]) == AUTOCOMPLETE_PAGE


@pytest.mark.parametrize("model", VSM_MODELS, ids=model_id)
def test_non_staff_users_are_sent_to_the_admin_login(client, model):
    client.force_login(UserFactory())
    url = admin_url(model, "changelist")

    response = client.get(url)

    assert response.status_code == 302
    assert response.url == f"{reverse('admin:login')}?next={url}"


def test_anonymous_visitors_are_sent_to_the_admin_login(client):
    response = client.get(reverse("admin:index"))

    assert response.status_code == 302
    assert response.url.startswith(reverse("admin:login"))


@pytest.mark.parametrize(
    "holder",
    [
        lambda artifact: artifact.product,
        lambda artifact: artifact.connection,
        lambda artifact: artifact.artifact_model,
        lambda artifact: artifact.flow_item_type,
    ],
    ids=["product", "connection", "artifact model", "flow item type"],
)
def test_what_artifacts_refer_to_cannot_be_deleted_from_admin(staff_client, holder):
    target = holder(ArtifactFactory())
    response = staff_client.get(admin_url(type(target), "delete", target.pk))
    assert response.status_code == 403
    changelist = staff_client.get(admin_url(type(target), "changelist"))
    assert "delete_selected" not in changelist.content.decode()
    assert type(target).objects.filter(pk=target.pk).exists()


def test_a_product_without_artifacts_can_be_deleted(staff_client):
    product = ProductFactory()
    assert staff_client.get(admin_url(Product, "delete", product.pk)).status_code == 200
    assert staff_client.post(admin_url(Product, "delete", product.pk), {"post": "yes"}).status_code == 302
    assert not Product.objects.filter(pk=product.pk).exists()
