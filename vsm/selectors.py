"""Reads of the core domain, always through `visible_to`."""

import hashlib
from dataclasses import dataclass

from django.core.cache import cache
from django.db.models import Case, Count, F, Func, IntegerField, Max, OuterRef, Q, Subquery, Value, When
from django.db.models.functions import Coalesce
from django.shortcuts import get_object_or_404

from connectors.models import (
    Integration,
    LinkRule,
    PairState,
    PendingLink,
    SyncError,
    SyncRun,
    ToolConnection,
    TypeMapping,
)
from vsm.models import Artifact, ArtifactLink, ModelField, Product
from vsm.scoping import reach_of


def internal_field_names_by_model() -> dict[int, set[str]]:
    """Fields partners may never see, per artifact model id (one query)."""
    names: dict[int, set[str]] = {}
    for model_id, name in ModelField.objects.filter(partner_visible=False).values_list(
        "artifact_model_id", "name"
    ):
        names.setdefault(model_id, set()).add(name)
    return names


def product_list_for(user):
    visible_artifacts = Artifact.objects.visible_to(user).filter(deleted_at__isnull=True)
    return (
        Product.objects.visible_to(user)
        .annotate(
            artifact_count=Count(
                "artifacts", filter=Q(artifacts__in=visible_artifacts.values("pk")), distinct=True
            )
        )
        .order_by("name")
    )


def product_choices_for(user) -> list[dict]:
    """The visible products' slugs and names, for a filter (no counts: one cheap query)."""
    return list(Product.objects.visible_to(user).order_by("name").values("slug", "name"))


def product_get_for(user, slug: str) -> Product:
    return get_object_or_404(Product.objects.visible_to(user), slug=slug)


def artifact_list_for(user, product: Product):
    return (
        Artifact.objects.visible_to(user)
        .filter(product=product, deleted_at__isnull=True)
        .select_related("artifact_model", "flow_item_type", "connection", "team")
    )


@dataclass(frozen=True, slots=True)
class Origin:
    """Where an artifact comes from, as far as the user may be told (vsm.scoping, Reach.may_name): the
    tool's kind always; the connection and the team only where the user may see them."""

    tool: str
    connection_id: int | None
    connection_name: str
    team_id: int | None

    @property
    def label(self) -> str:
        return self.connection_name or self.tool


def origin_of(user, artifact: Artifact) -> Origin:
    """The artifact's origin for this user; reads `artifact.connection` and `artifact.team`, so select
    them with the artifact."""
    reach = reach_of(user)
    connection, team = artifact.connection, artifact.team if artifact.team_id else None
    named = reach.may_name(connection.partner_id)
    return Origin(
        tool=connection.kind,
        connection_id=connection.pk if named else None,
        connection_name=connection.name if named else "",
        team_id=team.pk if team is not None and reach.may_name(team.partner_id) else None,
    )


def artifact_get_for(user, pk: int) -> Artifact:
    queryset = Artifact.objects.visible_to(user).select_related(
        "product", "artifact_model", "flow_item_type", "connection", "team"
    )
    return get_object_or_404(queryset, pk=pk)


def hidden_fields_for(user, artifact: Artifact) -> set[str]:
    """Normalised field names (and "value" for revenue) this user may not see on the artifact."""
    if not reach_of(user).is_partner:
        return set()
    return internal_field_names_by_model().get(artifact.artifact_model_id, set()) | {"value"}


def hidden_fields_of_model_for(user, model_slug: str) -> set[str]:
    """hidden_fields_for, for every artifact of one model at once (one query, none for a non-partner)."""
    if not reach_of(user).is_partner:
        return set()
    internal = ModelField.objects.filter(partner_visible=False, artifact_model__slug=model_slug)
    return set(internal.values_list("name", flat=True)) | {"value"}


def request_list_for(user, *, product: Product | None = None, deal_breaker=None, account: str = ""):
    """The customer requests the user may see, newest first, narrowed by product, the deal-breaker flag
    and the customer account (a part of its name); a synced copy of one is that request, not another."""
    found = (
        Artifact.objects.visible_to(user)
        .without_copies_for(user)
        .filter(artifact_model__slug="request", deleted_at__isnull=True)
    )
    if product is not None:
        found = found.filter(product=product)
    if deal_breaker is True:
        found = found.filter(fields__deal_breaker=True)
    elif deal_breaker is False:
        found = found.filter(Q(fields__deal_breaker=False) | Q(fields__deal_breaker__isnull=True))
    if account:
        found = found.filter(fields__customer_account__icontains=account)
    return found.select_related("product").order_by("-created_at", "-id")


def links_of(user, artifact: Artifact):
    return (
        ArtifactLink.objects.visible_to(user)
        .filter(Q(source=artifact) | Q(target=artifact))
        .select_related("source__artifact_model", "target__artifact_model")
    )


# --- traceability --------------------------------------------------------------------------------------


def artifact_search_for(user, text: str, *, product: Product | None = None):
    """Visible artifacts whose key or title holds the text; exact keys first, then the newest."""
    found = Artifact.objects.visible_to(user).filter(deleted_at__isnull=True)
    if product is not None:
        found = found.filter(product=product)
    return (
        found.filter(Q(key__iexact=text) | Q(key__icontains=text) | Q(title__icontains=text))
        .annotate(exact_key=Case(When(key__iexact=text, then=Value(0)), default=Value(1)))
        .select_related("product", "artifact_model", "connection")
        .order_by("exact_key", "-updated_at", "-id")
    )


def artifact_cards_for(user, ids) -> dict[int, dict]:
    """What a trace shows of each visible artifact among ids (one query); the tool connection's name only
    where the user may name it (Reach.may_name), else just the tool's kind."""
    reach = reach_of(user)
    rows = (
        Artifact.objects.visible_to(user)
        .filter(pk__in=list(ids), deleted_at__isnull=True)
        .values(
            "id",
            "key",
            "title",
            "url",
            "tool_status",
            "flow_state",
            "created_at",
            "first_started_at",
            "done_at",
            "updated_at",
            "product__slug",
            "product__name",
            "artifact_model__slug",
            "artifact_model__name",
            "connection__kind",
            "connection__name",
            "connection__partner_id",
        )
    )
    cards = {}
    for row in rows:
        if not reach.may_name(row["connection__partner_id"]):
            row["connection__name"] = ""
        cards[row["id"]] = row
    return cards


def pending_links_for(user, source_ids):
    """Links the sources name but whose target is not stored yet, towards connections the user may see."""
    return (
        PendingLink.objects.filter(
            source_id__in=list(source_ids),
            target_connection__in=ToolConnection.objects.visible_to(user),
        )
        .select_related("target_connection")
        .order_by("source_id", "target_key", "id")
    )


# --- the integration landscape -------------------------------------------------------------------------


def _count_of(queryset):
    """A correlated count of a queryset filtered on OuterRef (a plain COUNT, so no GROUP BY)."""
    total = queryset.order_by().annotate(total=Func(F("pk"), function="COUNT")).values("total")
    return Coalesce(Subquery(total, output_field=IntegerField()), 0)


def connection_list_for(user):
    """The visible tool connections with their open sync errors and their last finished sync run, both
    counted over the scopes the user may see (a product owner is not told of another product's syncs)."""
    open_errors = SyncError.objects.visible_to(user).filter(
        connection=OuterRef("pk"), resolved_at__isnull=True
    )
    last_run = (
        SyncRun.objects.visible_to(user)
        .filter(scope__connection=OuterRef("pk"), finished_at__isnull=False)
        .order_by("-finished_at")
    )
    return (
        ToolConnection.objects.visible_to(user)
        .select_related("partner")
        .annotate(
            open_errors=_count_of(open_errors),
            last_sync_at=Subquery(last_run.values("finished_at")[:1]),
            last_sync_outcome=Subquery(last_run.values("outcome")[:1]),
        )
        .order_by("name")
    )


def type_mappings_of(connection_ids):
    return (
        TypeMapping.objects.filter(connection_id__in=list(connection_ids))
        .values("connection_id", "tool_type", "artifact_model__name", "artifact_model__slug")
        .order_by("connection_id", "tool_type", "priority")
    )


LINK_COUNTS_SECONDS = 300


def link_counts_between(user, connection_ids) -> list[dict]:
    """Trace links the user may see, counted per (source connection, target connection).

    Counting joins every link to both of its artifacts (300 ms for 30,000 links among 200,000 artifacts),
    so the counts are cached for LINK_COUNTS_SECONDS under the user's reach and the newest link's id: a
    new link shows at once. Links are never deleted but with their artifacts, which are only marked.
    """
    ids = sorted(connection_ids)
    reach = reach_of(user)
    newest = ArtifactLink.objects.aggregate(newest=Max("id"))["newest"]
    scope = (reach.everything, sorted(reach.product_ids), reach.partner_id, ids, newest)
    key = "vsm:link-counts:" + hashlib.sha256(repr(scope).encode()).hexdigest()

    def count() -> list[dict]:
        return list(
            ArtifactLink.objects.visible_to(user)
            .filter(source__connection_id__in=ids, target__connection_id__in=ids)
            .values("source__connection_id", "target__connection_id")
            .annotate(links=Count("id"))
            .order_by("source__connection_id", "target__connection_id")
        )

    return cache.get_or_set(key, count, LINK_COUNTS_SECONDS)


def link_rules_between(connection_ids):
    ids = list(connection_ids)
    return (
        LinkRule.objects.filter(connection_id__in=ids, target_connection_id__in=ids)
        .select_related("connection", "target_connection")
        .order_by("connection__name", "name")
    )


def integrations_between(user, connection_ids):
    """The integrations the user may see (both scopes feed products in its reach) whose two sides are
    among these connections, with their pairs counted by state."""
    ids = list(connection_ids)
    pairs = {f"pairs_{state}": Count("pairs", filter=Q(pairs__state=state)) for state in PairState.values}
    return (
        Integration.objects.visible_to(user)
        .filter(source_scope__connection_id__in=ids, target_scope__connection_id__in=ids)
        .select_related("artifact_model", "source_scope__connection", "target_scope__connection")
        .annotate(**pairs)
        .order_by("name")
    )
