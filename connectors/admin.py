"""Django admin for the connector framework: connections, scopes, mappings, and what syncs leave behind.

The classes arrange fields and call services; validation lives in connectors/admin_forms.py. Rules:
- Credentials are write-only. No page renders a stored value; forms say “stored” or “not set”, and an
  empty box keeps what is stored (`services.connection_set_credentials`).
- A tool that cannot be reached is an error message, never a 500.
- Work that talks to a tool (syncs, retries) is enqueued on commit; the page says it was queued.
- Changelists select or annotate everything they show: the number of queries does not grow with rows.
- Saving a change writes only the columns the form changed: what a sync writes meanwhile and the form
  does not show (health, the sync lease, credentials) survives it.
"""

from functools import partial

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.options import IS_POPUP_VAR
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.db.models import Count, IntegerField, OuterRef, QuerySet, Subquery
from django.db.models.functions import Coalesce
from django.forms.models import BaseInlineFormSet
from django.http import HttpResponseNotAllowed, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.http import urlencode
from django.utils.text import Truncator

from connectors import services, tasks
from connectors.admin_forms import (
    FieldMappingAdminForm,
    FieldMappingForm,
    FieldMappingFormSet,
    ScopeAdminForm,
    StatusMappingAdminForm,
    StatusMappingForm,
    StatusMappingFormSet,
    TypeMappingAdminForm,
    connector_class,
    credential_field_name,
    credential_states,
    health_label,
    is_unmapped_status,
    option_field_name,
    pretty_json,
    preview_lines,
    tool_connection_form_for,
    unmapped_status_of,
)
from connectors.base import Feature, RegistryError, registered_connectors
from connectors.csv_import import COLUMN_HELP, CSV_KIND, EXAMPLE, MAX_BYTES, CsvImportError, csv_import
from connectors.exceptions import ConnectorError
from connectors.models import (
    FieldMapping,
    PendingLink,
    RawRecord,
    Scope,
    StatusMapping,
    SyncError,
    SyncRun,
    SyncTrigger,
    ToolConnection,
    TypeMapping,
    WebhookDelivery,
)
from vsm.admin import HoldsArtifactsAdmin, ReadOnlyTabularInline
from vsm.celery import enqueue_on_commit

PREVIEW_SIZE = 20
RECENT_RUNS = 20
MESSAGE_PREVIEW_CHARS = 120
TOOL_ERRORS = (ConnectorError, RegistryError)
CSV_ERRORS_SHOWN = 1000


def webhook_path(connection: ToolConnection) -> str:
    return reverse("connectors:webhook", args=[connection.pk])


def when(moment) -> str:
    return timezone.localtime(moment).strftime("%Y-%m-%d %H:%M") if moment else "never"


def names_of(objects) -> str:
    return ", ".join(f"“{obj}”" for obj in objects)


def change_url(obj) -> str:
    return reverse(f"admin:{obj._meta.app_label}_{obj._meta.model_name}_change", args=[obj.pk])


def changelist_url(model, **filters) -> str:
    url = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")
    return f"{url}?{urlencode(filters)}" if filters else url


def count_of(related: QuerySet, outer_field: str) -> Coalesce:
    """A correlated COUNT, so a changelist can show it without a query per row or a GROUP BY."""
    counted = (
        related.filter(**{outer_field: OuterRef("pk")})
        .order_by()
        .values(outer_field)
        .annotate(count=Count("*"))
        .values("count")
    )
    return Coalesce(Subquery(counted, output_field=IntegerField()), 0)


def save_changed_columns(obj, changed_data: list[str], change: bool) -> None:
    """Add: save everything. Change: only the columns the form changed (a sync may be writing the rest)."""
    if not change:
        obj.save()
        return
    columns = {field.name for field in obj._meta.concrete_fields}
    changed = [name for name in changed_data if name in columns]
    if changed:
        obj.save(update_fields=changed)


class ReadOnlyAdmin(admin.ModelAdmin):
    """Records the engine writes: to read and act on with actions, never to edit by hand.

    Their foreign keys are still declared autocomplete, so no form of them ever loads a large table.
    """

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


class ObjectActionsMixin:
    """Runs a changelist action on one object from a button on its change page (POST only)."""

    def object_action_view(self, request, object_id, action_name: str):
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        obj = self.get_object(request, unquote(object_id))
        if obj is None:
            return self._get_obj_does_not_exist_redirect(request, self.opts, object_id)
        if not self.has_change_permission(request, obj):
            raise PermissionDenied
        getattr(self, action_name)(request, self.get_queryset(request).filter(pk=obj.pk))
        return HttpResponseRedirect(change_url(obj))

    def object_action_url(self, route: str, action_name: str, name: str):
        view = partial(self.object_action_view, action_name=action_name)
        return path(f"<path:object_id>/{route}/", self.admin_site.admin_view(view), name=name)


# --- Tool connections --------------------------------------------------------------------------------


@admin.register(ToolConnection)
class ToolConnectionAdmin(ObjectActionsMixin, HoldsArtifactsAdmin):
    list_display = ["kind", "name", "base_url", "partner", "health", "open_errors"]
    list_display_links = ["name"]
    list_filter = ["kind", "partner"]
    list_select_related = ["partner"]
    search_fields = ["name", "base_url"]
    autocomplete_fields = ["partner"]
    readonly_fields = [
        "credential_states",
        "health",
        "last_success_at",
        "last_error_at",
        "last_error",
        "webhook_url",
    ]
    actions = ["check_connection"]

    def get_queryset(self, request):
        open_errors = SyncError.objects.filter(resolved_at__isnull=True)
        return super().get_queryset(request).annotate(open_error_count=count_of(open_errors, "connection"))

    def get_urls(self):
        return [
            self.object_action_url("test-connection", "check_connection", "connectors_toolconnection_test"),
            *super().get_urls(),
        ]

    @staticmethod
    def kind_for(request, obj) -> str | None:
        """The kind whose fields the form shows: the one submitted, else the stored one, else ?kind=."""
        registered = registered_connectors()
        submitted = request.POST.get("kind") if request.method == "POST" else None
        if submitted in registered:
            return submitted
        if obj is not None:
            return obj.kind
        requested = request.GET.get("kind")
        return requested if requested in registered else None

    def get_form(self, request, obj=None, change=False, **kwargs):
        kwargs["form"] = tool_connection_form_for(self.kind_for(request, obj))
        return super().get_form(request, obj, change, **kwargs)

    def get_fieldsets(self, request, obj=None):
        form = tool_connection_form_for(self.kind_for(request, obj))
        fieldsets = [(None, {"fields": ["kind", "name", "base_url", "partner", "requests_per_second"]})]
        if form.connector is None and obj is not None:
            fieldsets.append(("Options", {"fields": ["options"]}))
        elif form.option_fields():
            fieldsets.append(("Options", {"fields": [option_field_name(o) for o in form.option_fields()]}))
        if form.credential_fields():
            credentials = [credential_field_name(c) for c in form.credential_fields()]
            if obj is not None:
                credentials.append("credential_states")
            description = (
                "Write-only: stored values are never shown. Leave a box empty to keep the stored value."
            )
            fieldsets.append(("Credentials", {"fields": credentials, "description": description}))
        if obj is not None and form.connector is not None and Feature.WEBHOOKS in form.connector.features:
            description = (
                "Point the tool's webhook here (POST, JSON), with the secret stored above as “Webhook "
                "secret”: deliveries without a valid signature, or before a secret is stored, are refused."
            )
            fieldsets.append(("Webhook", {"fields": ["webhook_url"], "description": description}))
        if obj is not None:
            fieldsets.append(
                ("Health", {"fields": ["health", "last_success_at", "last_error_at", "last_error"]})
            )
        return fieldsets

    def get_object(self, request, object_id, from_field=None):
        connection = super().get_object(request, object_id, from_field)
        if connection is not None:  # the hook URL on the address this site is reached at
            connection.hook_url = request.build_absolute_uri(webhook_path(connection))
        return connection

    def save_model(self, request, obj, form, change):
        save_changed_columns(obj, form.changed_model_fields() if change else [], change)
        updates = form.credential_updates()
        if updates:
            services.connection_set_credentials(obj, updates)

    def response_add(self, request, obj, post_url_continue=None):
        connector = connector_class(obj.kind)
        missing_credentials = connector is not None and connector.credential_fields and not obj.credentials
        if missing_credentials and IS_POPUP_VAR not in request.POST and "_addanother" not in request.POST:
            self.message_user(
                request, f"“{obj}” was added: now enter its {connector.name} credentials.", messages.WARNING
            )
            return HttpResponseRedirect(change_url(obj))
        return super().response_add(request, obj, post_url_continue)

    @admin.display(description="health", ordering="last_error_at")
    def health(self, connection: ToolConnection) -> str:
        return format_html(
            '<span title="{}">{}</span><br><small>last success: {}; last error: {}</small>',
            connection.last_error,
            health_label(connection),
            when(connection.last_success_at),
            when(connection.last_error_at),
        )

    @admin.display(description="open errors", ordering="open_error_count")
    def open_errors(self, connection: ToolConnection) -> str:
        if not connection.open_error_count:
            return "0"
        url = changelist_url(SyncError, connection__id__exact=connection.pk)
        return format_html('<a href="{}">{}</a>', url, connection.open_error_count)

    @admin.display(description="stored credentials")
    def credential_states(self, connection: ToolConnection) -> str:
        return credential_states(connection)

    @admin.display(description="hook URL")
    def webhook_url(self, connection: ToolConnection) -> str:
        url = getattr(connection, "hook_url", "") or webhook_path(connection)
        deliveries = changelist_url(WebhookDelivery, connection__id__exact=connection.pk)
        return format_html('<code>{}</code> (<a href="{}">deliveries received</a>)', url, deliveries)

    @admin.action(description="Test connection", permissions=["change"])
    def check_connection(self, request, queryset):
        for connection in queryset:
            try:
                outcome = services.connection_check(connection)
            except TOOL_ERRORS as error:
                self.message_user(request, f"{connection}: the test failed: {error}", messages.ERROR)
            else:
                self.message_user(request, f"{connection}: {outcome}.", messages.SUCCESS)


# --- Scopes ------------------------------------------------------------------------------------------


class CsvImportForm(forms.Form):
    file = forms.FileField(
        label="CSV file",
        help_text=f"UTF-8, comma- or semicolon-separated, at most {MAX_BYTES // 1024 // 1024} MB. One row "
        "per status change, with the columns below (key, type and at required), e.g. "
        f"“{EXAMPLE.splitlines()[0]}” then “{EXAMPLE.splitlines()[2]}”.",
    )


class NewestRunsFormSet(BaseInlineFormSet):
    def get_queryset(self):
        if not hasattr(self, "_newest_runs"):
            self._newest_runs = super().get_queryset()[:RECENT_RUNS]
        return self._newest_runs


class SyncRunInline(ReadOnlyTabularInline):
    model = SyncRun
    formset = NewestRunsFormSet
    fields = [
        "started_at",
        "trigger",
        "outcome",
        "finished_at",
        "read",
        "created",
        "updated",
        "unchanged",
        "failed",
        "deleted",
        "cursor_before",
        "cursor_after",
        "message",
    ]
    verbose_name_plural = f"latest sync runs (newest {RECENT_RUNS})"
    show_change_link = True


@admin.register(Scope)
class ScopeAdmin(ObjectActionsMixin, admin.ModelAdmin):
    form = ScopeAdminForm
    list_display = [
        "connection",
        "name",
        "query",
        "product",
        "enabled",
        "interval_minutes",
        "cursor",
        "last_run",
    ]
    list_display_links = ["name"]
    list_filter = ["enabled", "connection", "product"]
    search_fields = ["name", "query", "connection__name"]
    autocomplete_fields = ["connection", "product", "team"]
    readonly_fields = ["schedule", "last_full_scan_at", "lease"]
    fieldsets = [
        (None, {"fields": ["connection", "name", "query"]}),
        ("Feeds", {"fields": ["product", "team"]}),
        ("Schedule", {"fields": ["enabled", "interval_minutes", "schedule", "overlap_seconds", "page_size"]}),
        ("Progress", {"fields": ["cursor", "last_full_scan_at", "lease"]}),
    ]
    inlines = [SyncRunInline]
    actions = ["sync_now", "full_scan", "preview_mapping"]

    def get_queryset(self, request):
        latest = SyncRun.objects.filter(scope=OuterRef("pk")).order_by("-started_at", "-id")
        return (
            super()
            .get_queryset(request)
            # str() names the connection, so autocompletes need it too; Django skips list_select_related
            # when the queryset already selects, hence the product here as well.
            .select_related("connection", "product")
            .annotate(
                last_run_outcome=Subquery(latest.values("outcome")[:1]),
                last_run_started_at=Subquery(latest.values("started_at")[:1]),
            )
        )

    def get_inlines(self, request, obj):
        return self.inlines if obj is not None else []  # a scope being added has no runs yet

    def get_urls(self):
        preview = self.admin_site.admin_view(self.preview_mapping_view)
        import_csv = self.admin_site.admin_view(self.import_csv_view)
        return [
            path("<path:object_id>/preview-mapping/", preview, name="connectors_scope_preview_mapping"),
            path("<path:object_id>/import-csv/", import_csv, name="connectors_scope_import_csv"),
            self.object_action_url("sync-now", "sync_now", "connectors_scope_sync_now"),
            *super().get_urls(),
        ]

    def get_form(self, request, obj=None, change=False, **kwargs):
        form = super().get_form(request, obj, change, **kwargs)
        connector = connector_class(obj.connection.kind) if obj is not None else None
        if connector is not None and connector.query_help and "query" in form.base_fields:
            form.base_fields["query"].help_text = f"{connector.name}: {connector.query_help}"
        return form

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        if obj is not None and obj.connection.kind == CSV_KIND:
            context["csv_import_url"] = reverse("admin:connectors_scope_import_csv", args=[obj.pk])
        return super().render_change_form(request, context, add, change, form_url, obj)

    def save_model(self, request, obj, form, change):
        save_changed_columns(obj, form.changed_data, change)
        services.scope_schedule_save(obj)

    def delete_model(self, request, obj):
        services.scope_delete(obj)

    def delete_queryset(self, request, queryset):
        for scope in queryset:
            services.scope_delete(scope)

    @admin.display(description="last run", ordering="last_run_started_at")
    def last_run(self, scope: Scope) -> str:
        if scope.last_run_outcome is None:
            return "never"
        url = changelist_url(SyncRun, scope__id__exact=scope.pk)
        return format_html(
            '<a href="{}">{}</a> {}', url, scope.last_run_outcome, when(scope.last_run_started_at)
        )

    @admin.display(description="schedule")
    def schedule(self, scope: Scope) -> str:
        if scope.periodic_task_id is None:
            return "created when the scope is saved"
        state = "on" if scope.enabled else "off"
        url = reverse("admin:django_celery_beat_periodictask_change", args=[scope.periodic_task_id])
        return format_html('<a href="{}">periodic task</a> ({})', url, state)

    @admin.display(description="sync lease")
    def lease(self, scope: Scope) -> str:
        if not scope.lease_token or scope.lease_expires_at is None or scope.lease_expires_at < timezone.now():
            return "free"
        return f"held by a running sync until {when(scope.lease_expires_at)}"

    @admin.action(description="Sync now", permissions=["change"])
    def sync_now(self, request, queryset):
        scopes = list(queryset)
        for scope in scopes:
            enqueue_on_commit(tasks.scope_sync_task, scope.pk, SyncTrigger.MANUAL.value)
        self.message_user(
            request,
            f"Queued a sync of {names_of(scopes)}; its run shows on the scope page.",
            messages.SUCCESS,
        )

    @admin.action(description="Full scan (mark deleted)", permissions=["change"])
    def full_scan(self, request, queryset):
        scopes = list(queryset)
        for scope in scopes:
            enqueue_on_commit(tasks.scope_full_scan_task, scope.pk)
        self.message_user(
            request,
            f"Queued a full scan of {names_of(scopes)}: items gone from the tool will be marked deleted.",
            messages.SUCCESS,
        )

    @admin.action(description="Preview mapping (a dry run that saves nothing)", permissions=["view"])
    def preview_mapping(self, request, queryset):
        scopes = list(queryset[:2])
        if len(scopes) != 1:
            self.message_user(request, "Select exactly one scope to preview its mapping.", messages.WARNING)
            return None
        return HttpResponseRedirect(reverse("admin:connectors_scope_preview_mapping", args=[scopes[0].pk]))

    def preview_mapping_view(self, request, object_id):
        scope = self.get_object(request, unquote(object_id))
        if scope is None:
            return self._get_obj_does_not_exist_redirect(request, self.opts, object_id)
        if not self.has_view_permission(request, scope):
            raise PermissionDenied
        try:
            rows = services.mapping_preview(scope, limit=PREVIEW_SIZE)
        except TOOL_ERRORS as error:
            self.message_user(
                request, f"No preview: could not read from {scope.connection}: {error}", messages.ERROR
            )
            return HttpResponseRedirect(change_url(scope))
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": f"Mapping preview of {scope}",
            "subtitle": None,
            "scope": scope,
            "lines": preview_lines(rows),
            "sample_size": PREVIEW_SIZE,
            "type_mappings_url": changelist_url(TypeMapping, connection__id__exact=scope.connection_id),
        }
        return TemplateResponse(request, "admin/connectors/scope/preview_mapping.html", context)

    def import_csv_view(self, request, object_id):
        """A CSV connection's items arrive as files: upload one, and see what was imported and refused."""
        scope = self.get_object(request, unquote(object_id))
        if scope is None:
            return self._get_obj_does_not_exist_redirect(request, self.opts, object_id)
        if not self.has_change_permission(request, scope):
            raise PermissionDenied
        if scope.connection.kind != CSV_KIND:
            self.message_user(
                request,
                f"“{scope}” reads from {scope.connection}, a {scope.connection.kind} connection: only scopes "
                "of CSV connections take file imports.",
                messages.ERROR,
            )
            return HttpResponseRedirect(change_url(scope))
        report = None
        form = CsvImportForm(request.POST, request.FILES) if request.method == "POST" else CsvImportForm()
        if form.is_bound and form.is_valid():
            try:
                report = csv_import(scope, form.cleaned_data["file"])
            except CsvImportError as error:
                form.add_error("file", str(error))
            else:
                form = CsvImportForm()
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": f"Import CSV into {scope}",
            "subtitle": None,
            "scope": scope,
            "form": form,
            "report": report,
            "shown_errors": report.errors[:CSV_ERRORS_SHOWN] if report else [],
            "errors_shown": CSV_ERRORS_SHOWN,
            "run_url": reverse("admin:connectors_syncrun_change", args=[report.run_id]) if report else "",
            "sync_errors_url": changelist_url(SyncError, connection__id__exact=scope.connection_id),
            "type_mappings_url": changelist_url(TypeMapping, connection__id__exact=scope.connection_id),
            "columns": COLUMN_HELP,
            "example": EXAMPLE,
        }
        return TemplateResponse(request, "admin/connectors/scope/import_csv.html", context)


# --- Mappings ----------------------------------------------------------------------------------------


class StatusMappingInline(admin.TabularInline):
    model = StatusMapping
    form = StatusMappingForm
    formset = StatusMappingFormSet
    fields = ["tool_status", "flow_state"]
    extra = 0


class FieldMappingInline(admin.TabularInline):
    model = FieldMapping
    form = FieldMappingForm
    formset = FieldMappingFormSet
    fields = ["tool_path", "model_field", "transform", "value_map"]
    extra = 0


@admin.register(TypeMapping)
class TypeMappingAdmin(admin.ModelAdmin):
    form = TypeMappingAdminForm
    list_display = [
        "tool_type",
        "connection",
        "condition",
        "artifact_model",
        "flow_type",
        "priority",
        "status_count",
        "field_count",
    ]
    list_display_links = ["tool_type"]
    list_filter = ["connection", "artifact_model"]
    search_fields = ["tool_type", "connection__name", "artifact_model__name"]
    autocomplete_fields = ["connection", "artifact_model", "flow_item_type"]
    fieldsets = [
        (None, {"fields": ["connection", "tool_type", "artifact_model", "flow_item_type", "priority"]}),
        (
            "Only when a field matches (optional)",
            {"fields": ["condition_path", "condition_value"]},
        ),
    ]
    inlines = [StatusMappingInline, FieldMappingInline]

    def get_queryset(self, request):
        # str() names the connection and model, so the autocomplete results need them too.
        return (
            super()
            .get_queryset(request)
            .select_related("connection", "artifact_model__default_flow_item_type", "flow_item_type")
            .annotate(
                status_mapping_count=count_of(StatusMapping.objects.all(), "type_mapping"),
                field_mapping_count=count_of(FieldMapping.objects.all(), "type_mapping"),
            )
        )

    @admin.display(description="condition")
    def condition(self, mapping: TypeMapping) -> str:
        return f"{mapping.condition_path} = {mapping.condition_value}" if mapping.condition_path else ""

    @admin.display(description="flow item type", ordering="flow_item_type__name")
    def flow_type(self, mapping: TypeMapping) -> str:
        if mapping.flow_item_type is not None:
            return str(mapping.flow_item_type)
        default = mapping.artifact_model.default_flow_item_type
        return f"{default} (model default)" if default else "none (supporting artifact)"

    @admin.display(description="statuses", ordering="status_mapping_count")
    def status_count(self, mapping: TypeMapping) -> int:
        return mapping.status_mapping_count

    @admin.display(description="fields", ordering="field_mapping_count")
    def field_count(self, mapping: TypeMapping) -> int:
        return mapping.field_mapping_count


class UnderTypeMappingAdmin(admin.ModelAdmin):
    """Status and field mappings are edited under their type mapping; these lists find them across all."""

    autocomplete_fields = ["type_mapping"]
    list_select_related = ["type_mapping__connection", "type_mapping__artifact_model"]


@admin.register(StatusMapping)
class StatusMappingAdmin(UnderTypeMappingAdmin):
    form = StatusMappingAdminForm
    list_display = ["tool_status", "flow_state", "type_mapping"]
    list_filter = ["flow_state", "type_mapping__connection"]
    search_fields = ["tool_status", "type_mapping__tool_type"]


@admin.register(FieldMapping)
class FieldMappingAdmin(UnderTypeMappingAdmin):
    form = FieldMappingAdminForm
    list_display = ["tool_path", "model_field", "transform", "type_mapping"]
    list_filter = ["transform", "type_mapping__connection"]
    search_fields = ["tool_path", "model_field", "type_mapping__tool_type"]


# --- What syncs leave behind -------------------------------------------------------------------------


@admin.register(SyncRun)
class SyncRunAdmin(ReadOnlyAdmin):
    list_display = [
        "started_at",
        "scope",
        "trigger",
        "outcome",
        "finished_at",
        "read",
        "created",
        "updated",
        "unchanged",
        "failed",
        "deleted",
        "cursor_before",
        "cursor_after",
    ]
    list_filter = ["outcome", "trigger", "scope__connection"]
    list_select_related = ["scope__connection"]
    search_fields = ["scope__name", "message"]
    show_full_result_count = False


class OpenOrResolvedFilter(admin.SimpleListFilter):
    """Open errors unless asked otherwise: they are what needs doing."""

    title = "status"
    parameter_name = "status"
    OPEN, RESOLVED, ALL = "open", "resolved", "all"

    def lookups(self, request, model_admin):
        return [(self.OPEN, "open"), (self.RESOLVED, "resolved"), (self.ALL, "all")]

    def value(self):
        return super().value() or self.OPEN

    def choices(self, changelist):
        for value, label in self.lookup_choices:
            yield {
                "selected": self.value() == value,
                "query_string": changelist.get_query_string({self.parameter_name: value}),
                "display": label,
            }

    def queryset(self, request, queryset):
        if self.value() == self.OPEN:
            return queryset.filter(resolved_at__isnull=True)
        if self.value() == self.RESOLVED:
            return queryset.filter(resolved_at__isnull=False)
        return queryset


@admin.register(SyncError)
class SyncErrorAdmin(ReadOnlyAdmin):
    list_display = [
        "item",
        "connection",
        "scope",
        "stage",
        "short_message",
        "attempts",
        "last_seen_at",
        "resolved",
        "fix",
    ]
    list_filter = [OpenOrResolvedFilter, "stage", "connection"]
    list_select_related = ["connection", "scope__connection"]
    search_fields = ["item_key", "message"]
    autocomplete_fields = ["connection"]
    show_full_result_count = False
    fields = [
        "connection",
        "scope",
        "run",
        "stage",
        "item_key",
        "external_id",
        "message",
        "fix",
        "fingerprint",
        "attempts",
        "first_seen_at",
        "last_seen_at",
        "next_retry_at",
        "resolved_at",
        "payload_json",
    ]
    readonly_fields = ["fix", "payload_json"]
    actions = ["retry", "mark_resolved"]

    def get_urls(self):
        map_status = self.admin_site.admin_view(self.map_status_view)
        return [
            path("<path:object_id>/map-status/", map_status, name="connectors_syncerror_map_status"),
            *super().get_urls(),
        ]

    # Acting on errors is changing them: the model's own change permission decides.
    def has_retry_permission(self, request) -> bool:
        return request.user.has_perm("connectors.change_syncerror")

    has_resolve_permission = has_retry_permission

    @admin.display(description="item", ordering="item_key")
    def item(self, error: SyncError) -> str:
        return error.item_key or error.external_id or Truncator(error.fingerprint).chars(60)

    @admin.display(description="message")
    def short_message(self, error: SyncError) -> str:
        return Truncator(error.message).chars(MESSAGE_PREVIEW_CHARS)

    @admin.display(description="resolved", boolean=True, ordering="resolved_at")
    def resolved(self, error: SyncError) -> bool:
        return error.resolved_at is not None

    @admin.display(description="fix")
    def fix(self, error: SyncError) -> str:
        if not is_unmapped_status(error):
            return ""
        url = reverse("admin:connectors_syncerror_map_status", args=[error.pk])
        return format_html('<a href="{}">Map this status</a>', url)

    @admin.display(description="payload (as the tool sent it)")
    def payload_json(self, error: SyncError) -> str:
        return format_html("<pre>{}</pre>", pretty_json(error.payload)) if error.payload is not None else "-"

    def map_status_view(self, request, object_id):
        """Opens the status mapping form filled in with the type mapping and status of the error."""
        error = self.get_object(request, unquote(object_id))
        if error is None:
            return self._get_obj_does_not_exist_redirect(request, self.opts, object_id)
        if not self.has_view_permission(request, error):
            raise PermissionDenied
        unmapped = unmapped_status_of(error)
        prefill = {"tool_status": unmapped.status}
        if unmapped.type_mapping is not None:
            prefill["type_mapping"] = unmapped.type_mapping.pk
        return HttpResponseRedirect(f"{reverse('admin:connectors_statusmapping_add')}?{urlencode(prefill)}")

    @admin.action(description="Retry the selected errors", permissions=["retry"])
    def retry(self, request, queryset):
        selected = queryset.count()
        retriable = list(
            queryset.filter(resolved_at__isnull=True, scope__isnull=False)
            .exclude(item_key="")
            .values_list("pk", flat=True)
        )
        for error_id in retriable:
            enqueue_on_commit(tasks.sync_error_retry_task, error_id)
        message = f"Queued {len(retriable)} of {selected} selected errors for a retry."
        if len(retriable) < selected:
            message += " The others are resolved already or not about one item: the next sync retries those."
        self.message_user(request, message, messages.SUCCESS if retriable else messages.WARNING)

    @admin.action(description="Mark resolved", permissions=["resolve"])
    def mark_resolved(self, request, queryset):
        open_errors = list(queryset.filter(resolved_at__isnull=True))
        for error in open_errors:
            services.sync_error_resolve(error)
        self.message_user(request, f"Marked {len(open_errors)} errors resolved.", messages.SUCCESS)


@admin.register(RawRecord)
class RawRecordAdmin(ReadOnlyAdmin):
    list_display = ["key", "external_id", "connection", "scope", "fetched_at"]
    list_filter = ["connection"]
    list_select_related = ["connection", "scope__connection"]
    search_fields = ["key", "=external_id"]
    autocomplete_fields = ["connection"]
    show_full_result_count = False
    fields = ["connection", "scope", "key", "external_id", "fetched_at", "digest", "payload_json"]
    readonly_fields = ["payload_json"]

    @admin.display(description="payload (as the tool sent it)")
    def payload_json(self, record: RawRecord) -> str:
        return format_html("<pre>{}</pre>", pretty_json(record.payload))


@admin.register(PendingLink)
class PendingLinkAdmin(ReadOnlyAdmin):
    """Links whose target has not arrived yet: kept visible until a sync brings the target."""

    list_display = ["source", "kind", "target_key", "target_connection", "origin", "first_seen_at"]
    list_filter = ["kind", "target_connection"]
    list_select_related = ["source", "target_connection"]
    search_fields = ["target_key", "source__key"]
    autocomplete_fields = ["source", "target_connection"]
    show_full_result_count = False


class ProcessedFilter(admin.SimpleListFilter):
    title = "processed"
    parameter_name = "processed"

    def lookups(self, request, model_admin):
        return [("yes", "processed"), ("no", "queued")]

    def queryset(self, request, queryset):
        if self.value() == "yes":
            return queryset.filter(processed_at__isnull=False)
        if self.value() == "no":
            return queryset.filter(processed_at__isnull=True)
        return queryset


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(ReadOnlyAdmin):
    """What tools pushed to /hooks/<connection id>/: recorded once per delivery id, then read again."""

    list_display = ["received_at", "connection", "event", "keys", "processed_at", "delivery_id"]
    list_filter = [ProcessedFilter, "connection", "event"]
    list_select_related = ["connection"]
    search_fields = ["=delivery_id", "event", "item_keys", "message"]
    autocomplete_fields = ["connection"]
    date_hierarchy = "received_at"
    show_full_result_count = False
    fields = ["connection", "event", "delivery_id", "item_keys", "received_at", "processed_at", "message"]

    @admin.display(description="items")
    def keys(self, delivery: WebhookDelivery) -> str:
        return Truncator(", ".join(str(key) for key in delivery.item_keys or [])).chars(MESSAGE_PREVIEW_CHARS)
