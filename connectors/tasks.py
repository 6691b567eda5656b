from datetime import timedelta

from celery import shared_task
from django.db.models import Q
from django.utils import timezone

from connectors import ingest, links, services, sync
from connectors.models import (
    Integration,
    IntegrationPair,
    Scope,
    SyncError,
    SyncTrigger,
    ToolConnection,
    WebhookDelivery,
)

FULL_SCAN_EVERY = timedelta(days=1)


@shared_task(acks_late=True)
def scope_sync_task(scope_id: int, trigger: str = SyncTrigger.SCHEDULE) -> dict:
    result = ingest.scope_sync(scope_id, trigger=trigger)
    return {"run": result.run_id, "outcome": result.outcome, "skipped": result.skipped, **result.counts}


@shared_task(acks_late=True)
def scope_full_scan_task(scope_id: int) -> dict:
    result = ingest.scope_sync(scope_id, trigger=SyncTrigger.FULL_SCAN, full_scan=True)
    return {"run": result.run_id, "outcome": result.outcome, "skipped": result.skipped, **result.counts}


@shared_task(acks_late=True)
def sync_error_retry_task(error_id: int) -> bool:
    error = SyncError.objects.select_related("connection", "scope__connection").filter(pk=error_id).first()
    if error is None or error.resolved_at is not None:
        return False
    return services.sync_error_retry(error)


@shared_task(acks_late=True)
def connection_relink_task(connection_id: int) -> dict:
    connection = ToolConnection.objects.filter(pk=connection_id).first()
    if connection is None:
        return {}
    stats = links.relink_connection(connection)
    return {"references": stats.references, "linked": stats.linked, "pending": stats.pending}


@shared_task(acks_late=True)
def webhook_delivery_task(webhook_delivery_id: int) -> dict:
    delivery = WebhookDelivery.objects.select_related("connection").filter(pk=webhook_delivery_id).first()
    if delivery is None or delivery.processed_at is not None:
        return {}
    runs = services.webhook_delivery_process(delivery)
    return {"runs": [run.pk for run in runs]}


@shared_task(acks_late=True)
def integration_run_task(
    integration_id: int, artifact_ids: list[int] | None = None, trigger: str = SyncTrigger.SCHEDULE
) -> dict:
    result = sync.integration_run(integration_id, artifact_ids=artifact_ids, trigger=trigger)
    if result.counts.get("failed") and result.next_retry_at is not None:
        integration_run_task.apply_async((integration_id,), eta=result.next_retry_at)
    return {"run": result.run_id, "skipped": result.skipped, **result.counts}


@shared_task(acks_late=True)
def integrations_sweep_task() -> int:
    """The safety net: every enabled integration looks at all its items now and then."""
    ids = list(Integration.objects.filter(enabled=True).values_list("pk", flat=True))
    for integration_id in ids:
        integration_run_task.delay(integration_id)
    return len(ids)


@shared_task(acks_late=True)
def integration_pair_resolve_task(pair_id: int, take: str) -> bool:
    pair = (
        IntegrationPair.objects.select_related("integration", "source", "target").filter(pk=pair_id).first()
    )
    if pair is None or not pair.conflicts:
        return False
    sync.pair_conflict_resolve(pair, take=take)
    return True


@shared_task(acks_late=True)
def scopes_full_scan_sweep_task() -> int:
    """The safety net for deletions: each enabled scope not fully scanned for a day is scanned now."""
    stale = Q(last_full_scan_at__isnull=True) | Q(last_full_scan_at__lt=timezone.now() - FULL_SCAN_EVERY)
    ids = list(Scope.objects.filter(stale, enabled=True).values_list("pk", flat=True))
    for scope_id in ids:
        scope_full_scan_task.delay(scope_id)
    return len(ids)
