"""What the data migration 0002_standard_models puts in the database."""

import importlib

import pytest
from django.apps import apps

from vsm.choices import FieldType
from vsm.models import ArtifactModel, FlowItemType, ModelField

pytestmark = pytest.mark.django_db

STANDARD_MODELS = {
    # name: (slug, default flow item type slug, or None for a supporting artifact)
    "Request": ("request", None),
    "Feature": ("feature", "feature"),
    "Epic": ("epic", "feature"),
    "Story": ("story", "feature"),
    "Task": ("task", "feature"),
    "Defect": ("defect", "defect"),
    "Case": ("case", None),
    "Risk": ("risk", "risk"),
    "Debt": ("debt", "debt"),
    "Commit": ("commit", None),
    "Pull request": ("pull-request", None),
    "Build": ("build", None),
    "Release": ("release", None),
    "Deployment": ("deployment", None),
    "Incident": ("incident", None),
}
SUPPORTING = ["commit", "pull-request", "build", "release", "deployment", "incident"]
REQUEST_INTERNAL = ["customer_account", "revenue", "deal_breaker"]


def test_the_fifteen_standard_artifact_models_exist():
    found = {
        m.name: (m.slug, m.default_flow_item_type and m.default_flow_item_type.slug)
        for m in ArtifactModel.objects.select_related("default_flow_item_type").filter(is_standard=True)
    }
    assert found == STANDARD_MODELS


def test_the_four_flow_item_types_exist_in_order():
    assert list(FlowItemType.objects.values_list("name", "slug")) == [
        ("Feature", "feature"),
        ("Defect", "defect"),
        ("Risk", "risk"),
        ("Debt", "debt"),
    ]


@pytest.mark.parametrize("slug", SUPPORTING)
def test_a_supporting_artifact_has_no_default_flow_item_type(slug):
    assert ArtifactModel.objects.get(slug=slug).default_flow_item_type is None


@pytest.mark.parametrize("slug", ["feature", "epic", "story", "task", "defect", "risk", "debt"])
def test_a_flow_item_model_has_a_default_flow_item_type(slug):
    assert ArtifactModel.objects.get(slug=slug).default_flow_item_type is not None


def test_every_standard_model_has_fields_and_valid_field_types():
    for model in ArtifactModel.objects.filter(is_standard=True):
        assert model.fields.exists(), model
    assert set(ModelField.objects.values_list("field_type", flat=True)) <= set(FieldType.values)
    for field in ModelField.objects.filter(field_type=FieldType.CHOICE):
        assert field.allowed_values, field


def test_request_fields_and_their_partner_visibility():
    fields = dict(
        ModelField.objects.filter(artifact_model__slug="request").values_list("name", "partner_visible")
    )
    assert fields == {
        "description": True,
        "customer_account": False,
        "revenue": False,
        "deal_breaker": False,
        "requested_by": True,
        "priority": True,
        "release": True,  # the release that delivered it, which integrations flow back upstream
    }
    revenue = ModelField.objects.get(artifact_model__slug="request", name="revenue")
    assert revenue.field_type == FieldType.MONEY


def test_the_customer_account_of_a_case_is_internal():
    assert not ModelField.objects.get(artifact_model__slug="case", name="customer_account").partner_visible


@pytest.mark.parametrize("name", REQUEST_INTERNAL)
def test_an_internal_field_stays_editable(name):
    field = ModelField.objects.get(artifact_model__slug="request", name=name)
    field.partner_visible = True
    field.label = f"{field.label} (shared)"
    field.save()
    field = ModelField.objects.get(pk=field.pk)
    assert field.partner_visible is True
    assert field.label.endswith("(shared)")


def test_a_standard_model_stays_editable():
    model = ArtifactModel.objects.get(slug="incident")
    model.default_flow_item_type = FlowItemType.objects.get(slug="defect")
    model.description = "Production incidents count as defects here."
    model.save()
    model = ArtifactModel.objects.get(slug="incident")
    assert model.default_flow_item_type.slug == "defect"
    assert model.description.startswith("Production incidents")


def test_running_the_data_migration_again_keeps_edits_and_adds_nothing():
    migration = importlib.import_module("vsm.migrations.0002_standard_models")
    field = ModelField.objects.get(artifact_model__slug="request", name="revenue")
    field.partner_visible = True
    field.save()
    counts = (ArtifactModel.objects.count(), ModelField.objects.count(), FlowItemType.objects.count())

    migration.create_standard_models(apps, None)

    assert (ArtifactModel.objects.count(), ModelField.objects.count(), FlowItemType.objects.count()) == counts
    assert ModelField.objects.get(pk=field.pk).partner_visible is True
