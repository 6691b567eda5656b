"""GitLab webhook deliveries: the secret token check and what a delivery asks to read again.

GitLab does not sign the body: it sends the webhook's secret token as is in `X-Gitlab-Token`, compared
here in constant time. (The newer optional HMAC "signing token", Standard Webhooks headers, is not
supported yet.) The delivery id is `Idempotency-Key` (the same on GitLab's retries, GitLab 17+), else
`X-Gitlab-Event-UUID`; the event name is `X-Gitlab-Event` (e.g. "Issue Hook") or the payload's
`object_kind`.

Events read again, by the keys of items.py: issues (and incidents, tasks), merge requests, notes on
either, pushes (their commits), pipelines and deployments. Anything else is ignored.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from typing import Any

from connectors.base import WebhookEvent, webhook_header
from connectors.providers.gitlab.items import (
    SHA,
    deployment_key,
    issue_key,
    merge_request_key,
    pipeline_key,
)

AUTH_HEADER = "X-Gitlab-Token"


def verify(headers: Mapping[str, str], body: bytes, secret: str) -> bool:
    sent = webhook_header(headers, AUTH_HEADER)
    if not secret or not sent:
        return False
    return hmac.compare_digest(sent.encode(), secret.strip().encode())


def _object(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _keys(kind: str, payload: dict[str, Any]) -> list[str] | None:
    """The keys a payload of `object_kind` names, or None for a kind that is ignored."""
    path = _object(payload.get("project")).get("path_with_namespace")
    attributes = _object(payload.get("object_attributes"))
    if not isinstance(path, str) or not path:
        return None
    if kind in ("issue", "work_item") and attributes.get("iid") is not None:
        return [issue_key(path, attributes["iid"])]
    if kind == "merge_request" and attributes.get("iid") is not None:
        return [merge_request_key(path, attributes["iid"])]
    if kind == "note":
        issue, merge_request = _object(payload.get("issue")), _object(payload.get("merge_request"))
        if issue.get("iid") is not None:
            return [issue_key(path, issue["iid"])]
        if merge_request.get("iid") is not None:
            return [merge_request_key(path, merge_request["iid"])]
        return []
    if kind == "push":
        shas = (_object(commit).get("id") for commit in payload.get("commits") or ())
        return [sha for sha in shas if isinstance(sha, str) and SHA.fullmatch(sha)]
    if kind == "pipeline" and attributes.get("id") is not None:
        return [pipeline_key(path, attributes["id"])]
    if kind == "deployment" and payload.get("deployment_id") is not None:
        return [deployment_key(path, payload["deployment_id"])]
    return None


def event_of(headers: Mapping[str, str], payload: Any) -> WebhookEvent | None:
    if not isinstance(payload, dict):
        return None
    kind = payload.get("object_kind")
    if not isinstance(kind, str):
        return None
    keys = _keys(kind, payload)
    if keys is None:
        return None
    action = _object(payload.get("object_attributes")).get("action")
    name = webhook_header(headers, "X-Gitlab-Event") or kind
    event = f"{name}.{action}" if isinstance(action, str) and action else name
    delivery_id = webhook_header(headers, "Idempotency-Key") or webhook_header(headers, "X-Gitlab-Event-UUID")
    return WebhookEvent(delivery_id=delivery_id, event=event[:100], item_keys=tuple(dict.fromkeys(keys)))
