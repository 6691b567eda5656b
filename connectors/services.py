"""Writes for connections, scopes and sync errors (the ingest itself lives in connectors.ingest)."""

import json
from dataclasses import dataclass
from itertools import islice

from django.db import transaction
from django.utils import timezone
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from connectors.base import Page
from connectors.exceptions import ConnectorError
from connectors.ingest import PageStore, connection_record_health, scope_spec_for
from connectors.mappings import MappingError, NormalisedItem, normalise
from connectors.models import Scope, SyncError, SyncRun, SyncTrigger, ToolConnection
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


def sync_error_retry(error: SyncError, *, transport=None) -> bool:
    """Read the item again and store it; resolves the error when it now goes through."""
    scope = error.scope
    if scope is None or not error.item_key:
        return False
    connector = connector_instance(error.connection, transport=transport)
    run = SyncRun.objects.create(scope=scope, trigger=SyncTrigger.MANUAL, started_at=timezone.now())
    try:
        mappings = load_mapping_set(error.connection)
        store = PageStore(scope, mappings, run)
        item = connector.read_item(error.item_key, scope_spec_for(scope, mappings))
        store.save_page(Page(items=[item]))
    except ConnectorError as failure:
        SyncRun.objects.filter(pk=run.pk).update(
            outcome="failed", finished_at=timezone.now(), message=str(failure)
        )
        return False
    finally:
        connector.close()
    run.refresh_from_db()
    succeeded = run.failed == 0
    SyncRun.objects.filter(pk=run.pk).update(
        outcome="success" if succeeded else "partial", finished_at=timezone.now()
    )
    if succeeded:
        sync_error_resolve(error)
    return succeeded
