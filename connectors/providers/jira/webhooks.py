"""Jira webhook deliveries: the signature check and what a delivery asks to read again.

Admin webhooks created with a secret (Cloud, and recent Data Center) sign the raw body WebSub style:
`X-Hub-Signature: sha256=<lowercase hex HMAC-SHA256(secret, body)>`. Without a secret Jira sends no
signature, and the receiver refuses the delivery. The delivery id is `X-Atlassian-Webhook-Identifier`
(the same on Jira's retries); Data Center may send none, and the receiver then hashes the body.

Events read again: `jira:issue_created|updated|deleted` and `comment_*` name their issue by key;
`issuelink_created|deleted` name both ends by id (read_item takes an id or a key). Others are ignored.
A deleted issue fails to read: the run says so, and the next full scan marks it deleted.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from typing import Any

from connectors.base import WebhookEvent, webhook_header

SIGNATURE_HEADER = "X-Hub-Signature"
SIGNATURE_PREFIX = "sha256="
ISSUE_EVENTS = frozenset(
    {
        "jira:issue_created",
        "jira:issue_updated",
        "jira:issue_deleted",
        "comment_created",
        "comment_updated",
        "comment_deleted",
    }
)
LINK_EVENTS = frozenset({"issuelink_created", "issuelink_deleted"})


def signature(secret: str, body: bytes) -> str:
    return SIGNATURE_PREFIX + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify(headers: Mapping[str, str], body: bytes, secret: str) -> bool:
    sent = webhook_header(headers, SIGNATURE_HEADER)
    if not secret or not sent.lower().startswith(SIGNATURE_PREFIX):
        return False
    # The hex is lowercase by the reference; a sender writing uppercase hex is accepted too.
    expected = signature(secret, body)
    sent = SIGNATURE_PREFIX + sent[len(SIGNATURE_PREFIX) :].lower()
    return hmac.compare_digest(sent.encode(), expected.encode())


def _object(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def event_of(headers: Mapping[str, str], payload: Any) -> WebhookEvent | None:
    if not isinstance(payload, dict):
        return None
    name = payload.get("webhookEvent")
    if not isinstance(name, str):
        return None
    keys: list[str] = []
    if name in ISSUE_EVENTS:
        key = _object(payload.get("issue")).get("key")
        if isinstance(key, str) and key:
            keys.append(key)
    elif name in LINK_EVENTS:
        link = _object(payload.get("issueLink"))
        keys += [
            str(link[end]) for end in ("sourceIssueId", "destinationIssueId") if link.get(end) is not None
        ]
    else:
        return None
    delivery_id = webhook_header(headers, "X-Atlassian-Webhook-Identifier")
    return WebhookEvent(delivery_id=delivery_id, event=name[:100], item_keys=tuple(dict.fromkeys(keys)))
