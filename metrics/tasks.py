"""Celery tasks of the metrics engine: thin, they take ids and call one service."""

from celery import shared_task

from metrics import services
from vsm.models import Product


@shared_task(acks_late=True)
def rollups_refresh_task(artifact_ids: list[int]) -> None:
    """After an ingest page commits: refresh the rollups of its artifacts and the load days they touch."""
    services.rollups_refresh_after_sync(artifact_ids)


@shared_task(acks_late=True)
def product_rollups_rebuild_task(product_id: int) -> None:
    product = Product.objects.filter(pk=product_id).first()
    if product is None:
        return
    services.product_rollups_rebuild(product)
