"""GitHub webhook deliveries: the signature check and what a delivery asks to read again.

GitHub signs the raw body: `X-Hub-Signature-256: sha256=<hex HMAC-SHA256(secret, body)>` (the legacy
SHA-1 `X-Hub-Signature` is not accepted). The delivery id is `X-GitHub-Delivery` (a GUID, the same when
a delivery is redelivered); the event name is `X-GitHub-Event`, with the payload's `action` appended.

Events read again: `issues`, `issue_comment`, `pull_request` (and its reviews and review comments)
name one issue or pull request (`owner/repo#n`); `push` names its commits (full SHAs); `release` its
tag. Anything else (`ping`, `star`...) is ignored.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from typing import Any

from connectors.base import WebhookEvent, webhook_header
from connectors.providers.github.items import FULL_SHA, issue_key

SIGNATURE_HEADER = "X-Hub-Signature-256"
SIGNATURE_PREFIX = "sha256="
ISSUE_EVENTS = {
    "issues": "issue",
    "issue_comment": "issue",
    "pull_request": "pull_request",
    "pull_request_review": "pull_request",
    "pull_request_review_comment": "pull_request",
}


def signature(secret: str, body: bytes) -> str:
    return SIGNATURE_PREFIX + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify(headers: Mapping[str, str], body: bytes, secret: str) -> bool:
    sent = webhook_header(headers, SIGNATURE_HEADER)
    if not secret or not sent.startswith(SIGNATURE_PREFIX):
        return False
    return hmac.compare_digest(sent.encode(), signature(secret, body).encode())


def _object(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def event_of(headers: Mapping[str, str], payload: Any) -> WebhookEvent | None:
    name = webhook_header(headers, "X-GitHub-Event")
    if not isinstance(payload, dict) or not name:
        return None
    repository = _object(payload.get("repository")).get("full_name")
    action = payload.get("action")
    event = f"{name}.{action}" if isinstance(action, str) and action else name
    delivery_id = webhook_header(headers, "X-GitHub-Delivery")
    keys: list[str] = []
    if name in ISSUE_EVENTS and repository:
        subject = _object(payload.get(ISSUE_EVENTS[name]))
        if subject.get("number") is not None:
            keys.append(issue_key(repository, subject["number"]))
    elif name == "push":
        for commit in payload.get("commits") or ():
            sha = _object(commit).get("id")
            if isinstance(sha, str) and FULL_SHA.fullmatch(sha):
                keys.append(sha)
    elif name == "release":
        tag = _object(payload.get("release")).get("tag_name")
        if isinstance(tag, str) and tag:
            keys.append(tag)
    else:
        return None
    return WebhookEvent(delivery_id=delivery_id, event=event[:100], item_keys=tuple(dict.fromkeys(keys)))
