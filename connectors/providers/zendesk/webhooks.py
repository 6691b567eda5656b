"""Zendesk webhook deliveries: the signature check and what a delivery asks to read again.

Zendesk signs the signature timestamp followed by the raw body, with no separator:
`X-Zendesk-Webhook-Signature = base64(HMAC-SHA256(secret, X-Zendesk-Webhook-Signature-Timestamp + body))`,
the signing secret used as is. The delivery id is `X-Zendesk-Webhook-Invocation-Id` (one per
invocation, kept by its retries); `X-Zendesk-Webhook-Id` names the webhook itself, the same for every
delivery, so it is no delivery id. Without an invocation id, an event subscription's `id` is used.

Payloads read again:
- event subscriptions (`"type": "zen:event-type:ticket.<what>"`): the ticket of `detail.id`, else of
  `subject` (`zen:ticket:<id>`); user, organization and other events are ignored;
- trigger and automation webhooks, whose body the admin writes: a ticket named by `ticket_id` or
  `ticket.id`, e.g. `{"ticket_id": "{{ticket.id}}"}`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping
from typing import Any

from connectors.base import WebhookEvent, is_number_text, webhook_header
from connectors.providers.zendesk.items import ticket_key

SIGNATURE_HEADER = "X-Zendesk-Webhook-Signature"
TIMESTAMP_HEADER = "X-Zendesk-Webhook-Signature-Timestamp"
TICKET_EVENT_PREFIX = "zen:event-type:ticket."
TICKET_SUBJECT_PREFIX = "zen:ticket:"
TRIGGER_EVENT = "trigger"


def signature(secret: str, timestamp: str, body: bytes) -> str:
    digest = hmac.new(secret.encode(), timestamp.encode() + body, hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def verify(headers: Mapping[str, str], body: bytes, secret: str) -> bool:
    sent = webhook_header(headers, SIGNATURE_HEADER)
    timestamp = webhook_header(headers, TIMESTAMP_HEADER)
    if not secret or not sent or not timestamp:
        return False
    return hmac.compare_digest(sent.encode(), signature(secret, timestamp, body).encode())


def _object(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _ticket_id(value: Any) -> str | None:
    text = str(value).strip() if isinstance(value, int | str) and not isinstance(value, bool) else ""
    return text if is_number_text(text) else None


def event_of(headers: Mapping[str, str], payload: Any) -> WebhookEvent | None:
    if not isinstance(payload, dict):
        return None
    event_type = payload.get("type")
    if isinstance(event_type, str) and event_type.startswith("zen:"):
        if not event_type.startswith(TICKET_EVENT_PREFIX):
            return None
        subject = payload.get("subject")
        ticket_id = _ticket_id(_object(payload.get("detail")).get("id"))
        if ticket_id is None and isinstance(subject, str) and subject.startswith(TICKET_SUBJECT_PREFIX):
            ticket_id = _ticket_id(subject.removeprefix(TICKET_SUBJECT_PREFIX))
        event, fallback_id = event_type, payload.get("id")
    else:
        ticket_id = _ticket_id(payload.get("ticket_id")) or _ticket_id(
            _object(payload.get("ticket")).get("id")
        )
        event, fallback_id = TRIGGER_EVENT, None
    if ticket_id is None:
        return None
    delivery_id = webhook_header(headers, "X-Zendesk-Webhook-Invocation-Id")
    if not delivery_id and isinstance(fallback_id, str):
        delivery_id = fallback_id.strip()
    return WebhookEvent(delivery_id=delivery_id, event=event[:100], item_keys=(ticket_key(ticket_id),))
