"""Django admin for the core model.

Artifact tables hold hundreds of thousands of rows, so every foreign key to an artifact, product, team,
partner, connection or user is an autocomplete, and every changelist selects its related rows up front.
Validation lives in the small forms below; the admin classes only arrange fields.
"""

from django import forms
from django.contrib import admin

from vsm.choices import FieldType
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


class ModelFieldAdminForm(forms.ModelForm):
    class Meta:
        model = ModelField
        fields = [
            "artifact_model",
            "name",
            "label",
            "field_type",
            "required",
            "allowed_values",
            "partner_visible",
        ]

    def clean_allowed_values(self) -> list[str]:
        # An emptied box arrives as None; the column is NOT NULL, so store the empty list instead.
        values = self.cleaned_data["allowed_values"]
        if values is None:
            return []
        if not isinstance(values, list) or not all(isinstance(value, str) for value in values):
            raise forms.ValidationError(
                'Allowed values must be a JSON list of strings, e.g. ["High", "Medium", "Low"].',
                code="not_a_list_of_strings",
            )
        if any(not value.strip() for value in values):
            raise forms.ValidationError(
                "Allowed values must not be blank: remove the empty entries.", code="blank_value"
            )
        duplicates = sorted({value for value in values if values.count(value) > 1})
        if duplicates:
            raise forms.ValidationError(
                f"Each allowed value must appear once; repeated: {', '.join(duplicates)}.", code="duplicate"
            )
        return values

    def clean(self):
        cleaned = super().clean()
        field_type = cleaned.get("field_type")
        if "allowed_values" not in cleaned or field_type is None:
            return cleaned  # already reported on the field itself
        if field_type == FieldType.CHOICE and not cleaned["allowed_values"]:
            self.add_error(
                "allowed_values",
                forms.ValidationError(
                    'A choice field needs its allowed values: enter a JSON list such as ["Yes", "No"].',
                    code="choice_without_values",
                ),
            )
        elif field_type != FieldType.CHOICE and cleaned["allowed_values"]:
            self.add_error(
                "allowed_values",
                forms.ValidationError(
                    "Only choice fields have allowed values: empty this list, "
                    "or set the type to “One of the allowed values”.",
                    code="values_without_choice",
                ),
            )
        return cleaned


class ArtifactAdminForm(forms.ModelForm):
    class Meta:
        model = Artifact
        fields = [
            "product",
            "key",
            "title",
            "url",
            "artifact_model",
            "flow_item_type",
            "team",
            "connection",
            "external_id",
            "tool_status",
            "flow_state",
            "created_at",
            "first_started_at",
            "done_at",
            "updated_at",
            "deleted_at",
            "fields",
            "value",
        ]

    def clean_fields(self) -> dict:
        # The hook for the model field named `fields`: an emptied box must not reach the NOT NULL column.
        fields = self.cleaned_data["fields"]
        if fields is None:
            return {}
        if not isinstance(fields, dict):
            raise forms.ValidationError(
                'Fields must be a JSON object of field name to value, e.g. {"priority": "High"}.',
                code="not_an_object",
            )
        return fields

    def clean(self):
        cleaned = super().clean()
        created_at = cleaned.get("created_at")
        if created_at is None:
            return cleaned
        # Flow time runs from these timestamps: one before creation would give negative durations.
        # Only edited pairs are checked, so an item the tool got wrong can still be fixed field by field.
        for name in ("first_started_at", "done_at"):
            moment = cleaned.get(name)
            edited = {name, "created_at"} & set(self.changed_data)
            if moment is not None and moment < created_at and edited:
                label = Artifact._meta.get_field(name).verbose_name
                self.add_error(
                    name,
                    forms.ValidationError(
                        f"{label.capitalize()} is before created at ({created_at:%Y-%m-%d %H:%M}). "
                        "Enter a time on or after it, or correct created at.",
                        code="before_created",
                    ),
                )
        return cleaned


class HoldsArtifactsAdmin(admin.ModelAdmin):
    """For models that artifacts reference with PROTECT.

    Django's delete confirmation would list every protected artifact (hundreds of thousands), so an
    object is deletable only while no artifact refers to it, and the bulk delete action is removed.
    """

    def has_delete_permission(self, request, obj=None):
        if obj is not None and obj.artifacts.exists():
            return False
        return super().has_delete_permission(request, obj)

    def get_actions(self, request):
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)
        return actions


class ReadOnlyTabularInline(admin.TabularInline):
    """Shows related rows without letting anyone add, change or delete them from here."""

    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    def get_readonly_fields(self, request, obj=None):
        return self.fields


class PartnerGrantInline(admin.TabularInline):
    model = PartnerGrant
    fields = ["partner", "granted_at"]
    readonly_fields = ["granted_at"]
    autocomplete_fields = ["partner"]
    extra = 0


class ProductRoleInline(admin.TabularInline):
    model = ProductRole
    fields = ["user", "role"]
    autocomplete_fields = ["user"]
    extra = 0


class TeamInline(admin.TabularInline):
    model = Team
    fields = ["name", "partner"]
    autocomplete_fields = ["partner"]
    extra = 0


class ModelFieldInline(admin.TabularInline):
    model = ModelField
    form = ModelFieldAdminForm
    fields = ["name", "label", "field_type", "required", "allowed_values", "partner_visible"]
    extra = 0


class StateTransitionInline(ReadOnlyTabularInline):
    model = StateTransition
    fields = ["at", "from_status", "to_status", "from_state", "to_state", "author"]
    verbose_name_plural = "state transitions (from the tool's changelog)"


class OutgoingLinkInline(ReadOnlyTabularInline):
    model = ArtifactLink
    fk_name = "source"
    fields = ["kind", "target", "origin", "created_at"]
    verbose_name_plural = "links from this artifact"

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("target")


class IncomingLinkInline(ReadOnlyTabularInline):
    model = ArtifactLink
    fk_name = "target"
    fields = ["source", "kind", "origin", "created_at"]
    verbose_name_plural = "links to this artifact"

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("source")


@admin.register(Product)
class ProductAdmin(HoldsArtifactsAdmin):
    list_display = ["name", "slug", "time_zone", "created_at"]
    list_filter = ["time_zone"]
    search_fields = ["name", "slug"]
    prepopulated_fields = {"slug": ["name"]}
    inlines = [PartnerGrantInline, ProductRoleInline, TeamInline]


@admin.register(Partner)
class PartnerAdmin(admin.ModelAdmin):
    list_display = ["name", "slug"]
    search_fields = ["name", "slug"]
    prepopulated_fields = {"slug": ["name"]}


@admin.register(PartnerGrant)
class PartnerGrantAdmin(admin.ModelAdmin):
    list_display = ["partner", "product", "granted_at"]
    list_filter = ["partner", "product"]
    list_select_related = ["partner", "product"]
    search_fields = ["partner__name", "product__name"]
    autocomplete_fields = ["partner", "product"]


@admin.register(PartnerMembership)
class PartnerMembershipAdmin(admin.ModelAdmin):
    list_display = ["user", "partner"]
    list_filter = ["partner"]
    list_select_related = ["user", "partner"]
    search_fields = ["user__username", "user__email", "partner__name"]
    autocomplete_fields = ["user", "partner"]


@admin.register(Team)
class TeamAdmin(admin.ModelAdmin):
    list_display = ["name", "product", "partner"]
    list_filter = ["product", "partner"]
    search_fields = ["name", "product__name"]
    autocomplete_fields = ["product", "partner"]

    def get_queryset(self, request):
        # A team's name includes its product's: the autocomplete results need it too, not just the list.
        return super().get_queryset(request).select_related("product", "partner")


@admin.register(ProductRole)
class ProductRoleAdmin(admin.ModelAdmin):
    list_display = ["user", "product", "role"]
    list_filter = ["role", "product"]
    list_select_related = ["user", "product"]
    search_fields = ["user__username", "user__email", "product__name"]
    autocomplete_fields = ["user", "product"]


@admin.register(FlowItemType)
class FlowItemTypeAdmin(HoldsArtifactsAdmin):
    list_display = ["name", "slug", "color", "order"]
    search_fields = ["name", "slug"]
    prepopulated_fields = {"slug": ["name"]}


@admin.register(ArtifactModel)
class ArtifactModelAdmin(HoldsArtifactsAdmin):
    list_display = ["name", "slug", "default_flow_item_type", "is_standard"]
    list_filter = ["is_standard", "default_flow_item_type"]
    list_select_related = ["default_flow_item_type"]
    search_fields = ["name", "slug"]
    prepopulated_fields = {"slug": ["name"]}
    fields = ["name", "slug", "description", "default_flow_item_type", "is_standard"]
    readonly_fields = ["is_standard"]
    inlines = [ModelFieldInline]


@admin.register(ModelField)
class ModelFieldAdmin(admin.ModelAdmin):
    form = ModelFieldAdminForm
    list_display = ["name", "label", "artifact_model", "field_type", "required", "partner_visible"]
    list_filter = ["artifact_model", "field_type", "required", "partner_visible"]
    list_select_related = ["artifact_model"]
    search_fields = ["name", "label", "artifact_model__name"]


@admin.register(Artifact)
class ArtifactAdmin(admin.ModelAdmin):
    form = ArtifactAdminForm
    list_display = [
        "key",
        "title",
        "product",
        "artifact_model",
        "flow_item_type",
        "flow_state",
        "connection",
        "updated_at",
    ]
    list_filter = ["flow_state", "product", "flow_item_type", "artifact_model", "connection"]
    list_select_related = ["product", "artifact_model", "flow_item_type", "connection"]
    search_fields = ["key", "title", "=external_id"]
    autocomplete_fields = ["product", "connection", "team"]
    # Counting every artifact on each page load is slow on large tables; the filtered count is enough.
    show_full_result_count = False
    fieldsets = [
        (None, {"fields": ["product", "key", "title", "url"]}),
        ("Kind", {"fields": ["artifact_model", "flow_item_type", "team"]}),
        ("Source", {"fields": ["connection", "external_id", "tool_status"]}),
        (
            "Flow",
            {
                "fields": [
                    "flow_state",
                    ("created_at", "updated_at"),
                    ("first_started_at", "done_at"),
                    "deleted_at",
                ]
            },
        ),
        ("Data", {"fields": ["fields", "value"]}),
    ]
    inlines = [StateTransitionInline, OutgoingLinkInline, IncomingLinkInline]


@admin.register(StateTransition)
class StateTransitionAdmin(admin.ModelAdmin):
    list_display = ["artifact", "at", "from_status", "to_status", "from_state", "to_state", "author"]
    list_filter = ["to_state", "from_state"]
    list_select_related = ["artifact"]
    search_fields = ["artifact__key", "to_status", "author"]
    autocomplete_fields = ["artifact"]
    show_full_result_count = False


@admin.register(ArtifactLink)
class ArtifactLinkAdmin(admin.ModelAdmin):
    list_display = ["source", "kind", "target", "origin", "created_at"]
    list_filter = ["kind", "origin"]
    list_select_related = ["source", "target"]
    search_fields = ["source__key", "target__key"]
    autocomplete_fields = ["source", "target"]
    show_full_result_count = False
