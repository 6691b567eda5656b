"""Requests and cases carry the release that delivered them, so integrations can flow it upstream."""

from django.db import migrations

RELEASE_FIELDS = {"request": "Delivered in release", "case": "Fixed in release"}


def add_release_fields(apps, schema_editor):
    ArtifactModel = apps.get_model("vsm", "ArtifactModel")
    ModelField = apps.get_model("vsm", "ModelField")
    for model in ArtifactModel.objects.filter(slug__in=RELEASE_FIELDS):
        ModelField.objects.get_or_create(
            artifact_model=model,
            name="release",
            defaults={"label": RELEASE_FIELDS[model.slug], "field_type": "text", "partner_visible": True},
        )


def remove_release_fields(apps, schema_editor):
    ModelField = apps.get_model("vsm", "ModelField")
    ModelField.objects.filter(artifact_model__slug__in=RELEASE_FIELDS, name="release").delete()


class Migration(migrations.Migration):
    dependencies = [("vsm", "0003_field_validators")]

    operations = [migrations.RunPython(add_release_fields, remove_release_fields)]
