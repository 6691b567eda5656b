"""GitLab (REST v4): a project's issues, merge requests, commits, pipelines and deployments, and writes
to its issues.

Reading
    A scope's query names one project, ``group/project`` (or its numeric id), optionally followed by
    ``:issues,merge_requests,commits,pipelines,deployments`` to choose what to read (all by default).
    Issues and merge requests come with their history from ``resource_state_events`` (and, when the
    connection names a workflow label scope, the scoped labels' ``resource_label_events``); issues
    with their issue links; merge requests with their commits; pipelines with their detail (start and
    finish times); deployments name their pipeline. See ``items.py`` for keys and statuses.

Incremental reads and paging
    Issues, merge requests, pipelines and deployments are read with ``updated_after`` and
    ``order_by=updated_at&sort=asc``, paged by page number until ``x-next-page`` is empty. Because
    offset paging over a list that changes while it is read can skip an item (one updated meanwhile
    moves to the end and shifts the rest back), each page after the first re-anchors the query at the
    newest ``updated_at`` seen (page 1 again) and drops what it already read, by (id, updated_at);
    only when a whole page shares one instant does it turn the page at that anchor. Commits have no
    such order: they are read with ``since`` (committed date) and sorted here. The five lists are then
    merged in update order, so the engine's cursor never passes a change not read yet, even if a run
    stops half way; pages are cut at the scope's page size.

Limits, documented rather than hidden
    ``since`` on commits filters by committed date, so a commit pushed long after it was committed
    is only seen by a full read (or through its merge request, which lists it); a commit dated in the
    future (a committer's wrong clock) is given the time of reading as its ``updated``, so that it
    cannot carry the cursor past everything else. Commits are read whole before they are merged in
    (GitLab lists them newest first). Issue link changes
    are seen because GitLab touches both issues when a link is made.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from typing import Any, ClassVar
from urllib.parse import quote

import httpx

from connectors.base import (
    WEBHOOK_SECRET_FIELD,
    Connector,
    CredentialField,
    Feature,
    ItemFailure,
    ItemRef,
    OptionField,
    Page,
    ScopeSpec,
    ToolItem,
    ToolLink,
    register_connector,
)
from connectors.client import DEFAULT_MAX_PAGES, HttpClient
from connectors.exceptions import AuthError, BadPayload, BadRequest, NotFound, PageLimitExceeded
from connectors.providers.gitlab import webhooks
from connectors.providers.gitlab.items import (
    CLOSED,
    DEPLOYMENT_KEY,
    ISSUE_KEY,
    ISSUE_TYPE_NAMES,
    ISSUE_TYPES_BY_NAME,
    MR_KEY,
    OPENED,
    PIPELINE_KEY,
    SHA,
    GitLabScope,
    commit_to_item,
    deployment_to_item,
    issue_to_item,
    merge_request_to_item,
    parse_gitlab_time,
    parse_scope,
    pipeline_to_item,
    since_param,
    updated_after_param,
    workflow_value,
)

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MAX_PER_PAGE = 100
SUB_PAGE = 100  # events, commits of a merge request
Entry = tuple[datetime, ToolItem | ItemFailure]
READ_ERRORS = (KeyError, TypeError, ValueError, AttributeError, BadPayload, NotFound)


@register_connector
class GitLabConnector(Connector):
    slug = "gitlab"
    name = "GitLab"
    credential_fields: ClassVar = (
        CredentialField(
            "token",
            "Access token",
            help_text="A personal, project or group access token: read_api to read, api to write issues.",
        ),
        WEBHOOK_SECRET_FIELD,
    )
    option_fields: ClassVar = (
        OptionField(
            "workflow_label_scope",
            "Workflow label scope",
            default="",
            help_text=(
                "The scope of the scoped labels that carry an open issue's workflow status, e.g. "
                "'workflow' for workflow::In dev. Empty: issues are only opened or closed."
            ),
        ),
        OptionField(
            "commit_ref",
            "Commits of branch",
            default="",
            help_text="Read the commits of this branch only; empty reads the commits of every branch.",
        ),
    )
    artifact_types = (*ISSUE_TYPE_NAMES.values(), "MergeRequest", "Commit", "Pipeline", "Deployment")
    features = frozenset({Feature.READ, Feature.WRITE, Feature.LINKS, Feature.WEBHOOKS})
    webhook_module = webhooks
    query_help = (
        "A project path (group/project) or id, optionally with the lists to read: "
        "group/project:issues,merge_requests,commits,pipelines,deployments."
    )

    def __init__(self, installation):
        super().__init__(installation)
        token = (installation.credentials.get("token") or "").strip()
        if not token:
            raise AuthError("GitLab needs an access token (personal, project or group access token)")
        self.workflow_scope = (installation.options.get("workflow_label_scope") or "").strip().rstrip(":")
        self.commit_ref = (installation.options.get("commit_ref") or "").strip()
        base = installation.base_url.rstrip("/")
        self.web_base = base.removesuffix("/api/v4")
        self.http = HttpClient(
            self.web_base + "/api/v4/",
            headers={"PRIVATE-TOKEN": token},
            **installation.http_options(),
        )
        self._projects: dict[str, dict[str, Any]] = {}
        self.now: Callable[[], datetime] = lambda: datetime.now(UTC)  # caps future-dated commits

    def close(self) -> None:
        self.http.close()

    # Reading

    def check_connection(self) -> str:
        user = self.http.get_json("user") or {}
        return user.get("name") or user.get("username") or "an unnamed user"

    def read_changes(self, scope: ScopeSpec, since: datetime | None) -> Iterator[Page]:
        spec = self._scope(scope)
        project = self.project(spec.project)
        page_size = max(1, min(scope.page_size, MAX_PER_PAGE))
        readers = {
            "issues": self._issue_entries,
            "merge_requests": self._merge_request_entries,
            "commits": self._commit_entries,
            "pipelines": self._pipeline_entries,
            "deployments": self._deployment_entries,
        }
        streams = [
            _numbered(number, readers[resource](project, since, page_size))
            for number, resource in enumerate(spec.resources)
        ]
        page = Page(items=[])
        for _, _, _, entry in heapq.merge(*streams, key=lambda numbered: numbered[:3]):
            if isinstance(entry, ItemFailure):
                page.failures.append(entry)
            else:
                page.items.append(entry)
            if len(page.items) + len(page.failures) >= page_size:
                yield page
                page = Page(items=[])
        if page.items or page.failures:
            yield page

    def read_item(self, key: str, scope: ScopeSpec) -> ToolItem:
        key = key.strip()
        if SHA.fullmatch(key):
            project = self.project(self._scope(scope).project)
            commit = self.http.get_json(f"{_api(project)}/repository/commits/{key}")
            return commit_to_item(commit, project["path_with_namespace"])
        for pattern, fetch in (
            (
                ISSUE_KEY,
                lambda project, number: self._issue_item(self._get(project, "issues", number), project),
            ),
            (
                MR_KEY,
                lambda project, number: self._mr_item(self._get(project, "merge_requests", number), project),
            ),
            (PIPELINE_KEY, lambda project, number: self._pipeline_item({"id": number}, project)),
            (
                DEPLOYMENT_KEY,
                lambda project, number: deployment_to_item(
                    self._get(project, "deployments", number),
                    project["path_with_namespace"],
                    project.get("web_url") or "",
                ),
            ),
        ):
            found = pattern.fullmatch(key)
            if found:
                return fetch(self.project(found["path"]), int(found.groupdict().get("iid") or found["id"]))
        raise BadRequest(
            f"{key!r:.80} is not a GitLab issue, merge request, commit, pipeline or deployment key"
        )

    def list_ids(self, scope: ScopeSpec) -> Iterator[str]:
        spec = self._scope(scope)
        project = self.project(spec.project)
        api = _api(project)
        lists = {
            "issues": (f"{api}/issues", {}, "issue:"),
            "merge_requests": (f"{api}/merge_requests", {}, "merge_request:"),
            "commits": (f"{api}/repository/commits", self._commit_params(), ""),
            "pipelines": (f"{api}/pipelines", {}, "pipeline:"),
            "deployments": (f"{api}/deployments", {}, "deployment:"),
        }
        for resource in spec.resources:
            url, params, prefix = lists[resource]
            for batch in self.http.paginate_link(url, params={**params, "per_page": MAX_PER_PAGE}):
                for raw in batch:
                    yield f"{prefix}{raw['id']}"

    def project(self, reference: str) -> dict[str, Any]:
        """The project JSON (``GET /projects/{URL-encoded path or id}``), cached per connector."""
        if reference not in self._projects:
            project = self.http.get_json(f"projects/{quote(reference, safe='')}")
            if not isinstance(project, dict) or "id" not in project or "path_with_namespace" not in project:
                raise BadPayload(f"GitLab answered no project for {reference!r:.80}")
            self._projects[reference] = project
            self._projects[project["path_with_namespace"]] = project
        return self._projects[reference]

    def _scope(self, scope: ScopeSpec) -> GitLabScope:
        try:
            return parse_scope(scope.query)
        except ValueError as error:
            raise BadRequest(str(error)) from None

    def _get(self, project: dict[str, Any], collection: str, number: int) -> dict[str, Any]:
        return self.http.get_json(f"{_api(project)}/{collection}/{number}")

    def _all(self, url: str) -> list[Any]:
        return [raw for batch in self.http.paginate_link(url, params={"per_page": SUB_PAGE}) for raw in batch]

    def walk_updated(
        self, url: str, params: dict[str, Any], since: datetime | None, page_size: int
    ) -> Iterator[list[dict[str, Any]]]:
        """Items updated at or after `since`, oldest change first, one list per request; see the module
        docstring for how the query re-anchors so that nothing is skipped."""
        anchor, page_number, seen = since, 1, set()
        for request_number in range(1, DEFAULT_MAX_PAGES + 2):
            query = {
                **params,
                "order_by": "updated_at",
                "sort": "asc",
                "per_page": page_size,
                "page": page_number,
            }
            if anchor is not None:
                query["updated_after"] = updated_after_param(anchor)
            response = self.http.request("GET", url, params=query)
            items = _json_list(response)
            fresh = []
            for raw in items:
                identity = (raw.get("id"), raw.get("updated_at")) if isinstance(raw, dict) else repr(raw)
                if identity not in seen:
                    seen.add(identity)
                    fresh.append(raw)
            yield fresh
            if not response.headers.get("x-next-page") and "next" not in response.links:
                return
            if request_number > DEFAULT_MAX_PAGES:
                raise PageLimitExceeded(
                    f"GET {response.request.url.path}: more than {DEFAULT_MAX_PAGES} pages"
                )
            newest = max((_updated_or_none(raw) for raw in items), default=None, key=_sort_key)
            if newest is not None and (anchor is None or newest > anchor):
                anchor, page_number = newest, 1
            else:
                page_number += 1

    def _entries(
        self,
        batches: Iterable[list[dict[str, Any]]],
        what: str,
        prefix: str,
        build: Callable[[dict], ToolItem],
    ) -> Iterator[Entry]:
        last = EPOCH
        for batch in batches:
            for raw in batch:
                entry = self._convert(raw, what, prefix, build)
                at = entry.updated if isinstance(entry, ToolItem) else (_updated_or_none(raw) or last)
                last = max(last, at)
                yield at, entry

    def _convert(
        self, raw: Any, what: str, prefix: str, build: Callable[[dict], ToolItem]
    ) -> ToolItem | ItemFailure:
        try:
            return build(raw)
        except READ_ERRORS as error:
            raw_dict = raw if isinstance(raw, dict) else {}
            native_id = f"{prefix}{raw_dict.get('id', '')}"
            reference = (
                (raw_dict.get("references") or {}).get("full")
                if isinstance(raw_dict.get("references"), dict)
                else None
            )
            label = reference or native_id
            return ItemFailure(native_id, reference or "", f"cannot read {what} {label}: {error!r:.200}", raw)

    def _issue_entries(self, project: dict, since: datetime | None, page_size: int) -> Iterator[Entry]:
        batches = self.walk_updated(f"{_api(project)}/issues", {}, since, page_size)
        yield from self._entries(batches, "issue", "issue:", lambda raw: self._issue_item(raw, project))

    def _merge_request_entries(
        self, project: dict, since: datetime | None, page_size: int
    ) -> Iterator[Entry]:
        batches = self.walk_updated(f"{_api(project)}/merge_requests", {}, since, page_size)
        yield from self._entries(
            batches, "merge request", "merge_request:", lambda raw: self._mr_item(raw, project)
        )

    def _pipeline_entries(self, project: dict, since: datetime | None, page_size: int) -> Iterator[Entry]:
        batches = self.walk_updated(f"{_api(project)}/pipelines", {}, since, page_size)
        yield from self._entries(
            batches, "pipeline", "pipeline:", lambda raw: self._pipeline_item(raw, project)
        )

    def _deployment_entries(self, project: dict, since: datetime | None, page_size: int) -> Iterator[Entry]:
        batches = self.walk_updated(f"{_api(project)}/deployments", {}, since, page_size)
        path, web_url = project["path_with_namespace"], project.get("web_url") or ""
        yield from self._entries(
            batches, "deployment", "deployment:", lambda raw: deployment_to_item(raw, path, web_url)
        )

    def _commit_entries(self, project: dict, since: datetime | None, page_size: int) -> Iterator[Entry]:
        """Every commit since `since` (newest first from GitLab), sorted here by committed date."""
        params = {**self._commit_params(), "per_page": page_size}
        if since is not None:
            params["since"] = since_param(since)
        path = project["path_with_namespace"]
        entries = [
            (
                _committed_or_none(raw) or EPOCH,
                self._convert(raw, "commit", "", lambda r: commit_to_item(r, path)),
            )
            for batch in self.http.paginate_link(f"{_api(project)}/repository/commits", params=params)
            for raw in batch
        ]
        entries.sort(key=lambda entry: entry[0])
        ceiling = self.now()
        for at, entry in entries:
            if isinstance(entry, ToolItem):
                # A committer's clock set in the future must not carry the scope's cursor past every
                # later change; the commit keeps its own dates in `fields`.
                entry.updated = min(entry.updated, ceiling)
                at = entry.updated
            yield min(at, ceiling), entry

    def _commit_params(self) -> dict[str, Any]:
        return {"ref_name": self.commit_ref} if self.commit_ref else {"all": "true"}

    def _issue_item(self, raw: dict[str, Any], project: dict[str, Any]) -> ToolItem:
        url = f"{_api(project)}/issues/{raw['iid']}"
        state_events = self._all(f"{url}/resource_state_events")
        label_events = self._all(f"{url}/resource_label_events") if self.workflow_scope else []
        linked = self.http.get_json(f"{url}/links") or []  # GitLab does not page issue links
        return issue_to_item(
            raw, project["path_with_namespace"], state_events, label_events, linked, self.workflow_scope
        )

    def _mr_item(self, raw: dict[str, Any], project: dict[str, Any]) -> ToolItem:
        url = f"{_api(project)}/merge_requests/{raw['iid']}"
        state_events = self._all(f"{url}/resource_state_events")
        commits = self._all(f"{url}/commits")
        return merge_request_to_item(raw, project["path_with_namespace"], state_events, commits)

    def _pipeline_item(self, raw: dict[str, Any], project: dict[str, Any]) -> ToolItem:
        """The list holds no start and finish times: the pipeline's own endpoint does."""
        detail = self.http.get_json(f"{_api(project)}/pipelines/{int(raw['id'])}")
        return pipeline_to_item(detail, project["path_with_namespace"])

    # Writing (issues)

    def create_item(
        self, scope: ScopeSpec, item_type: str, fields: dict[str, Any], *, marker: str = ""
    ) -> ToolItem:
        issue_type = ISSUE_TYPES_BY_NAME.get(item_type.strip().casefold())
        if issue_type is None:
            raise BadRequest(
                f"GitLab creates issues only ({', '.join(ISSUE_TYPE_NAMES.values())}), not “{item_type}”"
            )
        project = self.project(self._scope(scope).project)
        body = _issue_body(fields)
        body["issue_type"] = issue_type
        created = self.http.post_json(f"{_api(project)}/issues", body)
        return self._issue_item(created, project)

    def update_item(self, ref: ItemRef, fields: dict[str, Any]) -> None:
        project, iid = self._issue_ref(ref)
        self.http.put_json(f"{_api(project)}/issues/{iid}", _issue_body(fields))

    def transition_item(self, ref: ItemRef, to_status: str) -> None:
        """``closed`` closes, ``opened`` reopens; with a workflow label scope, any other status sets
        the scoped label ``<scope>::<status>`` (reopening a closed issue)."""
        project, iid = self._issue_ref(ref)
        url = f"{_api(project)}/issues/{iid}"
        target = to_status.strip()
        current = self.http.get_json(url)
        is_closed = current.get("state") == CLOSED
        current_value = (
            workflow_value(current.get("labels") or [], self.workflow_scope) if self.workflow_scope else None
        )
        body: dict[str, Any] = {}
        if target.casefold() == CLOSED:
            if not is_closed:
                body["state_event"] = "close"
        elif target.casefold() in (OPENED, "open", "reopened"):
            if is_closed:
                body["state_event"] = "reopen"
            if current_value is not None:
                body["remove_labels"] = f"{self.workflow_scope}::{current_value}"
        elif self.workflow_scope:
            if current_value != target:
                body["add_labels"] = f"{self.workflow_scope}::{target}"
            if is_closed:
                body["state_event"] = "reopen"
        else:
            raise BadRequest(
                f"{ref.key} cannot move to “{to_status}”: GitLab issues are opened or closed "
                "(name a workflow label scope on the connection to use scoped labels as statuses)"
            )
        if body:
            self.http.put_json(url, body)

    def add_link(self, ref: ItemRef, link: ToolLink | None = None, *, url: str = "", title: str = "") -> None:
        if link is None:
            raise BadRequest("GitLab issues hold no remote links; only links to other issues")
        project, iid = self._issue_ref(ref)
        target = ISSUE_KEY.fullmatch(link.target_key)
        if target is None:
            raise BadRequest(f"GitLab links issues to issues; {link.target_key!r:.80} is not an issue key")
        try:
            self.http.post_json(
                f"{_api(project)}/issues/{iid}/links",
                {
                    "target_project_id": target["path"],
                    "target_issue_iid": int(target["iid"]),
                    "link_type": "relates_to",
                },
            )
        except BadRequest as error:
            if error.status != 409:  # 409: the issues are linked already
                raise

    def _issue_ref(self, ref: ItemRef) -> tuple[dict[str, Any], int]:
        found = ISSUE_KEY.fullmatch(ref.key.strip())
        if found is None:
            raise BadRequest(
                f"GitLab writes issues only; {ref.key!r:.80} is not an issue key (group/project#1)"
            )
        return self.project(found["path"]), int(found["iid"])


def _api(project: dict[str, Any]) -> str:
    return f"projects/{int(project['id'])}"


def _issue_body(fields: dict[str, Any]) -> dict[str, Any]:
    """Fields in GitLab's terms; ``summary`` is taken for ``title``, label lists are joined."""
    body = dict(fields)
    if "summary" in body:
        summary = body.pop("summary")
        body.setdefault("title", summary)
    for name in ("labels", "add_labels", "remove_labels"):
        if isinstance(body.get(name), list | tuple):
            body[name] = ",".join(str(label) for label in body[name])
    return body


def _json_list(response: httpx.Response) -> list[Any]:
    try:
        body = response.json()
    except ValueError:
        raise BadPayload(
            f"GET {response.request.url.path}: expected JSON", status=response.status_code
        ) from None
    if not isinstance(body, list):
        raise BadPayload(f"GET {response.request.url.path}: expected a list", status=response.status_code)
    return body


def _updated_or_none(raw: Any) -> datetime | None:
    try:
        return parse_gitlab_time(raw.get("updated_at") or raw.get("created_at"))
    except (AttributeError, TypeError, ValueError):
        return None


def _committed_or_none(raw: Any) -> datetime | None:
    try:
        return parse_gitlab_time(raw.get("committed_date"))
    except (AttributeError, TypeError, ValueError):
        return None


def _sort_key(value: datetime | None) -> datetime:
    return value or EPOCH


def _numbered(number: int, entries: Iterator[Entry]) -> Iterator[tuple[datetime, int, int, Any]]:
    for sequence, (at, entry) in enumerate(entries):
        yield at, number, sequence, entry
