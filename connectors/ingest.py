"""The ingest engine: read a scope's changes from its tool into the central store.

One transaction per page: artifacts, their transition ledger, links, raw payloads and the scope's cursor
commit together, so a crash between pages loses nothing and the next run resumes at the cursor. The
cursor is re-read with an overlap (tool queries are not exact to the second), and an item whose payload
and mappings are unchanged is skipped, so re-reading is cheap and changes nothing.
"""

import hashlib
import json
import logging
import queue
import threading
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db import models, transaction
from django.db.models import F, Q
from django.utils import timezone

from connectors.base import ItemFailure, Page, ScopeSpec, ToolItem
from connectors.exceptions import AuthError, ConnectorError
from connectors.links import LinkSource, derive_links, rules_of
from connectors.mappings import (
    STATUS,
    TITLE,
    MappingError,
    MappingSet,
    NormalisedItem,
    field_change_times,
    normalise,
    without_nul,
)
from connectors.models import (
    Integration,
    PendingLink,
    RawRecord,
    Scope,
    SyncError,
    SyncOutcome,
    SyncRun,
    SyncStage,
    SyncTrigger,
    ToolConnection,
)
from connectors.selectors import connector_instance, load_mapping_set
from metrics.tasks import rollups_refresh_task
from vsm.celery import enqueue_on_commit
from vsm.choices import LinkOrigin
from vsm.db import bulk_insert, bulk_upsert
from vsm.models import Artifact, ArtifactLink, StateTransition

logger = logging.getLogger(__name__)

LEASE_SECONDS = 15 * 60
ARTIFACT_FIELDS = (
    "connection_id",
    "external_id",
    "product_id",
    "artifact_model_id",
    "flow_item_type_id",
    "team_id",
    "key",
    "title",
    "url",
    "tool_status",
    "flow_state",
    "created_at",
    "first_started_at",
    "done_at",
    "updated_at",
    "deleted_at",
    "fields",
    "field_times",
    "value",
)
TRANSITION_FIELDS = ("artifact_id", "at", "from_status", "to_status", "from_state", "to_state", "author")
RAW_FIELDS = (
    "connection_id",
    "external_id",
    "scope_id",
    "key",
    "item_type",
    "payload",
    "digest",
    "fetched_at",
)


@dataclass
class SyncResult:
    scope_id: int
    run_id: int | None = None
    outcome: str = ""
    skipped: str = ""
    counts: dict[str, int] = field(default_factory=dict)


class RowLease:
    """Only the holder of a row's lease (a scope, an integration) works on it; the lease expires if its
    holder dies, so a killed worker blocks the next one for at most LEASE_SECONDS."""

    model: type[models.Model]

    def __init__(self, pk: int):
        self.pk = pk
        self.token = uuid.uuid4().hex

    def acquire(self) -> bool:
        now = timezone.now()
        free = Q(lease_expires_at__isnull=True) | Q(lease_expires_at__lt=now)
        return bool(
            self.model.objects.filter(free, pk=self.pk).update(
                lease_token=self.token, lease_expires_at=now + timedelta(seconds=LEASE_SECONDS)
            )
        )

    def renew(self) -> None:
        held = self.model.objects.filter(pk=self.pk, lease_token=self.token).update(
            lease_expires_at=timezone.now() + timedelta(seconds=LEASE_SECONDS)
        )
        if not held:
            raise ConnectorError(
                f"the {self.model._meta.verbose_name}'s lease was lost to another worker; stopping this run"
            )

    def release(self) -> None:
        self.model.objects.filter(pk=self.pk, lease_token=self.token).update(
            lease_token="", lease_expires_at=None
        )


class ScopeLease(RowLease):
    model = Scope


def scope_sync(
    scope_id: int,
    *,
    trigger: str = SyncTrigger.SCHEDULE,
    full_scan: bool = False,
    transport=None,
    sleep=None,
) -> SyncResult:
    """Sync one scope from its cursor; with `full_scan`, also mark items gone from the tool as deleted."""
    scope = Scope.objects.select_related("connection").filter(pk=scope_id).first()
    if scope is None:
        return SyncResult(scope_id=scope_id, skipped="the scope no longer exists")
    lease = ScopeLease(scope_id)
    if not lease.acquire():
        return SyncResult(scope_id=scope_id, skipped="another sync of this scope is running")
    connector = None
    run = SyncRun.objects.create(
        scope=scope, trigger=trigger, started_at=timezone.now(), cursor_before=scope.cursor
    )
    try:
        connector = connector_instance(scope.connection, transport=transport, sleep=sleep)
        mappings = load_mapping_set(scope.connection)
        store = PageStore(scope, mappings, run)
        spec = scope_spec_for(scope, mappings)
        since = scope.cursor - timedelta(seconds=scope.overlap_seconds) if scope.cursor else None
        for page in prefetched(connector.read_changes(spec, since)):
            store.save_page(page)
            lease.renew()
        if full_scan:
            run.deleted = mark_missing_as_deleted(scope, connector.list_ids(spec))
        _finish(run, SyncOutcome.PARTIAL if SyncRun.objects.get(pk=run.pk).failed else SyncOutcome.SUCCESS)
        connection_record_health(scope.connection, error="")
    except ConnectorError as error:
        message = f"{'authentication failed: ' if isinstance(error, AuthError) else ''}{error}"
        _finish(run, SyncOutcome.FAILED, message)
        connection_record_health(scope.connection, error=message)
        logger.warning("sync of scope %s failed: %s", scope_id, message)
    except Exception as error:
        _finish(run, SyncOutcome.FAILED, f"unexpected error: {error.__class__.__name__}: {error}")
        raise
    finally:
        lease.release()
        if connector is not None:
            connector.close()
    run.refresh_from_db()
    return SyncResult(
        scope_id=scope_id,
        run_id=run.pk,
        outcome=run.outcome,
        counts={
            name: getattr(run, name)
            for name in ("read", "created", "updated", "unchanged", "failed", "deleted")
        },
    )


_END = object()


def prefetched(pages: Iterator[Page]) -> Iterator[Page]:
    """Read the next page from the tool in a thread while this one writes the current page.

    Pages still arrive in order, so the cursor semantics are unchanged; an error while reading is
    raised here, in the writer's thread, when its turn comes.
    """
    handoff: queue.Queue = queue.Queue(maxsize=1)
    stop = threading.Event()

    def hand_over(value) -> bool:
        while not stop.is_set():
            try:
                handoff.put(value, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def read() -> None:
        try:
            for page in pages:
                if not hand_over(page):
                    return
            hand_over(_END)
        except BaseException as error:  # handed to the writer, which raises it
            hand_over(error)

    reader = threading.Thread(target=read, name="ingest-reader", daemon=True)
    reader.start()
    try:
        while (value := handoff.get()) is not _END:
            if isinstance(value, BaseException):
                raise value
            yield value
    finally:
        stop.set()
        reader.join(timeout=60)


def _finish(run: SyncRun, outcome: str, message: str = "") -> None:
    cursor = Scope.objects.filter(pk=run.scope_id).values_list("cursor", flat=True).first()
    SyncRun.objects.filter(pk=run.pk).update(
        outcome=outcome,
        finished_at=timezone.now(),
        cursor_after=cursor,
        message=message[:4000],
        deleted=run.deleted,
    )


def connection_record_health(connection: ToolConnection, *, error: str) -> None:
    now = timezone.now()
    if error:
        ToolConnection.objects.filter(pk=connection.pk).update(last_error_at=now, last_error=error[:4000])
    else:
        ToolConnection.objects.filter(pk=connection.pk).update(last_success_at=now)


def refresh_rollups_on_commit(artifact_ids: list[int]) -> None:
    """Metrics follow every change: the rollups of these artifacts refresh once the page commits.

    `robust`: a broker that is down must not fail the sync; the next refresh or rebuild catches up.
    """
    if artifact_ids:
        enqueue_on_commit(rollups_refresh_task, artifact_ids)


def propagate_on_commit(
    scope_id: int, artifact_ids: list[int], trigger: str, written_by: int | None = None
) -> None:
    """Changed items of a scope go to the integrations with a side there, once the page commits."""
    if not artifact_ids:
        return
    integration_ids = list(
        Integration.objects.filter(enabled=True)
        .filter(Q(source_scope_id=scope_id) | Q(target_scope_id=scope_id))
        .exclude(pk=written_by)
        .values_list("pk", flat=True)
    )
    if integration_ids:
        # Imported here: the tasks module imports this one.
        from connectors.tasks import integration_run_task

        for integration_id in integration_ids:
            enqueue_on_commit(integration_run_task, integration_id, artifact_ids, trigger)


def scope_spec_for(scope: Scope, mappings: MappingSet) -> ScopeSpec:
    return ScopeSpec(query=scope.query, fields=mappings.tool_fields(), page_size=scope.page_size)


def artifacts_mark_deleted(connection_id: int, external_ids: Iterable[str], now: datetime) -> list[int]:
    """Items gone from their tool: marked deleted, never removed (their links and history stay). Returns
    the ids of those not marked before; their rollups are the caller's to refresh."""
    gone = Artifact.objects.filter(
        connection_id=connection_id, external_id__in=list(external_ids), deleted_at__isnull=True
    )
    ids = list(gone.values_list("pk", flat=True))
    Artifact.objects.filter(pk__in=ids).update(deleted_at=now)
    return ids


def mark_missing_as_deleted(scope: Scope, present_ids: Iterable[str]) -> int:
    """Items read from this scope before but no longer in the tool: marked deleted, never removed."""
    present = set(present_ids)
    known = set(RawRecord.objects.filter(scope=scope).values_list("external_id", flat=True))
    now = timezone.now()
    with transaction.atomic():
        gone_ids = artifacts_mark_deleted(scope.connection_id, known - present, now)
        refresh_rollups_on_commit(gone_ids)
        Scope.objects.filter(pk=scope.pk).update(last_full_scan_at=now)
    return len(gone_ids)


class PageStore:
    """Writes pages of tool items for one scope and run."""

    def __init__(
        self,
        scope: Scope,
        mappings: MappingSet,
        run: SyncRun,
        *,
        advance_cursor: bool = True,
        written_by: int | None = None,
    ):
        """`advance_cursor=False` for items read one by one (a retry, a webhook): the cursor says that
        everything changed before it is stored, which one item read out of order does not prove.
        `written_by`: the integration whose own write is being stored; it is not started again for it
        (its baselines would find nothing to do), while the other integrations of the item are."""
        self.scope = scope
        self.advance_cursor = advance_cursor
        self.written_by = written_by
        self.connection = scope.connection
        self.mappings = mappings
        self.run = run
        self.fingerprint = f"{mappings.fingerprint}:{scope.product_id}:{scope.team_id}"
        self.link_rules = rules_of(scope.connection)

    def digest(self, item: ToolItem) -> tuple[str, bool]:
        """A hash of the payload and the mappings applied to it, and whether the payload holds NULs."""
        payload = json.dumps(item.raw, sort_keys=True, default=str, separators=(",", ":"))
        digest = hashlib.sha256(f"{self.fingerprint}|{item.deleted}|{payload}".encode()).hexdigest()
        return digest, "\\u0000" in payload

    @transaction.atomic
    def save_page(self, page: Page) -> None:
        now = timezone.now()
        counts = {"read": len(page.items) + len(page.failures), "failed": len(page.failures)}
        for failure in page.failures:
            self.record_error(SyncStage.READ, failure.key or failure.native_id, failure, failure.message, now)

        digests, with_nul = {}, set()
        for item in page.items:
            digests[item.native_id], has_nul = self.digest(item)
            if has_nul:
                with_nul.add(item.native_id)
        stored = dict(
            RawRecord.objects.filter(connection=self.connection, external_id__in=list(digests)).values_list(
                "external_id", "digest"
            )
        )
        changed: list[tuple[ToolItem, NormalisedItem | None]] = []
        for item in page.items:
            if stored.get(item.native_id) == digests[item.native_id]:
                counts["unchanged"] = counts.get("unchanged", 0) + 1
                continue
            if item.deleted:
                changed.append((item, None))
                continue
            try:
                changed.append((item, normalise(item, self.mappings)))
            except MappingError as error:
                counts["failed"] += 1
                self.record_error(SyncStage.MAPPING, item.key, item, str(error), now)

        normalised = [pair for pair in changed if pair[1] is not None]
        created, updated = self.upsert_artifacts([n for _, n in normalised])
        counts["created"], counts["updated"] = created, updated
        self.mark_deleted([item for item, n in changed if n is None], now)
        counts["updated"] += sum(1 for _, n in changed if n is None)

        ids = self.artifact_ids([item.native_id for item, _ in changed])
        refresh_rollups_on_commit(list(ids.values()))
        propagate_on_commit(self.scope.pk, list(ids.values()), self.run.trigger, self.written_by)
        self.replace_transitions({ids[n.external_id]: n for _, n in normalised})
        self.replace_tool_links({ids[n.external_id]: n for _, n in normalised}, now)
        self.resolve_pending_links([n.key for _, n in normalised])
        derive_links(
            self.link_rules,
            [
                LinkSource(ids[n.external_id], item.item_type, item.raw, self.scope.query)
                for item, n in normalised
            ],
            now,
        )
        for _, item_normalised in normalised:
            for status in sorted(item_normalised.unmapped_statuses):
                self.record_unmapped_status(status, item_normalised, now)
        self.store_raw([item for item, _ in changed], digests, with_nul, now)

        newest = max((item.updated for item in page.items), default=None)
        if newest is not None and self.advance_cursor:
            Scope.objects.filter(Q(cursor__isnull=True) | Q(cursor__lt=newest), pk=self.scope.pk).update(
                cursor=newest
            )
        SyncRun.objects.filter(pk=self.run.pk).update(
            **{name: F(name) + value for name, value in counts.items()}
        )

    def upsert_artifacts(self, items: list[NormalisedItem]) -> tuple[int, int]:
        if not items:
            return 0, 0
        stored = {
            external_id: ({**fields, TITLE: title, STATUS: state}, times)
            for external_id, title, state, fields, times in Artifact.objects.filter(
                connection=self.connection, external_id__in=[n.external_id for n in items]
            ).values_list("external_id", "title", "flow_state", "fields", "field_times")
        }
        bulk_upsert(
            Artifact,
            ARTIFACT_FIELDS,
            [self.artifact_row(n, *stored.get(n.external_id, (None, {}))) for n in items],
            unique_fields=["connection", "external_id"],
        )
        created = sum(1 for n in items if n.external_id not in stored)
        return created, len(items) - created

    def artifact_row(self, n: NormalisedItem, before_values: dict | None, before_times: dict) -> tuple:
        return (
            self.connection.pk,
            n.external_id,
            self.scope.product_id,
            n.artifact_model_id,
            n.flow_item_type_id,
            self.scope.team_id,
            n.key,
            n.title,
            n.url,
            n.tool_status,
            n.flow_state,
            n.created_at,
            n.first_started_at,
            n.done_at,
            n.updated_at,
            None,
            n.fields,
            field_change_times(n, before_values, before_times),
            n.value,
        )

    def mark_deleted(self, items: list[ToolItem], now: datetime) -> None:
        if items:
            artifacts_mark_deleted(self.connection.pk, [item.native_id for item in items], now)

    def artifact_ids(self, external_ids: list[str]) -> dict[str, int]:
        return dict(
            Artifact.objects.filter(connection=self.connection, external_id__in=external_ids).values_list(
                "external_id", "id"
            )
        )

    def replace_transitions(self, by_artifact: dict[int, NormalisedItem]) -> None:
        """Make each artifact's ledger equal its tool changelog: add what is new, drop what vanished."""
        if not by_artifact:
            return
        existing: dict[tuple, int] = {}
        for row in StateTransition.objects.filter(artifact_id__in=list(by_artifact)).values_list(
            "id", "artifact_id", "at", "from_status", "to_status", "from_state", "to_state", "author"
        ):
            existing[row[1:]] = row[0]
        wanted = {  # in the order of TRANSITION_FIELDS
            (artifact_id, t.at, t.from_status, t.to_status, t.from_state, t.to_state, t.author)
            for artifact_id, n in by_artifact.items()
            for t in n.transitions
        }
        obsolete = [pk for identity, pk in existing.items() if identity not in wanted]
        if obsolete:
            StateTransition.objects.filter(pk__in=obsolete).delete()
        bulk_insert(
            StateTransition,
            TRANSITION_FIELDS,
            [identity for identity in wanted if identity not in existing],
        )

    def replace_tool_links(self, by_artifact: dict[int, NormalisedItem], now: datetime) -> None:
        """Links the tool records for these items; an end not stored yet waits as a pending link.

        Outgoing links are kept in step with the tool (a link removed there goes here too); incoming
        ones, which the other end may also declare, are only added.
        """
        if not by_artifact:
            return
        target_keys = {link.target_key for n in by_artifact.values() for link in n.links}
        targets = dict(
            Artifact.objects.filter(connection=self.connection, key__in=target_keys).values_list("key", "id")
        )
        wanted_links, added_links = set(), set()
        wanted_pending, added_pending = set(), set()
        for item_id, n in by_artifact.items():
            for link in n.links:
                other_id = targets.get(link.target_key)
                if other_id == item_id:
                    continue
                if other_id is None:
                    pending = (item_id, link.target_key, link.kind, link.incoming)
                    (added_pending if link.incoming else wanted_pending).add(pending)
                elif link.incoming:
                    added_links.add((other_id, item_id, link.kind))
                else:
                    wanted_links.add((item_id, other_id, link.kind))
        sources = list(by_artifact)
        existing_links = {
            (row[1], row[2], row[3]): row[0]
            for row in ArtifactLink.objects.filter(source_id__in=sources, origin=LinkOrigin.TOOL).values_list(
                "id", "source_id", "target_id", "kind"
            )
        }
        gone = [pk for identity, pk in existing_links.items() if identity not in wanted_links]
        if gone:
            ArtifactLink.objects.filter(pk__in=gone).delete()
        ArtifactLink.objects.bulk_create(
            [
                ArtifactLink(source_id=s, target_id=t, kind=k, origin=LinkOrigin.TOOL)
                for s, t, k in (wanted_links - set(existing_links)) | added_links
            ],
            ignore_conflicts=True,
        )
        existing_pending = {
            (row[1], row[2], row[3], False): row[0]
            for row in PendingLink.objects.filter(
                source_id__in=sources,
                target_connection=self.connection,
                origin=LinkOrigin.TOOL,
                reverse=False,
            ).values_list("id", "source_id", "target_key", "kind")
        }
        stale = [pk for identity, pk in existing_pending.items() if identity not in wanted_pending]
        if stale:
            PendingLink.objects.filter(pk__in=stale).delete()
        PendingLink.objects.bulk_create(
            [
                PendingLink(
                    source_id=s,
                    target_connection=self.connection,
                    target_key=key,
                    kind=kind,
                    origin=LinkOrigin.TOOL,
                    reverse=reverse,
                    first_seen_at=now,
                )
                for s, key, kind, reverse in (wanted_pending - set(existing_pending)) | added_pending
            ],
            ignore_conflicts=True,
        )

    def resolve_pending_links(self, keys: list[str]) -> None:
        """Links that waited for one of these items (from any connection) now get their other end."""
        if not keys:
            return
        pending = list(
            PendingLink.objects.filter(target_connection=self.connection, target_key__in=keys).values_list(
                "id", "source_id", "target_key", "kind", "origin", "reverse"
            )
        )
        if not pending:
            return
        arrived = dict(
            Artifact.objects.filter(
                connection=self.connection, key__in={row[2] for row in pending}
            ).values_list("key", "id")
        )
        ArtifactLink.objects.bulk_create(
            [
                ArtifactLink(
                    source_id=arrived[key] if reverse else stored,
                    target_id=stored if reverse else arrived[key],
                    kind=kind,
                    origin=origin,
                )
                for _, stored, key, kind, origin, reverse in pending
                if key in arrived and arrived[key] != stored
            ],
            ignore_conflicts=True,
        )
        PendingLink.objects.filter(pk__in=[row[0] for row in pending if row[2] in arrived]).delete()

    def store_raw(
        self, items: list[ToolItem], digests: dict[str, str], with_nul: set[str], now: datetime
    ) -> None:
        bulk_upsert(
            RawRecord,
            RAW_FIELDS,
            [
                (
                    self.connection.pk,
                    item.native_id,
                    self.scope.pk,
                    item.key,
                    item.item_type,
                    without_nul(item.raw) if item.native_id in with_nul else item.raw,
                    digests[item.native_id],
                    now,
                )
                for item in items
            ],
            unique_fields=["connection", "external_id"],
        )

    def record_unmapped_status(self, status: str, item: NormalisedItem, now: datetime) -> None:
        message = f"unmapped status “{status}” in {item.rule_label}"
        self._upsert_error(
            SyncStage.MAPPING, f"unmapped-status:{item.rule_label}:{status}", item.key, "", message, None, now
        )

    def record_error(
        self, stage: str, key: str, item: ToolItem | ItemFailure, message: str, now: datetime
    ) -> None:
        self._upsert_error(stage, f"item:{item.native_id}", key, item.native_id, message, item.raw, now)

    def _upsert_error(self, stage, fingerprint, key, native_id, message, payload, now) -> None:
        open_error = SyncError.objects.filter(
            connection=self.connection,
            scope=self.scope,
            fingerprint=fingerprint[:400],
            resolved_at__isnull=True,
        )
        if open_error.update(
            attempts=F("attempts") + 1,
            last_seen_at=now,
            message=message,
            payload=without_nul(payload),
            run=self.run,
        ):
            return
        SyncError.objects.create(
            connection=self.connection,
            scope=self.scope,
            run=self.run,
            stage=stage,
            fingerprint=fingerprint[:400],
            item_key=key[:255],
            external_id=native_id[:255],
            message=message,
            payload=without_nul(payload),
            first_seen_at=now,
            last_seen_at=now,
        )
