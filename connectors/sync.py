"""The propagation engine: keep an integration's two sides in step through its artifact model.

For each source item the integration carries, a pair records the target item made for it and what each
side looked like when the engine last agreed with it (its baseline, in model values). A side has
changed a field when its current value differs from its own baseline, so:

- a value the engine wrote is read back at once and becomes that side's baseline: when the next poll
  or webhook reads the same value, nothing has changed and nothing is echoed;
- a field changed on both sides since the last agreement is a conflict, settled by the policy, in
  whatever order the two sides' changes reach the store: before the engine writes to a side it reads
  that side again from its tool and plans again, so a person's edit not stored yet is seen, never
  overwritten (only an edit made in the moment between that read and the write can still be lost);
- "latest wins" is decided field by field, on when each side's value of that field last changed (the
  tools' histories where they keep them, else when a read first saw it: Artifact.field_times);
- running twice changes nothing: after a run every baseline equals what the store holds.

Every write goes through the provider of the side written; what it wrote is read back and stored
through the ingest page store (without starting another propagation), and each write is recorded as
agreed as soon as it succeeded: fields first, then the status, so a failed status change is retried
alone, never with the fields again. Before each write the pair notes what is written and what the other
side held (`pending`): when the answer is lost, finding that value there later is the engine's own write
taking effect (both values become the baselines), not a person's edit. Only what a plan decided is taken
as agreed: a change that a read-back alone brought in stays a change. A failing pair is retried with
backoff and never blocks the others. Creation is crash-safe: the pair is recorded with a fresh marker
before the tool is asked to create the item, and a pair found half-made is first matched against what the
tool already holds (Connector.find_created); an item an earlier attempt made holds what the source held
then, so what the source changed since flows at once, as any change would. A target item deleted in its
tool puts its pair in the state "target gone", said on the run, until a person re-creates or unlinks it.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor, as_completed
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from django.conf import settings
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone

from connectors import richtext
from connectors.base import Connector, ItemRef, Page, ScopeSpec, ToolItem
from connectors.exceptions import ConnectorError, NotFound
from connectors.ingest import (
    PageStore,
    RowLease,
    artifacts_mark_deleted,
    connection_record_health,
    refresh_rollups_on_commit,
    scope_spec_for,
)
from connectors.mappings import STATUS, TITLE, MappingSet
from connectors.models import (
    ConflictPolicy,
    FieldFlow,
    FieldMapping,
    FilterOperator,
    FilterReach,
    FlowTiming,
    Integration,
    IntegrationBacklog,
    IntegrationPair,
    IntegrationRun,
    PairState,
    RawRecord,
    Scope,
    StatusMapping,
    SyncError,
    SyncOutcome,
    SyncRun,
    SyncStage,
    SyncTrigger,
    Transform,
)
from connectors.people import PersonDirectory
from connectors.selectors import connector_instance, load_mapping_set
from vsm.choices import LinkOrigin
from vsm.models import Artifact, ArtifactLink

logger = logging.getLogger(__name__)

SOURCE, TARGET = "source", "target"
BATCH_SIZE = 50  # items per batch: the lease is renewed, and what was made stored, once per batch


# ---------------------------------------------------------------------------------------------------
# Pure decisions


@dataclass(frozen=True)
class FlowRule:
    model_field: str
    flow: str
    timing: str = FlowTiming.ALWAYS

    @property
    def to_target(self) -> bool:
        return self.flow in (FieldFlow.TO_TARGET, FieldFlow.BOTH)

    @property
    def to_source(self) -> bool:
        return self.flow in (FieldFlow.TO_SOURCE, FieldFlow.BOTH)


@dataclass
class PairPlan:
    """What one pass over a pair decided: values to write to each side, conflicts, accepted values."""

    to_target: dict[str, Any] = field(default_factory=dict)
    to_source: dict[str, Any] = field(default_factory=dict)
    conflicts: dict[str, dict[str, Any]] = field(default_factory=dict)
    accept_source: dict[str, Any] = field(default_factory=dict)  # new baselines, nothing to write
    accept_target: dict[str, Any] = field(default_factory=dict)

    @property
    def writes(self) -> bool:
        return bool(self.to_target or self.to_source)

    @property
    def sides_written(self) -> set[str]:
        return {side for side, values in ((SOURCE, self.to_source), (TARGET, self.to_target)) if values}


def plan_pair(
    rules: list[FlowRule],
    source_now: dict[str, Any],
    target_now: dict[str, Any],
    source_base: dict[str, Any],
    target_base: dict[str, Any],
    *,
    policy: str,
    source_times: Mapping[str, datetime],
    target_times: Mapping[str, datetime],
    open_conflicts: dict[str, Any],
) -> PairPlan:
    """Decide, field by field, what flows where; see the module docstring for the rules. `*_times`: when
    each side's value of each field last changed (every flowing field named), for "latest wins"."""
    plan = PairPlan()
    for rule in rules:
        name = rule.model_field
        if rule.timing == FlowTiming.CREATE or name in open_conflicts:
            continue
        source_value, target_value = source_now.get(name), target_now.get(name)
        # A field no baseline names had no value then (baselines leave empty fields out).
        source_changed = source_base.get(name) != source_value
        target_changed = target_base.get(name) != target_value
        if source_value == target_value:
            if source_changed:
                plan.accept_source[name] = source_value
            if target_changed:
                plan.accept_target[name] = target_value
            continue
        if source_changed and target_changed:
            winner = _winner(rule, policy, source_times[name] >= target_times[name])
            if winner is None:
                plan.conflicts[name] = {SOURCE: source_value, TARGET: target_value}
            elif winner == SOURCE:
                plan.to_target[name] = source_value
            else:
                plan.to_source[name] = target_value
        elif source_changed:
            if rule.to_target:
                plan.to_target[name] = source_value
            else:
                plan.accept_source[name] = source_value
        elif target_changed:
            if rule.to_source:
                plan.to_source[name] = target_value
            else:
                plan.accept_target[name] = target_value
    return plan


def _winner(rule: FlowRule, policy: str, source_is_newer: bool) -> str | None:
    """Which side's value stands when both changed; None: flag for a person."""
    if not rule.to_source:
        return SOURCE  # the target's edits never flow back: the source's value stands
    if not rule.to_target:
        return TARGET
    if policy == ConflictPolicy.SOURCE_WINS:
        return SOURCE
    if policy == ConflictPolicy.TARGET_WINS:
        return TARGET
    if policy == ConflictPolicy.LATEST_WINS:
        return SOURCE if source_is_newer else TARGET
    return None


def passes_filters(filters: list[tuple[str, str, str]], values: dict[str, Any]) -> bool:
    """Whether an item's model values meet every (field, operator, value) condition."""
    return all(_condition_holds(operator, values.get(name), expected) for name, operator, expected in filters)


def _condition_holds(operator: str, actual: Any, expected: str) -> bool:
    text = "" if actual is None else str(actual).strip().casefold()
    if operator == FilterOperator.IS_SET:
        return actual not in (None, "", [], {})
    if operator == FilterOperator.IS_TRUE:
        return actual is True or text in ("true", "yes", "1")
    if operator == FilterOperator.ONE_OF:
        return text in {choice.strip().casefold() for choice in expected.split(",") if choice.strip()}
    equal = text == expected.strip().casefold()
    return not equal if operator == FilterOperator.NOT_EQUALS else equal


def route_for(routes: list[tuple[str, str, str]], values: dict[str, Any], default: str) -> str:
    """The container of the first route whose (field, value) matches the item, else `default`."""
    for name, value, container in routes:
        actual = values.get(name)
        if actual is not None and str(actual).strip().casefold() == value.strip().casefold():
            return container
    return default


def model_values(artifact: Artifact) -> dict[str, Any]:
    """An artifact as the integration compares it: its normalised fields, title and flow state."""
    return {**(artifact.fields or {}), TITLE: artifact.title, STATUS: artifact.flow_state}


def change_times(artifact: Artifact, names) -> dict[str, datetime]:
    """When the artifact's value of each field last changed (Artifact.field_times); its `updated_at`
    for a field without a time of its own."""
    stored = artifact.field_times or {}
    return {
        name: datetime.fromisoformat(stored[name]) if name in stored else artifact.updated_at
        for name in names
    }


# ---------------------------------------------------------------------------------------------------
# One side of an integration: its tool, how model values become native fields, how to read back


@dataclass
class Side:
    integration_id: int
    name: str
    scope: Scope
    tool_type: str
    condition: tuple[str, str]  # the type mapping's condition path and value ("" when none)
    field_mappings: dict[str, FieldMapping]
    statuses: dict[str, list[str]]  # flow state -> tool statuses, preferred first
    connector: Connector
    mappings: MappingSet
    page_store: PageStore | None = None

    @property
    def connection_id(self) -> int:
        return self.scope.connection_id

    def spec(self, container: str = "") -> ScopeSpec:
        spec = scope_spec_for(self.scope, self.mappings)
        return ScopeSpec(query=container, fields=spec.fields, page_size=spec.page_size) if container else spec

    def store(self, item: ToolItem) -> Artifact:
        return self.store_many([item])[item.native_id]

    def store_many(self, items: list[ToolItem]) -> dict[str, Artifact]:
        """Store what the tool now holds for these items, by native id; the other integrations of the
        items take it from there, this one does not start again for its own writes."""
        if not items:
            return {}
        if self.page_store is None:
            run = SyncRun.objects.create(
                scope=self.scope, trigger=SyncTrigger.INTEGRATION, started_at=timezone.now()
            )
            self.page_store = PageStore(
                self.scope, self.mappings, run, advance_cursor=False, written_by=self.integration_id
            )
        self.page_store.save_page(Page(items=items))
        stored = Artifact.objects.filter(
            connection_id=self.connection_id, external_id__in=[item.native_id for item in items]
        ).select_related("artifact_model")
        return {artifact.external_id: artifact for artifact in stored}

    def finish(self) -> None:
        if self.page_store is not None:
            SyncRun.objects.filter(pk=self.page_store.run.pk).update(
                outcome=SyncOutcome.SUCCESS, finished_at=timezone.now()
            )


class Writer:
    """Turns model values into one side's native writes, counting every call that changes the tool."""

    def __init__(self, side: Side, other: Side, people: PersonDirectory):
        self.side, self.other, self.people = side, other, people
        self.writes = 0
        self.notes: list[str] = []

    def native(self, values: dict[str, Any]) -> dict[str, Any]:
        paths: dict[str, Any] = {}
        connector = self.side.connector
        for name, value in values.items():
            if name == STATUS:
                continue
            if name == TITLE:
                paths[connector.title_path(self.side.tool_type)] = value
                continue
            mapping = self.side.field_mappings.get(name)
            if mapping is None:
                self.notes.append(f"{name}: no field mapping on the {self.side.name} side")
                continue
            native_value = _unmapped_value(mapping, value)
            if mapping.transform == Transform.RICH_TEXT and isinstance(native_value, str):
                paths[mapping.tool_path] = richtext.from_markdown(native_value, connector.rich_text_format)
            elif mapping.transform == Transform.PERSON and native_value is not None:
                account = self.people.account_for(self.other.connection_id, value, self.side.connection_id)
                if account is None:
                    self.notes.append(f"{name}: no account for “{value}” in {self.side.scope.connection}")
                    continue
                path, native_value = connector.person_value(mapping.tool_path, account)
                paths[path] = native_value
            else:
                paths[mapping.tool_path] = native_value
        return connector.write_fields(self.side.tool_type, paths)

    def creation(self, values: dict[str, Any], container: str, marker: str) -> Callable[[], ToolItem]:
        """The call that creates the item, its fields worked out here; it may run in another thread."""
        native = self.native(values)
        path, value = self.side.condition
        if path:  # so that the new item reads back as the integration's type mapping
            native.update(
                self.side.connector.write_fields(
                    self.side.tool_type, {path: self.side.connector.condition_value(path, value)}
                )
            )
        self.writes += 1
        return partial(
            self.side.connector.create_item,
            self.side.spec(container),
            self.side.tool_type,
            native,
            marker=marker,
        )

    def write_fields(self, artifact: Artifact, values: dict[str, Any]) -> bool:
        """Write these model values (not the status) to the item; whether a call was made."""
        native = self.native({name: value for name, value in values.items() if name != STATUS})
        if not native:
            return False
        self.writes += 1
        self.side.connector.update_item(ItemRef(native_id=artifact.external_id, key=artifact.key), native)
        return True

    def move(self, artifact: Artifact, state: str) -> bool:
        """Move the item to the side's preferred status for the flow state; whether a call was made."""
        if state == artifact.flow_state:
            return False
        status = self.status_for(state)
        if status is None or status == artifact.tool_status:
            return False
        self.writes += 1
        self.side.connector.transition_item(ItemRef(native_id=artifact.external_id, key=artifact.key), status)
        return True

    def status_for(self, state: str) -> str | None:
        statuses = self.side.statuses.get(state) or []
        if not statuses:
            self.notes.append(f"no status of the {self.side.name} maps to “{state}”")
            return None
        return statuses[0]

    def write_back(self, artifact: Artifact, target: Artifact, integration: Integration) -> None:
        """Name the target item on the source item: a link where the tool keeps them, a field if set."""
        ref = ItemRef(native_id=artifact.external_id, key=artifact.key)
        if integration.write_back_path:
            self.writes += 1
            self.side.connector.update_item(
                ref,
                self.side.connector.write_fields(
                    self.side.tool_type, {integration.write_back_path: target.key}
                ),
            )
        if integration.write_back_link and target.url:
            try:
                self.side.connector.add_link(
                    ref, url=target.url, title=f"{self.other.scope.connection.name} {target.key}"
                )
                self.writes += 1
            except ConnectorError as error:
                if "cannot add links" not in str(error) and "no links to URLs" not in str(error):
                    raise

    def read_back(self, artifact_key: str) -> Artifact:
        return self.side.store(self.side.connector.read_item(artifact_key, self.side.spec()))


def _unmapped_value(mapping: FieldMapping, value: Any) -> Any:
    """A model value as the tool had it before the mapping's value map translated it."""
    for native, model_value in (mapping.value_map or {}).items():
        if model_value == value:
            return native
    return value


# ---------------------------------------------------------------------------------------------------
# The service


class IntegrationLease(RowLease):
    model = Integration


@dataclass
class IntegrationResult:
    integration_id: int
    run_id: int | None = None
    skipped: str = ""
    counts: dict[str, int] = field(default_factory=dict)
    next_retry_at: datetime | None = None


COUNTS = ("examined", "created", "updated", "unchanged", "failed", "conflicts", "gone", "writes")


def integration_run(
    integration_id: int,
    *,
    artifact_ids: list[int] | None = None,
    trigger: str = SyncTrigger.SCHEDULE,
    transport=None,
    sleep=None,
) -> IntegrationResult:
    """Propagate the integration's changed items: all of them, or those among `artifact_ids`.

    Items changed while another run holds the integration wait in its backlog, and that run takes them
    before it lets go: a change is never dropped for arriving at a busy moment, and never waits for a
    retry. (The backlog is re-checked after the lease is released, so no item falls between the two.)
    """
    integration = (
        Integration.objects.select_related(
            "source_scope__connection",
            "target_scope__connection",
            "source_type_mapping",
            "target_type_mapping",
        )
        .filter(pk=integration_id)
        .first()
    )
    if integration is None:
        return IntegrationResult(integration_id, skipped="the integration no longer exists")
    if not integration.enabled:
        return IntegrationResult(integration_id, skipped="the integration is disabled")
    if artifact_ids is not None:
        IntegrationBacklog.objects.bulk_create(
            [IntegrationBacklog(integration=integration, artifact_id=pk) for pk in artifact_ids],
            ignore_conflicts=True,
        )
    result = IntegrationResult(integration_id, counts=dict.fromkeys(COUNTS, 0))
    whole = artifact_ids is None
    while True:
        lease = IntegrationLease(integration_id)
        if not lease.acquire():
            result.skipped = (
                result.skipped or "another run of this integration is going on; it takes these items"
            )
            return result
        try:
            batch = _backlog_taken(integration, whole)
            run = _one_pass(integration, None if whole else batch, trigger, transport, sleep, lease)
        finally:
            Integration.objects.filter(pk=integration_id).update(last_run_at=timezone.now())
            lease.release()
        result.skipped, result.run_id, whole = "", run.pk, False
        for name in COUNTS:
            result.counts[name] += getattr(run, name)
        if not IntegrationBacklog.objects.filter(integration=integration).exists():
            break
    result.next_retry_at = (
        IntegrationPair.objects.filter(integration=integration, state=PairState.RETRYING)
        .order_by("next_retry_at")
        .values_list("next_retry_at", flat=True)
        .first()
    )
    return result


def _backlog_taken(integration: Integration, whole: bool) -> list[int]:
    """The waiting items' ids, taken off the backlog (all of it for a pass over every item)."""
    waiting = IntegrationBacklog.objects.filter(integration=integration)
    ids = [] if whole else list(waiting.values_list("artifact_id", flat=True))
    (waiting if whole else waiting.filter(artifact_id__in=ids)).delete()
    return ids


def _one_pass(integration, artifact_ids, trigger, transport, sleep, lease) -> IntegrationRun:
    run = IntegrationRun.objects.create(integration=integration, trigger=trigger, started_at=timezone.now())
    try:
        with _engine_for(run, transport, sleep) as engine:
            engine.propagate(artifact_ids, lease)
            _finish_run(run, SyncOutcome.PARTIAL if run.failed else SyncOutcome.SUCCESS, engine.message())
    except ConnectorError as error:
        logger.warning("integration %s failed: %s", integration.pk, error)
    return run


@contextmanager
def _engine_for(run: IntegrationRun, transport, sleep) -> Iterator[Engine]:
    """The engine of one run, its tools closed afterwards; the run is marked failed if its work raises."""
    engine = None
    try:
        engine = Engine(run.integration, run, transport=transport, sleep=sleep)
        yield engine
    except Exception as error:
        unexpected = not isinstance(error, ConnectorError)
        message = f"unexpected error: {error.__class__.__name__}: {error}" if unexpected else str(error)
        _finish_run(run, SyncOutcome.FAILED, message)
        raise
    finally:
        if engine is not None:
            engine.close()


def _finish_run(run: IntegrationRun, outcome: str, message: str) -> None:
    run.outcome, run.finished_at, run.message = outcome, timezone.now(), message[:4000]
    run.save()


class Engine:
    """One run of one integration: both sides' tools open, the mappings and people loaded once."""

    def __init__(self, integration: Integration, run: IntegrationRun, *, transport=None, sleep=None):
        self.integration = integration
        self.run = run
        self.now = timezone.now()
        self.rules = [
            FlowRule(flow.model_field, flow.flow, flow.timing)
            for flow in integration.field_flows.all()
            if flow.flow != FieldFlow.NONE
        ]
        if integration.status_flow != FieldFlow.NONE:
            self.rules.append(FlowRule(STATUS, integration.status_flow))
        self.filters = [(f.model_field, f.operator, f.value) for f in integration.filters.all()]
        self.routes = [(r.model_field, r.value, r.container) for r in integration.routes.all()]
        self.source = self._side(
            integration, SOURCE, integration.source_scope, integration.source_type_mapping, transport, sleep
        )
        self.target = self._side(
            integration, TARGET, integration.target_scope, integration.target_type_mapping, transport, sleep
        )
        people = PersonDirectory.load([self.source.connection_id, self.target.connection_id])
        self.to_target = Writer(self.target, self.source, people)
        self.to_source = Writer(self.source, self.target, people)

    @staticmethod
    def _side(integration, name, scope, type_mapping, transport, sleep) -> Side:
        statuses: dict[str, list[str]] = {}
        for status in StatusMapping.objects.filter(type_mapping=type_mapping).order_by("-preferred", "id"):
            statuses.setdefault(status.flow_state, []).append(status.tool_status)
        return Side(
            integration_id=integration.pk,
            name=name,
            scope=scope,
            tool_type=type_mapping.tool_type,
            condition=(type_mapping.condition_path, type_mapping.condition_value),
            field_mappings={m.model_field: m for m in FieldMapping.objects.filter(type_mapping=type_mapping)},
            statuses=statuses,
            connector=connector_instance(scope.connection, transport=transport, sleep=sleep),
            mappings=load_mapping_set(scope.connection),
        )

    def close(self) -> None:
        for side in (self.source, self.target):
            side.connector.close()
            side.finish()

    def message(self) -> str:
        return "; ".join(dict.fromkeys(self.to_target.notes + self.to_source.notes))

    # Which items

    def sources(self, artifact_ids: list[int] | None):
        integration = self.integration
        tool_type = RawRecord.objects.filter(
            connection_id=OuterRef("connection_id"),
            external_id=OuterRef("external_id"),
            item_type=self.source.tool_type,
        )
        items = Artifact.objects.filter(
            Exists(tool_type),
            connection_id=self.source.connection_id,
            product_id=self.source.scope.product_id,
            artifact_model_id=integration.artifact_model_id,
            deleted_at__isnull=True,
        )
        if artifact_ids is not None:
            paired_sources = IntegrationPair.objects.filter(
                integration=integration, target_id__in=artifact_ids
            ).values("source_id")
            items = items.filter(Q(pk__in=artifact_ids) | Q(pk__in=paired_sources))
        return items.order_by("pk")

    def propagate(self, artifact_ids: list[int] | None, lease: RowLease) -> None:
        sources = list(self.sources(artifact_ids))
        pairs = {
            pair.source_id: pair
            for pair in IntegrationPair.objects.filter(
                integration=self.integration, source_id__in=[a.pk for a in sources]
            ).select_related("target")
        }
        for start in range(0, len(sources), BATCH_SIZE):
            batch = sources[start : start + BATCH_SIZE]
            lease.renew()
            to_create = []
            for source in batch:
                self.run.examined += 1
                pair = pairs.get(source.pk)
                if pair is not None and not self._due(pair):
                    self.run.unchanged += 1
                elif pair is None or pair.last_synced_at is None:  # never completed: (re)create
                    if passes_filters(self.filters, model_values(source)):
                        to_create.append((source, pair))
                    else:
                        self.run.unchanged += 1
                elif self.integration.filter_reach == FilterReach.ALWAYS and not passes_filters(
                    self.filters, model_values(source)
                ):
                    self.run.unchanged += 1
                else:
                    try:
                        self._update(source, pair)
                    except ConnectorError as error:
                        self._failed(source, pair, error)
            self._create_batch(to_create)
        self.run.writes = self.to_target.writes + self.to_source.writes

    def _due(self, pair: IntegrationPair) -> bool:
        if pair.state in (PairState.WAITING, PairState.TARGET_GONE, PairState.UNLINKED):
            return False
        return (
            pair.state != PairState.RETRYING or pair.next_retry_at is None or pair.next_retry_at <= self.now
        )

    # Creating: in batches, so that what the tools hold afterwards is stored a page at a time

    def _create_batch(self, items: list[tuple[Artifact, IntegrationPair | None]]) -> None:
        pairs, fresh = self._pairs_recorded(items)
        made: list[tuple[Artifact, IntegrationPair, ToolItem]] = []
        found: set[int] = set()  # pairs whose item an earlier attempt had made
        # New items are created a few at a time (the tool's calls overlap; its rate cap still holds);
        # an earlier attempt's items are looked for one by one first.
        with ThreadPoolExecutor(max_workers=settings.SYNC_CONCURRENT_WRITES) as pool:
            creating = {}
            for source, _ in items:
                pair = pairs[source.pk]
                if pair.pk in fresh:
                    creating[pool.submit(self._creation(source, pair.create_marker))] = (source, pair)
                    continue
                try:
                    item, earlier = self._remake(source, pair)
                except ConnectorError as error:
                    self._failed(source, pair, error)
                    continue
                made.append((source, pair, item))
                if earlier:
                    found.add(pair.pk)
            for future in as_completed(creating):
                source, pair = creating[future]
                try:
                    item = future.result()
                except ConnectorError as error:
                    self._failed(source, pair, error)
                    continue
                self._record_made(pair, item)
                made.append((source, pair, item))
        targets = self.target.store_many([item for _, _, item in made])

        moved, written_back, failed = [], [], set()
        for source, pair, item in made:
            target = targets[item.native_id]
            try:
                if STATUS in self._flowing_to_target() and self.to_target.move(target, source.flow_state):
                    moved.append(target.key)
                if self.integration.write_back_link or self.integration.write_back_path:
                    self.to_source.write_back(source, target, self.integration)
                    if self._write_back_is_mapped():
                        written_back.append(source.key)
            except ConnectorError as error:
                self._failed(source, pair, error)
                failed.add(item.native_id)
        targets.update(self._read_back_many(self.target, moved))
        sources = self._read_back_many(self.source, written_back)

        done = [(source, pair, item) for source, pair, item in made if item.native_id not in failed]
        ArtifactLink.objects.bulk_create(
            [
                ArtifactLink(
                    source=targets[item.native_id],
                    target=source,
                    kind=self.integration.link_kind,
                    origin=LinkOrigin.SYNC,
                )
                for source, _, item in done
            ],
            ignore_conflicts=True,
        )
        for source, pair, item in done:
            source, target = sources.get(source.external_id, source), targets[item.native_id]
            self.agreed(pair, source, target)
            self.run.created += 1
            if pair.pk in found:
                self._carry_changes_since_the_earlier_attempt(source, pair, target)

    def _carry_changes_since_the_earlier_attempt(
        self, source: Artifact, pair: IntegrationPair, target: Artifact
    ) -> None:
        """An item made by an earlier attempt holds what the source held then: that is the agreed value of
        what a creation carries, and what the source changed since flows now, as any change would."""
        carried = model_values(target)
        for name in {TITLE, *self._flowing_to_target()} - {STATUS}:
            pair.source_values[name] = carried.get(name)
        pair.target, pair.state = target, PairState.OK
        IntegrationPair.objects.filter(pk=pair.pk).update(source_values=pair.source_values)
        try:
            self._update(source, pair)
        except ConnectorError as error:
            self._failed(source, pair, error)

    def _pairs_recorded(
        self, items: list[tuple[Artifact, IntegrationPair | None]]
    ) -> tuple[dict[int, IntegrationPair], set[int]]:
        """Every item's pair, those new recorded in one statement before any tool is asked to create
        anything; and which pairs are new (made now, by this run: no earlier attempt to look for)."""
        stamp = timezone.now()
        IntegrationPair.objects.bulk_create(
            [
                IntegrationPair(
                    integration=self.integration,
                    source=source,
                    state=PairState.CREATING,
                    create_started_at=stamp,
                    create_marker=uuid.uuid4().hex,
                )
                for source, pair in items
                if pair is None
            ],
            ignore_conflicts=True,  # the lease makes a race rare; if one happens, the pair is found below
        )
        pairs = {
            pair.source_id: pair
            for pair in IntegrationPair.objects.filter(
                integration=self.integration, source_id__in=[source.pk for source, _ in items]
            )
        }
        fresh = {
            pair.pk
            for source, known in items
            if known is None
            and (pair := pairs[source.pk]).create_started_at == stamp
            and not pair.target_external_id
        }
        return pairs, fresh

    def _container(self, source: Artifact) -> str:
        default = self.integration.default_container or self.target.scope.query
        return route_for(self.routes, model_values(source), default)

    def _creation(self, source: Artifact, marker: str) -> Callable[[], ToolItem]:
        return self.to_target.creation(self._creation_values(source), self._container(source), marker)

    def _remake(self, source: Artifact, pair: IntegrationPair) -> tuple[ToolItem, bool]:
        """After an earlier attempt: the item it made, found in the target tool (True), or a new one
        (False; recorded with its own start and marker before the tool is asked)."""
        made = self._made_before(source, pair) if pair.create_started_at is not None else None
        earlier = made is not None
        if made is None:
            pair.create_started_at, pair.create_marker = timezone.now(), uuid.uuid4().hex
            IntegrationPair.objects.filter(pk=pair.pk).update(
                create_started_at=pair.create_started_at, create_marker=pair.create_marker
            )
            made = self._creation(source, pair.create_marker)()
        self._record_made(pair, made)
        return made, earlier

    @staticmethod
    def _record_made(pair: IntegrationPair, made: ToolItem) -> None:
        """Recorded at once: a crash from here on finds the item by its id, not by a search."""
        IntegrationPair.objects.filter(pk=pair.pk).update(
            target_external_id=made.native_id, target_key=made.key
        )
        pair.target_external_id, pair.target_key = made.native_id, made.key

    def _read_back_many(self, side: Side, keys: list[str]) -> dict[str, Artifact]:
        """Read these items again and store them; an item that cannot be read is left for the poll."""
        items = []
        for key in keys:
            try:
                items.append(side.connector.read_item(key, side.spec()))
            except ConnectorError as error:
                logger.warning("integration %s: cannot read %s back: %s", self.integration.pk, key, error)
        return side.store_many(items)

    def _write_back_is_mapped(self) -> bool:
        """Whether the write-back changes a model field of the source, which must then be read back
        (a link, a note or an unmapped field changes nothing the integration compares)."""
        path = self.integration.write_back_path
        return bool(path) and any(m.tool_path == path for m in self.source.field_mappings.values())

    def _flowing_to_target(self) -> set[str]:
        return {rule.model_field for rule in self.rules if rule.to_target}

    def _creation_values(self, source: Artifact) -> dict[str, Any]:
        values = model_values(source)
        wanted = self._flowing_to_target() - {STATUS}
        created = {TITLE: values[TITLE]}
        created.update({name: values[name] for name in wanted if values.get(name) not in (None, "", [])})
        return created

    def _made_before(self, source: Artifact, pair: IntegrationPair) -> ToolItem | None:
        """The item an earlier attempt may have created: known by id, or found by the target's provider
        from the attempt's marker (Connector.find_created), not one another pair holds."""
        connector = self.target.connector
        if pair.target_key:
            return connector.read_item(pair.target_key, self.target.spec())
        claimed = set(
            IntegrationPair.objects.filter(integration=self.integration)
            .exclude(pk=pair.pk)
            .values_list("target_external_id", flat=True)
        )
        found = connector.find_created(
            self.target.spec(self._container(source)),
            self.target.tool_type,
            marker=pair.create_marker,
            title=source.title,
            started=pair.create_started_at,
        )
        return next((item for item in found if item.native_id not in claimed), None)

    # Updating

    def _update(self, source: Artifact, pair: IntegrationPair) -> None:
        target = self._target_of(pair)
        if target.deleted_at is not None:
            self._target_gone(pair, target)
            return
        sides = {SOURCE: source, TARGET: target}
        self._adopt_pending(pair, sides)
        plan = self.plan(pair, sides[SOURCE], sides[TARGET])
        read_again: set[str] = set()
        # The store may not hold a person's latest edit of a side yet (its sync or webhook is still to
        # come): every side about to be written is read again first, and the plan made again on what
        # it holds now, until the plan writes only to sides read afresh (twice at most).
        while plan.sides_written - read_again:
            for name in plan.sides_written - read_again:
                read_again.add(name)
                sides[name] = self._read_again(self._writer(name), sides[name])
                if sides[name].deleted_at is not None:
                    if name == TARGET:
                        self._target_gone(pair, sides[name])
                    else:
                        self.run.unchanged += 1  # no longer among the sources from now on
                    return
            self._adopt_pending(pair, sides)
            plan = self.plan(pair, sides[SOURCE], sides[TARGET])
        if not plan.writes and not plan.conflicts:
            if plan.accept_source or plan.accept_target or pair.state != PairState.OK:
                self.settle(pair, sides[SOURCE], sides[TARGET], plan)
            self.run.unchanged += 1
            return
        source, target = self.apply(pair, sides[SOURCE], sides[TARGET], plan)
        self.settle(pair, source, target, plan)
        if plan.conflicts:
            self.run.conflicts += 1
        if plan.writes:
            self.run.updated += 1

    def _writer(self, side: str) -> Writer:
        return self.to_source if side == SOURCE else self.to_target

    @staticmethod
    def _read_again(writer: Writer, artifact: Artifact) -> Artifact:
        """The item as its tool holds it now, stored; marked deleted when the tool no longer has it."""
        try:
            return writer.read_back(artifact.key)
        except NotFound:
            refresh_rollups_on_commit(
                artifacts_mark_deleted(artifact.connection_id, [artifact.external_id], timezone.now())
            )
            artifact.refresh_from_db()
            return artifact

    def _target_of(self, pair: IntegrationPair) -> Artifact:
        target = pair.target
        if target is None:
            target = Artifact.objects.filter(
                connection_id=self.target.connection_id, external_id=pair.target_external_id
            ).first()
            if target is None:  # made, but not stored yet: read it back now
                target = self.to_target.read_back(pair.target_key)
            IntegrationPair.objects.filter(pk=pair.pk).update(target=target)
        return target

    def plan(self, pair: IntegrationPair, source: Artifact, target: Artifact) -> PairPlan:
        names = [rule.model_field for rule in self.rules]
        return plan_pair(
            self.rules,
            model_values(source),
            model_values(target),
            pair.source_values,
            pair.target_values,
            policy=self.integration.conflict_policy,
            source_times=change_times(source, names),
            target_times=change_times(target, names),
            open_conflicts=pair.conflicts,
        )

    def apply(
        self, pair: IntegrationPair, source: Artifact, target: Artifact, plan: PairPlan
    ) -> tuple[Artifact, Artifact]:
        """Make the plan's writes, each side's fields and then its status, each recorded as agreed once
        it succeeded (a later write failing leaves it done); both sides as they are afterwards."""
        sides = {SOURCE: source, TARGET: target}

        def step(name: str, written: dict[str, Any], write: Callable[[Artifact], bool]) -> None:
            other = sides[TARGET if name == SOURCE else SOURCE]
            self._remember_pending(pair, name, written, model_values(other))
            if write(sides[name]):
                sides[name] = self._writer(name).read_back(sides[name].key)
                self._agree_on(pair, sides[SOURCE], sides[TARGET], written, name)
            else:  # nothing to write after all (a field without a mapping, a status already there)
                self._forget_pending(pair, name, written)

        for name, values in ((TARGET, plan.to_target), (SOURCE, plan.to_source)):
            writer = self._writer(name)
            fields = {field: value for field, value in values.items() if field != STATUS}
            if fields:
                step(name, fields, partial(writer.write_fields, values=fields))
            if STATUS in values:
                step(name, {STATUS: values[STATUS]}, partial(writer.move, state=values[STATUS]))
        return sides[SOURCE], sides[TARGET]

    @staticmethod
    def _agree_on(pair: IntegrationPair, source: Artifact, target: Artifact, names, written: str) -> None:
        """Both sides' baselines of these fields become what they now hold: the write to the `written`
        side succeeded, so it is no longer pending."""
        source_now, target_now = model_values(source), model_values(target)
        pending = pair.pending.get(written, {})
        for name in names:
            pair.source_values[name], pair.target_values[name] = source_now.get(name), target_now.get(name)
            pending.pop(name, None)
        IntegrationPair.objects.filter(pk=pair.pk).update(
            source_values=pair.source_values, target_values=pair.target_values, pending=pair.pending
        )

    @staticmethod
    def _remember_pending(pair: IntegrationPair, side: str, values: dict[str, Any], other: dict[str, Any]):
        """What is about to be written to a side, and what the other side held then, kept until the write
        is known to have succeeded: if its answer is lost, the value found there later is the engine's
        own, not a person's edit, and the two values are what both sides agreed on."""
        kept = pair.pending.setdefault(side, {})
        for name, value in values.items():
            kept[name] = {"written": value, "other": other.get(name)}
        IntegrationPair.objects.filter(pk=pair.pk).update(pending=pair.pending)

    @staticmethod
    def _forget_pending(pair: IntegrationPair, side: str, values: dict[str, Any]) -> None:
        for name in values:
            pair.pending.get(side, {}).pop(name, None)
        IntegrationPair.objects.filter(pk=pair.pk).update(pending=pair.pending)

    @staticmethod
    def _adopt_pending(pair: IntegrationPair, sides: dict[str, Artifact]) -> None:
        """Writes whose answer was lost: a side holding the value written took the write (the value
        written and the other side's value then become the baselines); a side holding neither it nor its
        baseline was changed since by someone (the write is forgotten, the change counts); a side still
        holding its baseline may not show the write yet (kept pending)."""
        changed = False
        for side, entries in pair.pending.items():
            own, other = (
                (pair.source_values, pair.target_values)
                if side == SOURCE
                else (pair.target_values, pair.source_values)
            )
            now = model_values(sides[side])
            for name, entry in list(entries.items()):
                if now.get(name) == entry["written"]:
                    own[name], other[name] = entry["written"], entry["other"]
                elif now.get(name) == own.get(name):
                    continue
                del entries[name]
                changed = True
        if changed:
            IntegrationPair.objects.filter(pk=pair.pk).update(
                source_values=pair.source_values, target_values=pair.target_values, pending=pair.pending
            )

    def _target_gone(self, pair: IntegrationPair, target: Artifact) -> None:
        """The target item was deleted in its tool: nothing can be kept in step until a person re-creates
        or unlinks it (pair_recreate, pair_unlink)."""
        self.run.gone += 1
        self.to_target.notes.append(
            f"{target.key} was deleted in {self.target.scope.connection}: re-create or unlink its pair"
        )
        if pair.state != PairState.TARGET_GONE:
            IntegrationPair.objects.filter(pk=pair.pk).update(
                state=PairState.TARGET_GONE,
                last_error=f"{target.key} was deleted in {self.target.scope.connection}",
            )

    def agreed(self, pair: IntegrationPair, source: Artifact, target: Artifact) -> None:
        """A pair just made: both sides' baselines become everything they now hold."""
        pair.source_values, pair.target_values = model_values(source), model_values(target)
        self._recorded(pair, source, target)

    def settle(self, pair: IntegrationPair, source: Artifact, target: Artifact, plan: PairPlan) -> None:
        """After a plan was carried out: the values it accepted become baselines (its writes already
        did, one by one), its conflicts wait for a person. Nothing else is taken as agreed: a change
        that only a read-back brought in is still a change, for the next pass."""
        pair.source_values.update(plan.accept_source)
        pair.target_values.update(plan.accept_target)
        pair.conflicts = {**pair.conflicts, **plan.conflicts}
        self._recorded(pair, source, target)

    def _recorded(self, pair: IntegrationPair, source: Artifact, target: Artifact) -> None:
        IntegrationPair.objects.filter(pk=pair.pk).update(
            target=target,
            target_external_id=target.external_id,
            target_key=target.key,
            source_values=pair.source_values,
            target_values=pair.target_values,
            conflicts=pair.conflicts,
            state=PairState.CONFLICT if pair.conflicts else PairState.OK,
            attempts=0,
            next_retry_at=None,
            last_error="",
            last_synced_at=timezone.now(),
        )
        if pair.attempts or pair.last_error:
            SyncError.objects.filter(
                fingerprint=_error_fingerprint(self.integration, source.external_id), resolved_at__isnull=True
            ).update(resolved_at=timezone.now())

    # Failing

    def _failed(self, source: Artifact, pair: IntegrationPair | None, error: ConnectorError) -> None:
        self.run.failed += 1
        if pair is None:
            pair, _ = IntegrationPair.objects.get_or_create(
                integration=self.integration, source=source, defaults={"state": PairState.CREATING}
            )
        attempts = pair.attempts + 1
        give_up = attempts >= self.integration.max_attempts
        delay = min(settings.SYNC_RETRY_SECONDS * 2 ** (attempts - 1), 6 * 3600)
        IntegrationPair.objects.filter(pk=pair.pk).update(
            attempts=attempts,
            state=PairState.WAITING if give_up else PairState.RETRYING,
            next_retry_at=None if give_up else timezone.now() + timedelta(seconds=delay),
            last_error=str(error)[:4000],
        )
        scope = self.integration.target_scope
        now = timezone.now()
        fingerprint = _error_fingerprint(self.integration, source.external_id)
        message = f"{self.integration}: {source.key}: {error}" + (
            f" (gave up after {attempts} attempts: retry in admin)" if give_up else ""
        )
        updated = SyncError.objects.filter(
            connection_id=scope.connection_id, scope=scope, fingerprint=fingerprint, resolved_at__isnull=True
        ).update(attempts=attempts, last_seen_at=now, message=message)
        if not updated:
            SyncError.objects.create(
                connection_id=scope.connection_id,
                scope=scope,
                stage=SyncStage.WRITE,
                fingerprint=fingerprint,
                item_key=source.key[:255],
                external_id=source.external_id[:255],
                message=message,
                attempts=attempts,
                first_seen_at=now,
                last_seen_at=now,
            )
        connection_record_health(scope.connection, error=str(error))
        logger.warning("integration %s: %s failed: %s", self.integration.pk, source.key, error)


def _error_fingerprint(integration: Integration, external_id: str) -> str:
    return f"integration:{integration.pk}:{external_id}"[:400]


# ---------------------------------------------------------------------------------------------------
# What people do in admin


def pairs_retry(integration: Integration) -> int:
    """Failed pairs (retrying or given up) are due again at once; returns how many."""
    return IntegrationPair.objects.filter(
        integration=integration, state__in=[PairState.RETRYING, PairState.WAITING]
    ).update(state=PairState.RETRYING, attempts=0, next_retry_at=None)


def pair_recreate(pair: IntegrationPair) -> None:
    """A pair whose target item is gone makes a new one at the next run (the old one is not looked for)."""
    IntegrationPair.objects.filter(pk=pair.pk).update(
        target=None,
        target_external_id="",
        target_key="",
        state=PairState.CREATING,
        source_values={},
        target_values={},
        conflicts={},
        attempts=0,
        next_retry_at=None,
        last_error="",
        create_started_at=None,
        create_marker="",
        last_synced_at=None,
    )


def pair_unlink(pair: IntegrationPair) -> None:
    """The source item is no longer kept in step with any target: its pair stays, unlinked, so no run
    makes a new target for it; the trace link to the old target goes."""
    if pair.target_id is not None:
        ArtifactLink.objects.filter(
            source_id=pair.target_id, target_id=pair.source_id, origin=LinkOrigin.SYNC
        ).delete()
    IntegrationPair.objects.filter(pk=pair.pk).update(state=PairState.UNLINKED, next_retry_at=None)


def pair_conflict_resolve(pair: IntegrationPair, *, take: str, transport=None, sleep=None) -> None:
    """Settle the pair's flagged fields with one side's values: written to the other side now."""
    if take not in (SOURCE, TARGET):
        raise ValueError(f"take must be {SOURCE} or {TARGET}")
    if not pair.conflicts:
        return
    lease = IntegrationLease(pair.integration_id)
    if not lease.acquire():
        raise ConnectorError("a run of this integration is going on; try again in a moment")
    try:
        run = IntegrationRun.objects.create(
            integration=pair.integration, trigger=SyncTrigger.MANUAL, started_at=timezone.now()
        )
        with _engine_for(run, transport, sleep) as engine:
            # Each side as its tool holds it now: the chosen side's value may have moved on since the
            # conflict was flagged, and that is the value the person chose.
            source = engine.to_source.read_back(pair.source.key)
            target = engine.to_target.read_back(pair.target.key)
            chosen_now = model_values(source if take == SOURCE else target)
            chosen = {name: chosen_now.get(name) for name in pair.conflicts}
            plan = PairPlan(to_target=chosen) if take == SOURCE else PairPlan(to_source=chosen)
            pair.conflicts = {}
            IntegrationPair.objects.filter(pk=pair.pk).update(conflicts={})
            source, target = engine.apply(pair, source, target, plan)
            # Settled, written or not (a value both sides already held needed no write).
            engine._agree_on(pair, source, target, chosen, TARGET if take == SOURCE else SOURCE)
            engine.settle(pair, source, target, plan)
            run.updated, run.writes = 1, engine.to_target.writes + engine.to_source.writes
            _finish_run(run, SyncOutcome.SUCCESS, f"conflict resolved: took the {take}'s values")
    finally:
        lease.release()
