"""Forms and small reads behind the connector admin (connectors/admin.py only arranges them).

The forms say what to fix: a field mapping names the fields its artifact model has, a duplicated status
mapping names the status, a value map shows the shape it needs. Credentials are write-only: a form never
receives a stored value, it only reports whether one is stored.
"""

import json
import re
from dataclasses import dataclass
from typing import Any

from django import forms
from django.forms.models import BaseInlineFormSet
from django.utils.html import format_html, format_html_join

from connectors.base import Connector, CredentialField, OptionField, RegistryError, connector_for
from connectors.base import registered_connectors as registered_connector_classes
from connectors.mappings import VALUE_FIELD
from connectors.models import (
    FieldFlow,
    FieldMapping,
    Integration,
    Scope,
    StatusMapping,
    SyncError,
    ToolConnection,
    TypeMapping,
)
from vsm.choices import FlowState
from vsm.models import ArtifactModel, FlowItemType, ModelField

OPTION_PREFIX = "option__"
CREDENTIAL_PREFIX = "credential__"
KEEP_STORED_VALUE = "leave empty to keep the stored value"
UNMAPPED_STATUS_PREFIX = "unmapped-status:"
VALUE_MAP_SHAPE = 'Value map must be a JSON object like {"P1": "Highest"}'
UNMAPPED_STATUS_MESSAGE = re.compile(r"unmapped status “(?P<status>.*)” in ")


def connector_class(kind: str) -> type[Connector] | None:
    try:
        return connector_for(kind)
    except RegistryError:
        return None


def option_field_name(option: OptionField) -> str:
    return f"{OPTION_PREFIX}{option.name}"


def credential_field_name(credential: CredentialField) -> str:
    return f"{CREDENTIAL_PREFIX}{credential.name}"


def pretty_json(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False, default=str)


# --- Tool connections --------------------------------------------------------------------------------


class ToolConnectionAdminForm(forms.ModelForm):
    """The connection's own columns; `tool_connection_form_for` adds the fields its connector declares."""

    connector: type[Connector] | None = None

    kind = forms.ChoiceField(
        help_text="The tool. Its options and credentials are the ones of the kind saved: "
        "after choosing another kind, save to fill in the new tool's settings."
    )

    class Meta:
        model = ToolConnection
        fields = ["kind", "name", "base_url", "partner", "requests_per_second"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if "kind" in self.fields:
            self.fields["kind"].choices = self.kind_choices()
            if self.instance.pk is None and self.connector is None:
                self.fields["kind"].help_text = add_connection_help()
        stored = self.instance.credentials
        for credential in self.credential_fields():
            field = self.fields.get(credential_field_name(credential))
            if field is not None:
                field.help_text = self.credential_help(credential, stored)
        for option in self.option_fields():
            field = self.fields.get(option_field_name(option))
            if field is not None and self.instance.pk:
                field.initial = (self.instance.options or {}).get(option.name, option.default)

    def kind_choices(self) -> list[tuple[str, str]]:
        choices = [(slug, f"{cls.name} ({slug})") for slug, cls in registered_connector_classes().items()]
        current = self.instance.kind
        if current and all(slug != current for slug, _ in choices):
            choices.append((current, f"{current} (no connector installed)"))
        return [("", "---------"), *choices]

    @classmethod
    def credential_fields(cls) -> tuple[CredentialField, ...]:
        return cls.connector.credential_fields if cls.connector else ()

    @classmethod
    def option_fields(cls) -> tuple[OptionField, ...]:
        return cls.connector.option_fields if cls.connector else ()

    @staticmethod
    def credential_help(credential: CredentialField, stored) -> str:
        if stored.unreadable:
            state = "stored, but unreadable with the current VSM_CREDENTIALS_KEY: enter it again"
        elif credential.name in stored:
            state = f"stored; {KEEP_STORED_VALUE}"
        else:
            state = "not set"
        return " ".join(part for part in (credential.help_text, f"({state})") if part)

    def credential_is_stored(self, credential: CredentialField) -> bool:
        stored = self.instance.credentials
        return not stored.unreadable and credential.name in stored

    def clean(self):
        cleaned = super().clean()
        for credential in self.credential_fields():
            name = credential_field_name(credential)
            if credential.required and not cleaned.get(name) and not self.credential_is_stored(credential):
                self.add_error(name, f"{credential.label} is required for {self.connector.name}: enter it.")
        return cleaned

    def credential_updates(self) -> dict[str, str]:
        """The credentials typed in; an empty box keeps the stored value, so it is left out."""
        return {
            credential.name: value
            for credential in self.credential_fields()
            if (value := self.cleaned_data.get(credential_field_name(credential)))
        }

    def options_value(self) -> dict:
        if self.connector is None:
            if "options" in self.fields:  # a kind without an installed connector: its raw settings
                return self.cleaned_data.get("options") or {}
            return self.instance.options or {}
        options = {}
        for option in self.option_fields():
            value = (self.cleaned_data.get(option_field_name(option)) or "").strip() or option.default
            if value:
                options[option.name] = value
        return options

    def changed_model_fields(self) -> list[str]:
        """The columns this submit changes: only they are saved, so a sync's writes are not overwritten."""
        columns = {field.name for field in ToolConnection._meta.concrete_fields}
        names = [name for name in self.changed_data if name in columns]
        if any(name.startswith(OPTION_PREFIX) for name in self.changed_data) and "options" not in names:
            names.append("options")
        return names

    def save(self, commit=True):
        self.instance.options = self.options_value()
        return super().save(commit)


def tool_connection_form_for(kind: str | None) -> type[ToolConnectionAdminForm]:
    """The admin form of a connection of this kind: its option and (write-only) credential fields."""
    if not kind:
        return ToolConnectionAdminForm
    connector = connector_class(kind)
    attrs: dict[str, Any] = {"connector": connector}
    if connector is None:
        attrs["options"] = forms.JSONField(
            required=False, help_text="No connector is installed for this kind: its raw settings."
        )
    else:
        for option in connector.option_fields:
            attrs[option_field_name(option)] = option_form_field(option)
        for credential in connector.credential_fields:
            attrs[credential_field_name(credential)] = credential_form_field(credential)
    return type(f"{kind.title()}ConnectionAdminForm", (ToolConnectionAdminForm,), attrs)


def option_form_field(option: OptionField) -> forms.Field:
    if option.choices:
        return forms.ChoiceField(
            label=option.label,
            choices=[(choice, choice) for choice in option.choices],
            initial=option.default,
            required=False,
            help_text=option.help_text,
        )
    return forms.CharField(
        label=option.label,
        initial=option.default,
        required=False,
        help_text=option.help_text or (f"Empty: {option.default}." if option.default else ""),
    )


def credential_form_field(credential: CredentialField) -> forms.Field:
    # Never pre-filled: `initial` stays empty and the password input does not echo a submitted value.
    widget = forms.PasswordInput(render_value=False) if credential.secret else forms.TextInput()
    return forms.CharField(
        label=credential.label, required=False, strip=True, widget=widget, help_text=KEEP_STORED_VALUE
    )


def kind_links() -> str:
    """Links that open the add form for one kind, so its options and credentials show at once."""
    return format_html_join(
        ", ",
        '<a href="?kind={}">{}</a>',
        ((slug, cls.name) for slug, cls in registered_connector_classes().items()),
    )


# --- Scopes ------------------------------------------------------------------------------------------


class ScopeAdminForm(forms.ModelForm):
    class Meta:
        model = Scope
        fields = [
            "connection",
            "name",
            "query",
            "product",
            "team",
            "enabled",
            "interval_minutes",
            "overlap_seconds",
            "page_size",
            "cursor",
        ]

    def clean_interval_minutes(self) -> int:
        minutes = self.cleaned_data["interval_minutes"]
        if minutes < 1:
            raise forms.ValidationError("The schedule syncs at most once a minute: enter 1 or more.")
        return minutes

    def clean_page_size(self) -> int:
        size = self.cleaned_data["page_size"]
        if size < 1:
            raise forms.ValidationError(
                "A page holds at least one item: enter 1 or more (100 suits most tools)."
            )
        return size

    def clean(self):
        cleaned = super().clean()
        team, product = cleaned.get("team"), cleaned.get("product")
        if team is not None and product is not None and team.product_id != product.pk:
            self.add_error(
                "team",
                f"{team.name} is a team of {team.product}, not of {product}: pick one of {product}'s teams.",
            )
        return cleaned


# --- Mappings ----------------------------------------------------------------------------------------


class TypeMappingAdminForm(forms.ModelForm):
    class Meta:
        model = TypeMapping
        fields = [
            "connection",
            "tool_type",
            "condition_path",
            "condition_value",
            "artifact_model",
            "flow_item_type",
            "priority",
        ]

    def clean(self):
        cleaned = super().clean()
        path, value = cleaned.get("condition_path", ""), cleaned.get("condition_value", "")
        if value and not path:
            self.add_error(
                "condition_path",
                "A condition value needs the field it is compared with: enter a path such as fields.labels, "
                "or empty the condition value.",
            )
        elif path and not value:
            self.add_error(
                "condition_value",
                f"A condition on {path} needs the value it must equal (or contain): enter it, "
                "or empty the condition path.",
            )
        return cleaned


def model_field_names(artifact_model_id: int) -> list[str]:
    return sorted(
        ModelField.objects.filter(artifact_model_id=artifact_model_id).values_list("name", flat=True)
    )


def unknown_model_field_message(name: str, artifact_model: ArtifactModel, names: list[str]) -> str:
    if not names:
        return (
            f"“{name}” is not a field of {artifact_model}: it has no fields yet; add them to the model first."
        )
    message = f"“{name}” is not a field of {artifact_model}; its fields are: {', '.join(names)}."
    if name == VALUE_FIELD:
        message += (
            f" (“{VALUE_FIELD}” fills the artifact's value only on models that have a {VALUE_FIELD} field.)"
        )
    return message


class FieldMappingForm(forms.ModelForm):
    """The inline form under a type mapping; its formset checks the model fields."""

    value_map = forms.JSONField(
        required=False,
        error_messages={"invalid": f"{VALUE_MAP_SHAPE}."},
        help_text=FieldMapping._meta.get_field("value_map").help_text,
        widget=forms.Textarea(attrs={"rows": 2, "cols": 30}),
    )

    class Meta:
        model = FieldMapping
        fields = ["type_mapping", "tool_path", "model_field", "transform", "value_map"]

    def clean_value_map(self) -> dict:
        value_map = self.cleaned_data["value_map"]
        if value_map in (None, ""):
            return {}  # an emptied box; the column is NOT NULL
        if not isinstance(value_map, dict):
            raise forms.ValidationError(
                f"{VALUE_MAP_SHAPE}: a tool value to a model value.", code="not_an_object"
            )
        for key, value in value_map.items():
            if isinstance(value, dict | list):
                raise forms.ValidationError(
                    f"{VALUE_MAP_SHAPE}: the value of “{key}” must be a text, number or true/false, "
                    f"not a {'list' if isinstance(value, list) else 'object'}.",
                    code="not_scalar",
                )
        return value_map


class FieldMappingAdminForm(FieldMappingForm):
    """The standalone form: the type mapping is chosen here, so the model field is checked here."""

    def clean(self):
        cleaned = super().clean()
        type_mapping, name = cleaned.get("type_mapping"), cleaned.get("model_field")
        if type_mapping is not None and name:
            names = model_field_names(type_mapping.artifact_model_id)
            if name not in names:
                self.add_error(
                    "model_field", unknown_model_field_message(name, type_mapping.artifact_model, names)
                )
        return cleaned


def live_forms(formset) -> list[forms.ModelForm]:
    """The forms that will be saved: filled in and not marked for deletion."""
    return [
        form
        for form in formset.forms
        if getattr(form, "cleaned_data", None) and not form.cleaned_data.get("DELETE")
    ]


class FieldMappingFormSet(BaseInlineFormSet):
    """Each field mapping must name a field of the artifact model chosen on the type mapping above."""

    def clean(self):
        artifact_model_id = self.instance.artifact_model_id
        if artifact_model_id is not None:
            names = model_field_names(artifact_model_id)
            artifact_model = self.instance.artifact_model
            for form in live_forms(self):
                name = form.cleaned_data.get("model_field")
                if name and name not in names:
                    form.add_error("model_field", unknown_model_field_message(name, artifact_model, names))
        super().clean()


class StatusMappingForm(forms.ModelForm):
    """The model's flow state choices leave out “unknown”: that is what an unmapped status gets."""

    class Meta:
        model = StatusMapping
        fields = ["type_mapping", "tool_status", "flow_state"]

    def clean_tool_status(self) -> str:
        status = self.cleaned_data["tool_status"].strip()
        if not status:
            raise forms.ValidationError("Enter the status as the tool names it, e.g. In Progress.")
        return status


class StatusMappingAdminForm(StatusMappingForm):
    """The standalone form (e.g. from “Map this status”): compares with the statuses already mapped."""

    def clean(self):
        cleaned = super().clean()
        type_mapping, status = cleaned.get("type_mapping"), cleaned.get("tool_status")
        if type_mapping is not None and status:
            existing = (
                StatusMapping.objects.filter(type_mapping=type_mapping, tool_status__iexact=status)
                .exclude(pk=self.instance.pk)
                .first()
            )
            if existing is not None:
                self.add_error(
                    "tool_status",
                    f"“{existing.tool_status}” is already mapped to {existing.get_flow_state_display()} in "
                    f"{type_mapping}: change that mapping instead (statuses are compared ignoring case).",
                )
        return cleaned


class StatusMappingFormSet(BaseInlineFormSet):
    """One mapping per status, ignoring case: checked here, before the database constraint would refuse it."""

    def clean(self):
        first_by_status: dict[str, str] = {}
        duplicated = False
        for form in live_forms(self):
            status = form.cleaned_data.get("tool_status")
            if not status:
                continue
            folded = status.casefold()
            if folded in first_by_status:
                duplicated = True
                first = first_by_status[folded]
                same = "" if first == status else f" (as “{first}”; statuses are compared ignoring case)"
                form.add_error(
                    "tool_status",
                    f"The status “{status}” is mapped twice{same}: keep one mapping for it.",
                )
            else:
                first_by_status[folded] = status
        if not duplicated:
            super().clean()  # the generic unique checks would only repeat the message above


# --- Sync errors and previews ------------------------------------------------------------------------


@dataclass(frozen=True)
class UnmappedStatus:
    status: str
    type_mapping: TypeMapping | None


def is_unmapped_status(error: SyncError) -> bool:
    return error.resolved_at is None and error.fingerprint.startswith(UNMAPPED_STATUS_PREFIX)


def unmapped_status_of(error: SyncError) -> UnmappedStatus:
    """The status and type mapping an “unmapped status” error is about.

    The ingest fingerprints it as `unmapped-status:<type mapping label>:<status>`, the label being the
    type mapping's str(); one that was edited since no longer matches, and only the status is known.
    """
    rest = error.fingerprint.removeprefix(UNMAPPED_STATUS_PREFIX)
    mappings = TypeMapping.objects.filter(connection_id=error.connection_id).select_related(
        "connection", "artifact_model"
    )
    for mapping in sorted(mappings, key=lambda mapping: -len(str(mapping))):
        if rest.startswith(f"{mapping}:"):
            return UnmappedStatus(rest[len(f"{mapping}:") :], mapping)
    found = UNMAPPED_STATUS_MESSAGE.search(error.message)
    return UnmappedStatus(found["status"] if found else rest.rpartition(":")[2], None)


@dataclass(frozen=True)
class PreviewLine:
    """One previewed item as the admin page shows it."""

    key: str
    title: str
    tool_type: str
    tool_status: str
    artifact_model: str
    flow_item_type: str
    flow_state: str
    fields: str
    problems: list[str]


def preview_lines(rows) -> list[PreviewLine]:
    """Names for the ids in `services.mapping_preview` rows: two queries whatever the sample size."""
    normalised = [row.normalised for row in rows if row.normalised is not None]
    models = dict(
        ArtifactModel.objects.filter(pk__in={n.artifact_model_id for n in normalised}).values_list(
            "pk", "name"
        )
    )
    flow_types = dict(
        FlowItemType.objects.filter(pk__in={n.flow_item_type_id for n in normalised}).values_list(
            "pk", "name"
        )
    )
    states = dict(FlowState.choices)
    lines = []
    for row in rows:
        item = row.normalised
        problems = [row.error] if row.error else []
        if item is None:
            lines.append(PreviewLine(row.key, "", row.item_type, row.status, "", "", "", "", problems))
            continue
        problems += [
            f"unmapped status “{status}”: add a status mapping" for status in sorted(item.unmapped_statuses)
        ]
        lines.append(
            PreviewLine(
                key=row.key,
                title=item.title,
                tool_type=row.item_type,
                tool_status=row.status,
                artifact_model=models.get(item.artifact_model_id, "?"),
                flow_item_type=flow_types.get(item.flow_item_type_id, "none (supporting artifact)"),
                flow_state=states.get(item.flow_state, item.flow_state),
                fields=pretty_json(item.fields) if item.fields else "",
                problems=problems,
            )
        )
    return lines


def health_label(connection: ToolConnection) -> str:
    return {True: "healthy", False: "unhealthy", None: "unknown"}[connection.healthy]


def credential_states(connection: ToolConnection) -> str:
    """“stored” or “not set” per declared credential: the values themselves are never shown."""
    connector = connector_class(connection.kind)
    if connector is None or not connector.credential_fields:
        return "-"
    stored = connection.credentials
    if stored.unreadable:
        return "unreadable with the current VSM_CREDENTIALS_KEY: enter the credentials again"
    return format_html_join(
        "",
        "<div>{}: {}</div>",
        (
            (credential.label, "stored" if credential.name in stored else "not set")
            for credential in connector.credential_fields
        ),
    )


def add_connection_help() -> str:
    return format_html("Pick the tool, or start with its settings shown: {}.", kind_links())


# --- Integrations ------------------------------------------------------------------------------------

# Fields every item has besides its model's fields: the title, and the flow state (for filters/routes).
ITEM_FIELDS = ("title",)
STATE_FIELD = "status"


class IntegrationAdminForm(forms.ModelForm):
    """Both sides must be a scope with a type mapping of its own connection, mapping to the same model."""

    class Meta:
        model = Integration
        fields = [
            "name",
            "enabled",
            "artifact_model",
            "source_scope",
            "source_type_mapping",
            "target_scope",
            "target_type_mapping",
            "default_container",
            "filter_reach",
            "status_flow",
            "link_kind",
            "conflict_policy",
            "write_back_link",
            "write_back_path",
            "max_attempts",
        ]

    def clean(self):
        cleaned = super().clean()
        artifact_model = cleaned.get("artifact_model")
        for side in ("source", "target"):
            scope, mapping = cleaned.get(f"{side}_scope"), cleaned.get(f"{side}_type_mapping")
            if scope is None or mapping is None:
                continue
            if mapping.connection_id != scope.connection_id:
                self.add_error(
                    f"{side}_type_mapping",
                    f"“{mapping}” belongs to {mapping.connection}, "
                    f"but the {side} scope reads {scope.connection}.",
                )
            elif artifact_model is not None and mapping.artifact_model_id != artifact_model.pk:
                self.add_error(
                    f"{side}_type_mapping",
                    f"The {side} side maps {mapping.tool_type} to {mapping.artifact_model}, "
                    f"but the integration carries {artifact_model}: "
                    "both sides must map to the integration's model.",
                )
        source, target = cleaned.get("source_scope"), cleaned.get("target_scope")
        if source is not None and source == target:
            self.add_error("target_scope", "The target must be another scope than the source.")
        return cleaned


def _mapped_fields(type_mapping_id: int | None) -> set[str]:
    if type_mapping_id is None:
        return set()
    return set(
        FieldMapping.objects.filter(type_mapping_id=type_mapping_id).values_list("model_field", flat=True)
    )


class IntegrationFieldFormSet(BaseInlineFormSet):
    """A flowing field must be a field of the model, mapped on both sides (the title always is)."""

    def clean(self):
        integration = self.instance
        if integration.artifact_model_id is None:
            return super().clean()
        names = model_field_names(integration.artifact_model_id)
        mapped = {
            "source": _mapped_fields(integration.source_type_mapping_id),
            "target": _mapped_fields(integration.target_type_mapping_id),
        }
        for form in live_forms(self):
            name, flow = form.cleaned_data.get("model_field"), form.cleaned_data.get("flow")
            if not name or name in ITEM_FIELDS or flow == FieldFlow.NONE:
                continue
            if name not in names:
                form.add_error(
                    "model_field", unknown_model_field_message(name, integration.artifact_model, names)
                )
                continue
            missing = [side for side in ("source", "target") if name not in mapped[side]]
            if missing:
                mappings = " and ".join(str(getattr(integration, f"{side}_type_mapping")) for side in missing)
                form.add_error(
                    "model_field",
                    f"“{name}” has no field mapping on the {' and '.join(missing)} side: "
                    f"add one to {mappings} first.",
                )
        super().clean()


class IntegrationConditionFormSet(BaseInlineFormSet):
    """Routes and filters read the source item's model fields, its title or its status (flow state)."""

    def clean(self):
        integration = self.instance
        if integration.artifact_model_id is not None:
            names = model_field_names(integration.artifact_model_id)
            for form in live_forms(self):
                name = form.cleaned_data.get("model_field")
                if name and name not in names and name not in (*ITEM_FIELDS, STATE_FIELD):
                    form.add_error(
                        "model_field",
                        unknown_model_field_message(name, integration.artifact_model, names)
                        + f" (or {', '.join((*ITEM_FIELDS, STATE_FIELD))})",
                    )
        super().clean()
