"""Writes for connections, scopes and sync errors (the ingest itself lives in connectors.ingest)."""

import json
from dataclasses import dataclass
from itertools import islice

from django.db import transaction
from django.db.models import F, Q, QuerySet
from django.utils import timezone
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from connectors.base import Page
from connectors.exceptions import ConnectorError
from connectors.ingest import PageStore, connection_record_health, scope_spec_for
from connectors.mappings import MappingError, NormalisedItem, normalise
from connectors.models import (
    Person,
    PersonAccount,
    Scope,
    SyncError,
    SyncOutcome,
    SyncRun,
    SyncTrigger,
    ToolConnection,
    WebhookDelivery,
)
from connectors.selectors import connector_instance, load_mapping_set

SCOPE_SYNC_TASK = "connectors.tasks.scope_sync_task"


@transaction.atomic
def scope_schedule_save(scope: Scope) -> PeriodicTask:
    """Keep the scope's django-celery-beat PeriodicTask in step with its schedule and switch."""
    interval, _ = IntervalSchedule.objects.get_or_create(
        every=scope.interval_minutes, period=IntervalSchedule.MINUTES
    )
    task = scope.periodic_task or PeriodicTask(name=f"Sync scope {scope.pk}: {scope}"[:200])
    task.name = f"Sync scope {scope.pk}: {scope}"[:200]
    task.task = SCOPE_SYNC_TASK
    task.interval = interval
    task.args = json.dumps([scope.pk])
    task.kwargs = json.dumps({"trigger": SyncTrigger.SCHEDULE})
    task.enabled = scope.enabled
    task.save()
    if scope.periodic_task_id != task.pk:
        Scope.objects.filter(pk=scope.pk).update(periodic_task=task)
        scope.periodic_task = task
    return task


@transaction.atomic
def scope_delete(scope: Scope) -> None:
    """Delete a scope and its schedule, so beat stops firing syncs for it."""
    task_id = scope.periodic_task_id
    scope.delete()
    if task_id is not None:
        PeriodicTask.objects.filter(pk=task_id).delete()


def connection_set_credentials(connection: ToolConnection, updates: dict[str, str]) -> None:
    """Store new credential values; empty values keep what is stored (the form never shows them)."""
    connection.credentials = connection.credentials.merged(updates)
    connection.save(update_fields=["credentials"])


def connection_check(connection: ToolConnection, *, transport=None) -> str:
    """One cheap authenticated call; records the connection's health and returns a sentence about it."""
    if connection.credentials.unreadable:
        message = "the stored credentials cannot be decrypted with the current VSM_CREDENTIALS_KEY"
        connection_record_health(connection, error=message)
        raise ConnectorError(message)
    connector = connector_instance(connection, transport=transport)
    try:
        who = connector.check_connection()
    except ConnectorError as error:
        connection_record_health(connection, error=str(error))
        raise
    finally:
        connector.close()
    connection_record_health(connection, error="")
    return f"connected to {connection.base_url} as {who}"


@dataclass(frozen=True)
class PreviewRow:
    key: str
    item_type: str
    status: str
    normalised: NormalisedItem | None
    error: str


def mapping_preview(scope: Scope, *, limit: int = 20, transport=None) -> list[PreviewRow]:
    """A dry run: read a sample of the scope and normalise it with the current mappings, saving nothing."""
    mappings = load_mapping_set(scope.connection)
    connector = connector_instance(scope.connection, transport=transport)
    spec = scope_spec_for(scope, mappings)
    rows = []
    try:
        items = (item for page in connector.read_changes(spec, None) for item in page.items)
        for item in islice(items, limit):
            try:
                rows.append(PreviewRow(item.key, item.item_type, item.status, normalise(item, mappings), ""))
            except MappingError as error:
                rows.append(PreviewRow(item.key, item.item_type, item.status, None, str(error)))
    finally:
        connector.close()
    return rows


def sync_error_resolve(error: SyncError) -> None:
    SyncError.objects.filter(pk=error.pk, resolved_at__isnull=True).update(resolved_at=timezone.now())


def scope_items_reread(scope: Scope, keys: list[str], *, trigger: str, transport=None, sleep=None) -> SyncRun:
    """Read these items of the scope again and store them, under one run of `trigger`.

    An item that cannot be read is named in the run's message and the others are still stored; the
    run is a success when every item was read and stored, partial when some were, failed when none.
    Building the connector (e.g. missing credentials) raises before any run is recorded.
    """
    connector = connector_instance(scope.connection, transport=transport, sleep=sleep)
    run = SyncRun.objects.create(scope=scope, trigger=trigger, started_at=timezone.now())
    problems: list[str] = []
    items = []
    try:
        mappings = load_mapping_set(scope.connection)
        spec = scope_spec_for(scope, mappings)
        for key in keys:
            try:
                items.append(connector.read_item(key, spec))
            except ConnectorError as failure:
                problems.append(f"{key}: {failure}" if len(keys) > 1 else str(failure))
        if items:
            PageStore(scope, mappings, run, advance_cursor=False).save_page(Page(items=items))
    except Exception as error:
        SyncRun.objects.filter(pk=run.pk).update(
            outcome=SyncOutcome.FAILED,
            finished_at=timezone.now(),
            message=f"unexpected error: {error.__class__.__name__}: {error}"[:4000],
        )
        raise
    finally:
        connector.close()
    run.refresh_from_db()
    if not items:
        outcome = SyncOutcome.FAILED
    elif problems or run.failed:
        outcome = SyncOutcome.PARTIAL
    else:
        outcome = SyncOutcome.SUCCESS
    SyncRun.objects.filter(pk=run.pk).update(
        outcome=outcome,
        finished_at=timezone.now(),
        read=F("read") + len(problems),
        failed=F("failed") + len(problems),
        message="; ".join(problems)[:4000],
    )
    run.refresh_from_db()
    return run


def sync_error_retry(error: SyncError, *, transport=None) -> bool:
    """Read the item again and store it; resolves the error when it now goes through."""
    scope = error.scope
    if scope is None or not error.item_key:
        return False
    run = scope_items_reread(scope, [error.item_key], trigger=SyncTrigger.MANUAL, transport=transport)
    succeeded = run.outcome == SyncOutcome.SUCCESS
    if succeeded:
        sync_error_resolve(error)
    return succeeded


def webhook_scope_for(connection: ToolConnection, key: str) -> Scope | None:
    """The enabled scope that stored the item before, else the connection's first enabled scope."""
    enabled = Scope.objects.filter(connection=connection, enabled=True).select_related("connection")
    # Jira names link ends by issue id: a key or a native id finds the scope that stored the item.
    stored = enabled.filter(Q(raw_records__key=key) | Q(raw_records__external_id=key)).order_by("pk").first()
    return stored or enabled.order_by("pk").first()


def webhook_delivery_process(delivery: WebhookDelivery, *, transport=None, sleep=None) -> list[SyncRun]:
    """Read the delivery's items again and store them (one webhook run per scope); mark it processed.

    Reading an item again is idempotent, so a task that runs twice (a worker lost mid-way) does no harm;
    a delivery already processed is left alone. The scope's cursor does not move: the scheduled sync
    stays the safety net, and picks up whatever cannot be read now; the delivery's message says what
    happened.
    """
    if delivery.processed_at is not None:
        return []
    connection = delivery.connection
    by_scope: dict[int, tuple[Scope, list[str]]] = {}
    unscoped = []
    for key in dict.fromkeys(delivery.item_keys or []):
        scope = webhook_scope_for(connection, key)
        if scope is None:
            unscoped.append(key)
        else:
            by_scope.setdefault(scope.pk, (scope, []))[1].append(key)
    runs, notes = [], []
    if unscoped:
        notes.append(f"no enabled scope of {connection} to store {', '.join(unscoped)} in")
    for scope, keys in by_scope.values():
        try:
            run = scope_items_reread(
                scope, keys, trigger=SyncTrigger.WEBHOOK, transport=transport, sleep=sleep
            )
        except ConnectorError as error:
            notes.append(f"{scope}: {error}")
            continue
        runs.append(run)
        if run.outcome != SyncOutcome.SUCCESS:
            notes.append(f"{scope}: {run.get_outcome_display()}{f': {run.message}' if run.message else ''}")
    WebhookDelivery.objects.filter(pk=delivery.pk).update(
        processed_at=timezone.now(), message="\n".join(notes)[:4000]
    )
    return runs


@transaction.atomic
def people_match_by_email(people: QuerySet[Person] | None = None) -> int:
    """Join the people (all, or those given) whose accounts or own records share an email, ignoring
    case, into one person each: the default person if among them, else the oldest. Accounts imported
    one person each thus come together across tools. Returns how many people were merged away."""
    people = list((Person.objects.all() if people is None else people).prefetch_related("accounts"))
    joined_to = {person.pk: person.pk for person in people}

    def group_of(pk: int) -> int:
        while joined_to[pk] != pk:
            pk = joined_to[pk]
        return pk

    first_with_email: dict[str, int] = {}
    for person in people:
        emails = {person.email, *(account.email for account in person.accounts.all())}
        for email in {email.strip().casefold() for email in emails} - {""}:
            other = first_with_email.setdefault(email, person.pk)
            joined_to[group_of(person.pk)] = group_of(other)
    groups: dict[int, list[Person]] = {}
    for person in people:
        groups.setdefault(group_of(person.pk), []).append(person)
    merged = 0
    for members in groups.values():
        if len(members) < 2:
            continue
        keeper = min(members, key=lambda person: (not person.is_default, person.pk))
        others = [person.pk for person in members if person.pk != keeper.pk]
        if not keeper.email:  # they were joined by an email, so there is one
            emails = [person.email for person in members]
            emails += [account.email for person in members for account in person.accounts.all()]
            keeper.email = next(email for email in emails if email)
            keeper.save(update_fields=["email"])
        PersonAccount.objects.filter(person_id__in=others).update(person=keeper)
        Person.objects.filter(pk__in=others).delete()
        merged += len(others)
    return merged
