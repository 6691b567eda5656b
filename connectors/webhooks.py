"""Receiving webhook deliveries at /hooks/<connection id>/: check, record, and queue the re-read.

A tool pushes a change here instead of waiting for the next scheduled sync. Each connection has its
own URL and its own secret, stored encrypted with its credentials under `webhook_secret` (entered in
the connection's admin form, write-only like every credential). The checks, in this order, each
answer before anything is stored:

==============================================================  ======
the connection does not exist, or its tool has no webhooks      404
the body is over MAX_BODY_BYTES (Content-Length, then read)     413
the connection has no webhook secret (or it cannot be read)     401
the signature (or GitLab's token) is missing or wrong           401
the body, verified, is not JSON                                 400
an event the provider ignores, or one naming no item            204
a delivery id already recorded (a retry, a replay)              200
otherwise: the delivery is recorded and its re-read queued      202
==============================================================  ======

The signature is checked over the raw bytes, in constant time, by the connection's provider
(`Connector.verify_webhook`) before the body is parsed; the provider then names the event, its
delivery id and the items to read again (`Connector.webhook_event`). A tool that sends no delivery id
gets `sha256:<hex of the body>` instead. The re-read itself runs in `webhook_delivery_task`, queued on
commit; polling stays the safety net for anything a webhook misses.
"""

import hashlib
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass

from django.db import transaction
from django.utils import timezone

from connectors.base import WEBHOOK_CREDENTIAL, Connector, Feature, RegistryError, connector_for
from connectors.models import ToolConnection, WebhookDelivery
from connectors.tasks import webhook_delivery_task
from vsm.celery import enqueue_on_commit

logger = logging.getLogger(__name__)

MAX_BODY_BYTES = 1024 * 1024


@dataclass(frozen=True)
class WebhookAnswer:
    status: int
    detail: str
    delivery: WebhookDelivery | None = None


def webhook_connector(connection_id: int) -> tuple[ToolConnection, type[Connector]] | None:
    """The connection and its provider, when both exist and the provider receives webhooks."""
    connection = ToolConnection.objects.filter(pk=connection_id).first()
    if connection is None:
        return None
    try:
        connector = connector_for(connection.kind)
    except RegistryError:
        return None
    return (connection, connector) if Feature.WEBHOOKS in connector.features else None


def webhook_secret(connection: ToolConnection) -> str:
    credentials = connection.credentials
    if credentials.unreadable:
        return ""
    return (credentials.get(WEBHOOK_CREDENTIAL) or "").strip()


def webhook_delivery_receive(
    connection: ToolConnection, connector: type[Connector], headers: Mapping[str, str], body: bytes
) -> WebhookAnswer:
    """Verify, parse and record one delivery whose body is already read (and within the limit)."""
    secret = webhook_secret(connection)
    if not secret:
        logger.warning("webhook for connection %s refused: no webhook secret is stored", connection.pk)
        return WebhookAnswer(
            401, "this connection has no webhook secret: an admin must store one before deliveries count"
        )
    try:
        verified = connector.verify_webhook(headers, body, secret)
    except Exception:  # a provider bug must not turn a bad delivery into a 500
        logger.exception("webhook signature check of connection %s failed", connection.pk)
        verified = False
    if not verified:
        logger.warning("webhook for connection %s refused: missing or wrong signature", connection.pk)
        return WebhookAnswer(401, "the delivery's signature is missing or does not match")
    try:
        payload = json.loads(body)
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError; RecursionError: "[[[[..."
        return WebhookAnswer(400, "the delivery's body is not JSON")
    try:
        event = connector.webhook_event(headers, payload)
    except Exception:  # as above: a payload the provider trips over is the sender's problem, not a 500
        logger.exception("webhook payload of connection %s could not be read", connection.pk)
        return WebhookAnswer(400, "the delivery's payload could not be read")
    if event is None or not event.item_keys:
        return WebhookAnswer(204, "")
    delivery_id = event.delivery_id[:200] or f"sha256:{hashlib.sha256(body).hexdigest()}"
    with transaction.atomic():
        delivery, created = WebhookDelivery.objects.get_or_create(
            connection=connection,
            delivery_id=delivery_id,
            defaults={
                "event": event.event[:100],
                "item_keys": list(event.item_keys),
                "received_at": timezone.now(),
            },
        )
        if not created:
            return WebhookAnswer(200, "this delivery was received before", delivery)
        enqueue_on_commit(webhook_delivery_task, delivery.pk)
    logger.info(
        "webhook %s for connection %s: %s, %d item(s) queued",
        delivery.pk,
        connection.pk,
        delivery.event,
        len(event.item_keys),
    )
    return WebhookAnswer(202, "queued", delivery)
