"""Admin for integrations: edit with validation, watch pairs, runs, conflicts and errors, and act.

Work that talks to tools (a run, a retry, settling a conflict) is enqueued on commit, on the
propagation queue; the page says it was queued.
"""

from django.contrib import admin, messages
from django.db.models import Case, When
from django.forms.models import BaseInlineFormSet
from django.urls import reverse
from django.utils.html import format_html

from connectors import sync, tasks
from connectors.admin import (
    ReadOnlyAdmin,
    changelist_url,
    count_of,
    names_of,
    when,
)
from connectors.admin_forms import IntegrationAdminForm, IntegrationConditionFormSet, IntegrationFieldFormSet
from connectors.models import (
    Integration,
    IntegrationBacklog,
    IntegrationField,
    IntegrationFilter,
    IntegrationPair,
    IntegrationRoute,
    IntegrationRun,
    PairState,
    SyncError,
    SyncTrigger,
)
from vsm.admin import ReadOnlyTabularInline
from vsm.celery import enqueue_on_commit

SHOWN_PAIRS = 50
RECENT_RUNS = 20


class IntegrationFieldInline(admin.TabularInline):
    model = IntegrationField
    formset = IntegrationFieldFormSet
    extra = 0
    verbose_name_plural = "field flow (a field with no row does not flow)"


class IntegrationRouteInline(admin.TabularInline):
    model = IntegrationRoute
    formset = IntegrationConditionFormSet
    extra = 0
    verbose_name_plural = "routing of new target items (else the default container)"


class IntegrationFilterInline(admin.TabularInline):
    model = IntegrationFilter
    formset = IntegrationConditionFormSet
    extra = 0
    verbose_name_plural = "filter: which source items take part (all conditions must hold)"


class PairsNeedingAttentionFirst(BaseInlineFormSet):
    def get_queryset(self):
        if not hasattr(self, "_shown"):
            needs_a_person = [
                PairState.CONFLICT,
                PairState.TARGET_GONE,
                PairState.WAITING,
                PairState.RETRYING,
            ]
            self._shown = (
                super()
                .get_queryset()
                .select_related("source", "target")
                .annotate(rank=Case(When(state__in=needs_a_person, then=0), default=1))
                .order_by("rank", "-id")[:SHOWN_PAIRS]
            )
        return self._shown


class IntegrationPairInline(ReadOnlyTabularInline):
    model = IntegrationPair
    formset = PairsNeedingAttentionFirst
    fk_name = "integration"
    fields = ["source", "target_key", "state", "conflicts", "attempts", "next_retry_at", "last_error"]
    verbose_name_plural = f"pairs ({SHOWN_PAIRS} shown: those needing a person first)"
    show_change_link = True


class NewestIntegrationRuns(BaseInlineFormSet):
    def get_queryset(self):
        if not hasattr(self, "_newest"):
            self._newest = super().get_queryset()[:RECENT_RUNS]
        return self._newest


class IntegrationRunInline(ReadOnlyTabularInline):
    model = IntegrationRun
    formset = NewestIntegrationRuns
    fields = [
        "started_at",
        "trigger",
        "outcome",
        "examined",
        "created",
        "updated",
        "unchanged",
        "failed",
        "conflicts",
        "gone",
        "writes",
        "message",
    ]
    verbose_name_plural = f"latest runs (newest {RECENT_RUNS})"


def _pairs(*states: str):
    return count_of(IntegrationPair.objects.filter(state__in=states), "integration")


@admin.register(Integration)
class IntegrationAdmin(admin.ModelAdmin):
    form = IntegrationAdminForm
    list_display = ["name", "enabled", "sides", "artifact_model", "last_run", "pairs", "attention"]
    list_filter = ["enabled", "artifact_model"]
    search_fields = ["name"]
    autocomplete_fields = [
        "artifact_model",
        "source_scope",
        "source_type_mapping",
        "target_scope",
        "target_type_mapping",
    ]
    readonly_fields = ["last_run_at", "summary"]
    fieldsets = [
        (None, {"fields": ["name", "enabled", "artifact_model", "summary"]}),
        ("Source side", {"fields": ["source_scope", "source_type_mapping"]}),
        ("Target side", {"fields": ["target_scope", "target_type_mapping", "default_container"]}),
        (
            "How items flow",
            {
                "fields": [
                    "filter_reach",
                    "status_flow",
                    "link_kind",
                    "conflict_policy",
                    "write_back_link",
                    "write_back_path",
                    "max_attempts",
                ]
            },
        ),
    ]
    inlines = [
        IntegrationFieldInline,
        IntegrationFilterInline,
        IntegrationRouteInline,
        IntegrationPairInline,
        IntegrationRunInline,
    ]
    actions = ["run_now", "retry_failed"]

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .select_related("artifact_model", "source_scope__connection", "target_scope__connection")
            .annotate(
                ok_pairs=_pairs(PairState.OK),
                conflict_pairs=_pairs(PairState.CONFLICT),
                failed_pairs=_pairs(PairState.RETRYING, PairState.WAITING, PairState.TARGET_GONE),
            )
        )

    def get_inlines(self, request, obj):
        return self.inlines if obj is not None else self.inlines[:3]

    @admin.display(description="from → to")
    def sides(self, integration: Integration) -> str:
        return f"{integration.source_scope.connection} → {integration.target_scope.connection}"

    @admin.display(description="last run", ordering="last_run_at")
    def last_run(self, integration: Integration) -> str:
        return when(integration.last_run_at)

    @admin.display(description="pairs in step")
    def pairs(self, integration: Integration) -> int:
        return integration.ok_pairs

    @admin.display(description="needs a person")
    def attention(self, integration: Integration) -> str:
        if not integration.conflict_pairs and not integration.failed_pairs:
            return "—"
        return format_html(
            '<a href="{}">{} conflicts, {} failing</a>',
            changelist_url(IntegrationPair, integration__id__exact=integration.pk),
            integration.conflict_pairs,
            integration.failed_pairs,
        )

    @admin.display(description="summary")
    def summary(self, integration: Integration) -> str:
        if integration.pk is None:
            return "Saved integrations show their pairs, runs, conflicts and errors here."
        errors = SyncError.objects.filter(
            fingerprint__startswith=f"integration:{integration.pk}:", resolved_at__isnull=True
        ).count()
        return format_html(
            'Last run {}. Pairs: {} in step, <a href="{}">{} in conflict, {} failing</a>; '
            '<a href="{}">{} open errors</a>.',
            when(integration.last_run_at),
            integration.ok_pairs,
            changelist_url(IntegrationPair, integration__id__exact=integration.pk),
            integration.conflict_pairs,
            integration.failed_pairs,
            reverse("admin:connectors_syncerror_changelist") + f"?q=integration:{integration.pk}:",
            errors,
        )

    @admin.action(description="Run now", permissions=["change"])
    def run_now(self, request, queryset):
        integrations = list(queryset)
        for integration in integrations:
            enqueue_on_commit(tasks.integration_run_task, integration.pk, None, SyncTrigger.MANUAL.value)
        self.message_user(
            request, f"Queued a run of {names_of(integrations)}; it shows under its runs.", messages.SUCCESS
        )

    @admin.action(description="Retry failed items", permissions=["change"])
    def retry_failed(self, request, queryset):
        retried = 0
        for integration in queryset:
            retried += sync.pairs_retry(integration)
            enqueue_on_commit(tasks.integration_run_task, integration.pk, None, SyncTrigger.MANUAL.value)
        self.message_user(request, f"Queued {retried} failed items to be tried again.", messages.SUCCESS)


@admin.register(IntegrationPair)
class IntegrationPairAdmin(ReadOnlyAdmin):
    list_display = ["integration", "source", "target_key", "state", "conflicts", "attempts", "last_error"]
    list_filter = ["state", "integration"]
    search_fields = ["source__key", "target_key"]
    list_select_related = ["integration", "source"]
    autocomplete_fields = ["source", "target"]
    actions = ["take_source", "take_target", "recreate_target", "unlink"]

    def has_resolve_permission(self, request) -> bool:
        # Nothing about a pair is edited by hand; settling its conflict is a change to the pair.
        return request.user.has_perm("connectors.change_integrationpair")

    def _settle(self, request, queryset, take: str):
        pairs = list(queryset.filter(state=PairState.CONFLICT))
        for pair in pairs:
            enqueue_on_commit(tasks.integration_pair_resolve_task, pair.pk, take)
        if not pairs:
            self.message_user(request, "None of the chosen pairs is in conflict.", messages.WARNING)
            return
        self.message_user(
            request,
            f"Queued: {len(pairs)} conflicts settled with the {take}'s values, written to the other side.",
            messages.SUCCESS,
        )

    @admin.action(description="Resolve conflict: take the source's values", permissions=["resolve"])
    def take_source(self, request, queryset):
        self._settle(request, queryset, sync.SOURCE)

    @admin.action(description="Resolve conflict: take the target's values", permissions=["resolve"])
    def take_target(self, request, queryset):
        self._settle(request, queryset, sync.TARGET)

    def _target_gone(self, request, queryset, service, done: str):
        pairs = list(queryset.filter(state=PairState.TARGET_GONE))
        for pair in pairs:
            service(pair)
        if not pairs:
            self.message_user(request, "None of the chosen pairs lost its target item.", messages.WARNING)
            return
        self.message_user(request, f"{len(pairs)} pairs {done}.", messages.SUCCESS)

    @admin.action(
        description="Target deleted: make a new target item at the next run", permissions=["resolve"]
    )
    def recreate_target(self, request, queryset):
        self._target_gone(request, queryset, sync.pair_recreate, "get a new target item at the next run")

    @admin.action(
        description="Target deleted: unlink, keep the source item out of step", permissions=["resolve"]
    )
    def unlink(self, request, queryset):
        self._target_gone(request, queryset, sync.pair_unlink, "unlinked")


@admin.register(IntegrationRun)
class IntegrationRunAdmin(ReadOnlyAdmin):
    list_display = [
        "integration",
        "started_at",
        "trigger",
        "outcome",
        "created",
        "updated",
        "failed",
        "gone",
        "writes",
    ]
    list_filter = ["outcome", "trigger", "integration"]
    list_select_related = ["integration"]
    autocomplete_fields = ["integration"]


@admin.register(IntegrationBacklog)
class IntegrationBacklogAdmin(ReadOnlyAdmin):
    """Items waiting for the run of their integration going on; normally empty within seconds."""

    list_display = ["integration", "artifact", "queued_at"]
    list_filter = ["integration"]
    list_select_related = ["integration", "artifact"]
    autocomplete_fields = ["integration", "artifact"]
