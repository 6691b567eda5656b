"""GitLab JSON -> ToolItem (pure): issues, merge requests, commits, pipelines and deployments.

Keys (what people call the items) and native ids (unique per connection, across item kinds):

==============  =================================  ==========================
item_type       key                                native_id
==============  =================================  ==========================
Issue (1)       ``group/project#12``               ``issue:<global id>``
MergeRequest    ``group/project!7``                ``merge_request:<global id>``
Commit          the full SHA                       the full SHA
Pipeline        ``group/project pipeline 4711``    ``pipeline:4711``
Deployment      ``group/project deployment 815``   ``deployment:815``
==============  =================================  ==========================

(1) Issues take their type from ``issue_type``: Issue, Incident, Task, Test Case.

Statuses: issues ``opened``/``closed`` (or, with a workflow label scope such as ``workflow``, the
value of the open issue's ``workflow::<value>`` label); merge requests ``opened``/``closed``/
``merged``/``locked``; commits ``committed``; pipelines and deployments their own ``status``.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from connectors.base import StatusChange, ToolItem, ToolLink

ISSUE_TYPE_NAMES = {"issue": "Issue", "incident": "Incident", "task": "Task", "test_case": "Test Case"}
ISSUE_TYPES_BY_NAME = {name.casefold(): issue_type for issue_type, name in ISSUE_TYPE_NAMES.items()}
MERGE_REQUEST = "MergeRequest"
COMMIT = "Commit"
PIPELINE = "Pipeline"
DEPLOYMENT = "Deployment"
OPENED, CLOSED, MERGED = "opened", "closed", "merged"
COMMITTED = "committed"
FINISHED_PIPELINE_STATUSES = frozenset({"success", "failed", "canceled", "skipped"})
FINISHED_DEPLOYMENT_STATUSES = frozenset({"success", "failed", "canceled"})
RESOURCES = ("issues", "merge_requests", "commits", "pipelines", "deployments")
SCOPED = "::"
SHA = re.compile(r"[0-9a-f]{40}")
ISSUE_KEY = re.compile(r"(?P<path>[^#!\s]+)#(?P<iid>\d+)")
MR_KEY = re.compile(r"(?P<path>[^#!\s]+)!(?P<iid>\d+)")
PIPELINE_KEY = re.compile(r"(?P<path>\S+) pipeline (?P<id>\d+)")
DEPLOYMENT_KEY = re.compile(r"(?P<path>\S+) deployment (?P<id>\d+)")
PROJECT_PATH = re.compile(r"[\w.-]+(/[\w.-]+)+|\d+")
WEB_ISSUE_URL = re.compile(r"https?://[^/]+(?:/[^/]+)*?/(?P<path>[\w.-]+(?:/[\w.-]+)+)/-/issues/(?P<iid>\d+)")


def parse_gitlab_time(text: Any) -> datetime:
    """REST ``2016-01-07T12:44:33.959Z``, offsets ``2011-12-12T14:27:31+02:00``, webhook
    ``2017-09-15 16:50:55 UTC``; always timezone-aware."""
    if not isinstance(text, str) or not text:
        raise ValueError(f"{text!r:.40} is not a GitLab timestamp")
    value = text.strip()
    if value.endswith(" UTC"):
        value = value[: -len(" UTC")].replace(" ", "T") + "+00:00"
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        raise ValueError(f"{text!r:.40} has no time zone")
    return parsed


def updated_after_param(instant: datetime) -> str:
    """GitLab's ``updated_after`` for "changed at or after `instant`": one millisecond earlier, in UTC
    with milliseconds, so that both GitLab's ``>=`` finders and its strict ``>`` ones (pipelines) keep
    the items at exactly `instant` (GitLab stores microseconds and renders milliseconds)."""
    moment = instant.astimezone(UTC)
    moment = moment.replace(microsecond=moment.microsecond // 1000 * 1000)
    moment -= timedelta(milliseconds=1)
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{moment.microsecond // 1000:03d}Z"


def since_param(instant: datetime) -> str:
    """The commits endpoint's ``since``: git dates are whole seconds, so the second is floored."""
    return f"{instant.astimezone(UTC):%Y-%m-%dT%H:%M:%S}Z"


@dataclass(frozen=True)
class GitLabScope:
    project: str  # a path ("group/sub/project") or a numeric id
    resources: tuple[str, ...]


def parse_scope(query: str) -> GitLabScope:
    """``group/project`` or ``group/project:issues,merge_requests`` (a numeric project id works too)."""
    text = (query or "").strip()
    project, _, chosen = text.partition(":")
    project = project.strip().strip("/")
    if not PROJECT_PATH.fullmatch(project):
        raise ValueError(f"{project!r:.80} is not a GitLab project path (group/project) or id")
    if not chosen.strip():
        return GitLabScope(project, RESOURCES)
    resources = tuple(dict.fromkeys(part.strip() for part in chosen.split(",") if part.strip()))
    unknown = [resource for resource in resources if resource not in RESOURCES]
    if unknown or not resources:
        raise ValueError(
            f"unknown GitLab resource(s) {', '.join(unknown) or '(none)'}; choose from {', '.join(RESOURCES)}"
        )
    return GitLabScope(project, resources)


def issue_key(path: str, iid: Any) -> str:
    return f"{path}#{iid}"


def merge_request_key(path: str, iid: Any) -> str:
    return f"{path}!{iid}"


def pipeline_key(path: str, pipeline_id: Any) -> str:
    return f"{path} pipeline {pipeline_id}"


def deployment_key(path: str, deployment_id: Any) -> str:
    return f"{path} deployment {deployment_id}"


def _person(user: Any) -> str:
    if not isinstance(user, dict):
        return ""
    return str(user.get("name") or user.get("username") or user.get("id") or "")


def _events_in_order(events: Iterable[dict[str, Any]]) -> list[tuple[datetime, int, dict[str, Any]]]:
    ordered = [(parse_gitlab_time(event["created_at"]), int(event.get("id") or 0), event) for event in events]
    return sorted(ordered, key=lambda entry: entry[:2])


def workflow_value(labels: Iterable[str], scope: str) -> str | None:
    """The value of the scoped label ``<scope>::<value>`` (the last one, should there be several)."""
    prefix = f"{scope}{SCOPED}"
    values = [label[len(prefix) :] for label in labels if isinstance(label, str) and label.startswith(prefix)]
    return values[-1] if values else None


def issue_status(issue: dict[str, Any], workflow_scope: str = "") -> str:
    state = issue["state"]
    if state != OPENED or not workflow_scope:
        return state
    return workflow_value(issue.get("labels") or [], workflow_scope) or OPENED


def issuable_changes(
    state_events: Iterable[dict[str, Any]],
    label_events: Iterable[dict[str, Any]] = (),
    workflow_scope: str = "",
) -> list[StatusChange]:
    """Status changes replayed from resource state events (and, with a workflow label scope, from the
    scoped labels' resource label events); an item starts ``opened``, ``reopened`` returns to it."""
    timeline = [("state", at, order, event) for at, order, event in _events_in_order(state_events)]
    if workflow_scope:
        prefix = f"{workflow_scope}{SCOPED}"
        timeline += [
            ("label", at, order, event)
            for at, order, event in _events_in_order(label_events)
            if str(((event.get("label") or {}).get("name")) or "").startswith(prefix)
        ]
    timeline.sort(key=lambda entry: (entry[1], entry[2]))
    state, workflow_labels = OPENED, []

    def status() -> str:
        if state != OPENED or not workflow_labels:
            return state
        return workflow_labels[-1][len(f"{workflow_scope}{SCOPED}") :]

    changes = []
    # Events at one instant are one change (a scoped label replaced: removed and added together).
    for at, group in itertools.groupby(timeline, key=lambda entry: entry[1]):
        before = status()
        author = ""
        for kind, _, _, event in group:
            author = _person(event.get("user")) or author
            if kind == "state":
                state = OPENED if event["state"] in ("reopened", OPENED) else str(event["state"])
                continue
            name = event["label"]["name"]
            if name in workflow_labels:
                workflow_labels.remove(name)
            if event.get("action") == "add":
                workflow_labels.append(name)
        after = status()
        if after != before:
            changes.append(StatusChange(at=at, from_status=before, to_status=after, author=author))
    return changes


def issue_path_of(linked: dict[str, Any]) -> str | None:
    """The project path of an issue from its ``references.full`` or, failing that, its ``web_url``."""
    full = (linked.get("references") or {}).get("full")
    if isinstance(full, str) and ISSUE_KEY.fullmatch(full):
        return ISSUE_KEY.fullmatch(full)["path"]
    found = WEB_ISSUE_URL.fullmatch(str(linked.get("web_url") or ""))
    return found["path"] if found else None


def issue_links(own_key: str, linked_issues: Iterable[dict[str, Any]]) -> list[ToolLink]:
    """``relates_to`` for every linked issue, recorded once per pair: a ``blocks`` link from the
    blocking side only, a ``relates_to`` link from the issue whose key sorts first (GitLab shows each
    link on both issues)."""
    links = []
    for linked in linked_issues:
        path = issue_path_of(linked)
        if path is None or linked.get("iid") is None:
            continue
        other = issue_key(path, linked["iid"])
        link_type = linked.get("link_type") or "relates_to"
        if link_type == "is_blocked_by" or (link_type == "relates_to" and other < own_key):
            continue
        links.append(ToolLink(kind="relates_to", target_key=other, description=link_type.replace("_", " ")))
    return links


def issue_to_item(
    issue: dict[str, Any],
    path: str,
    state_events: list[dict[str, Any]],
    label_events: list[dict[str, Any]] | None = None,
    linked_issues: list[dict[str, Any]] | None = None,
    workflow_scope: str = "",
) -> ToolItem:
    """Raises KeyError, TypeError or ValueError when the issue lacks what every issue has."""
    key = issue_key(path, issue["iid"])
    issue_type = issue.get("issue_type") or "issue"
    return ToolItem(
        native_id=f"issue:{issue['id']}",
        key=key,
        item_type=ISSUE_TYPE_NAMES.get(issue_type, issue_type.replace("_", " ").title()),
        url=issue.get("web_url") or "",
        title=issue.get("title") or "",
        status=issue_status(issue, workflow_scope),
        created=parse_gitlab_time(issue["created_at"]),
        updated=parse_gitlab_time(issue["updated_at"]),
        fields={**issue, "project_path": path},
        changelog=issuable_changes(state_events, label_events or [], workflow_scope),
        links=issue_links(key, linked_issues or []),
        raw=issue,
    )


def merge_request_to_item(
    mr: dict[str, Any], path: str, state_events: list[dict[str, Any]], commits: list[dict[str, Any]]
) -> ToolItem:
    """A merge request, `committed_in` each of its commits (whose keys are their SHAs)."""
    shas = [commit["id"] for commit in commits if isinstance(commit, dict) and commit.get("id")]
    state = mr["state"]
    if state not in (OPENED, CLOSED, MERGED, "locked"):
        raise ValueError(f"unknown merge request state {state!r:.40}")
    return ToolItem(
        native_id=f"merge_request:{mr['id']}",
        key=merge_request_key(path, mr["iid"]),
        item_type=MERGE_REQUEST,
        url=mr.get("web_url") or "",
        title=mr.get("title") or "",
        status=state,
        created=parse_gitlab_time(mr["created_at"]),
        updated=parse_gitlab_time(mr["updated_at"]),
        fields={**mr, "project_path": path, "commit_shas": shas},
        changelog=issuable_changes(state_events),
        links=[
            ToolLink(kind="committed_in", target_key=sha, description="commit") for sha in dict.fromkeys(shas)
        ],
        raw=mr,
    )


def commit_to_item(commit: dict[str, Any], path: str) -> ToolItem:
    sha = commit["id"]
    if not isinstance(sha, str) or not SHA.fullmatch(sha):
        raise ValueError(f"{sha!r:.50} is not a full commit SHA")
    return ToolItem(
        native_id=sha,
        key=sha,
        item_type=COMMIT,
        url=commit.get("web_url") or "",
        title=commit.get("title") or (commit.get("message") or "").split("\n", 1)[0],
        status=COMMITTED,
        created=parse_gitlab_time(commit.get("authored_date") or commit["committed_date"]),
        updated=parse_gitlab_time(commit["committed_date"]),
        fields={**commit, "project_path": path},
        raw=commit,
    )


def pipeline_changes(pipeline: dict[str, Any]) -> list[StatusChange]:
    """created -> running at ``started_at``, -> the final status at ``finished_at`` (the detail JSON)."""
    author = _person(pipeline.get("user"))
    started, finished = pipeline.get("started_at"), pipeline.get("finished_at")
    status = pipeline["status"]
    changes, current = [], "created"
    if started:
        changes.append(StatusChange(parse_gitlab_time(started), current, "running", author))
        current = "running"
    if finished and status in FINISHED_PIPELINE_STATUSES:
        changes.append(StatusChange(parse_gitlab_time(finished), current, status, author))
    return changes


def pipeline_to_item(pipeline: dict[str, Any], path: str) -> ToolItem:
    created = parse_gitlab_time(pipeline["created_at"])
    updated = parse_gitlab_time(pipeline["updated_at"]) if pipeline.get("updated_at") else created
    name = pipeline.get("name")
    return ToolItem(
        native_id=f"pipeline:{pipeline['id']}",
        key=pipeline_key(path, pipeline["id"]),
        item_type=PIPELINE,
        url=pipeline.get("web_url") or "",
        title=name or f"Pipeline #{pipeline['id']} on {pipeline.get('ref') or '?'}",
        status=pipeline["status"],
        created=created,
        updated=updated,
        fields={**pipeline, "project_path": path},
        changelog=pipeline_changes(pipeline),
        raw=pipeline,
    )


def deployment_changes(deployment: dict[str, Any]) -> list[StatusChange]:
    """created -> running when its job started, -> the final status when the job finished (else at
    ``updated_at``, the moment GitLab recorded the outcome)."""
    job = deployment.get("deployable") or {}
    author = _person(deployment.get("user"))
    status = deployment["status"]
    changes, current = [], "created"
    if job.get("started_at"):
        changes.append(StatusChange(parse_gitlab_time(job["started_at"]), current, "running", author))
        current = "running"
    if status in FINISHED_DEPLOYMENT_STATUSES:
        finished = job.get("finished_at") or deployment["updated_at"]
        changes.append(StatusChange(parse_gitlab_time(finished), current, status, author))
    return changes


def deployment_to_item(deployment: dict[str, Any], path: str, web_url: str = "") -> ToolItem:
    """A deployment; the pipeline that ran it is ``deployed_in`` it (an incoming link)."""
    environment = (deployment.get("environment") or {}).get("name") or "?"
    job = deployment.get("deployable") or {}
    pipeline = job.get("pipeline") or {}
    links = []
    if pipeline.get("id") is not None:
        links.append(
            ToolLink(
                kind="deployed_in",
                target_key=pipeline_key(path, pipeline["id"]),
                description="pipeline",
                incoming=True,
            )
        )
    environment_id = (deployment.get("environment") or {}).get("id")
    url = job.get("web_url") or (
        f"{web_url}/-/environments/{environment_id}" if web_url and environment_id else ""
    )
    return ToolItem(
        native_id=f"deployment:{deployment['id']}",
        key=deployment_key(path, deployment["id"]),
        item_type=DEPLOYMENT,
        url=url,
        title=f"Deployment #{deployment.get('iid', deployment['id'])} to {environment}",
        status=deployment["status"],
        created=parse_gitlab_time(deployment["created_at"]),
        updated=parse_gitlab_time(deployment["updated_at"]),
        fields={**deployment, "project_path": path},
        changelog=deployment_changes(deployment),
        links=links,
        raw=deployment,
    )
