"""Jira Cloud and Data Center: incremental JQL reads with the full changelog, and writes."""

from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any, ClassVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import httpx

from connectors.base import (
    CLOCK_SKEW,
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
from connectors.client import HttpClient
from connectors.exceptions import AuthError, BadPayload, BadRequest, NotFound
from connectors.providers.jira import webhooks
from connectors.providers.jira.items import (
    DEFAULT_EPIC_LINK_FIELD,
    PROJECT_KEY,
    issue_to_item,
    parse_jira_time,
    scope_jql,
)

CLOUD = "cloud"
DATA_CENTER = "datacenter"
# What the reader always asks for; mappings add the fields they read (Jira returns only `id` otherwise).
BASE_FIELDS = (
    "summary",
    "status",
    "issuetype",
    "project",
    "created",
    "updated",
    "resolutiondate",
    "parent",
    "issuelinks",
    "assignee",
    "priority",
    "labels",
    "fixVersions",
)
CHANGELOG_PAGE = 100
LINK_TYPE_NAMES = {"implements": "Implements", "fixes": "Fixes", "derived_from": "Cloners"}
MAX_WORKFLOW_STEPS = 10
MARKER_PROPERTY = "vsm.created-for"  # the issue property holding the integration engine's creation marker
MAX_KEY_GAP = 20
CREATE_CALL_BOUND = timedelta(minutes=10)  # longer than any create call, with its retries, can take
CATEGORY_RANKS = {"new": 0, "indeterminate": 1, "done": 2}  # Jira's status categories, in order


@register_connector
class JiraConnector(Connector):
    slug = "jira"
    name = "Jira"
    credential_fields: ClassVar = (
        CredentialField("email", "Account email (Cloud)", secret=False, required=False),
        CredentialField("api_token", "API token (Cloud)", required=False),
        CredentialField("personal_access_token", "Personal access token (Data Center)", required=False),
        WEBHOOK_SECRET_FIELD,
    )
    option_fields: ClassVar = (
        OptionField("flavour", "Flavour", choices=(CLOUD, DATA_CENTER), default=CLOUD),
        OptionField(
            "epic_link_field",
            "Epic Link field (Data Center)",
            default=DEFAULT_EPIC_LINK_FIELD,
            help_text="The custom field that holds an issue's epic key, if the site uses one.",
        ),
    )
    artifact_types = ("Epic", "Story", "Task", "Sub-task", "Bug")
    features = frozenset({Feature.READ, Feature.WRITE, Feature.LINKS, Feature.WEBHOOKS})
    webhook_module = webhooks
    query_help = "A project key (ABC) or a JQL filter without ORDER BY."
    # Wiki markup: what REST v2 takes and Data Center answers; Cloud answers v3 reads with ADF, which
    # connectors.richtext recognises by its shape.
    rich_text_format = "jira_wiki"

    def __init__(self, installation):
        super().__init__(installation)
        self.flavour = installation.options.get("flavour", CLOUD)
        if self.flavour not in (CLOUD, DATA_CENTER):
            raise BadRequest(f"unknown Jira flavour {self.flavour!r}: use {CLOUD} or {DATA_CENTER}")
        self.api = "rest/api/3" if self.flavour == CLOUD else "rest/api/2"
        self.epic_link_field = installation.options.get("epic_link_field") or DEFAULT_EPIC_LINK_FIELD
        self._time_zone: ZoneInfo | None = None
        self._status_categories: dict[str, str] | None = None
        self.http = HttpClient(
            installation.base_url.rstrip("/") + "/",
            auth=self._auth(),
            **installation.http_options(),
        )

    def _auth(self) -> httpx.Auth:
        credentials = self.installation.credentials
        if self.flavour == CLOUD:
            if not credentials.get("email") or not credentials.get("api_token"):
                raise AuthError("Jira Cloud needs the account email and an API token")
            return httpx.BasicAuth(credentials["email"], credentials["api_token"])
        if not credentials.get("personal_access_token"):
            raise AuthError("Jira Data Center needs a personal access token")
        return BearerAuth(credentials["personal_access_token"])

    def close(self) -> None:
        self.http.close()

    # Reading

    def check_connection(self) -> str:
        myself = self.http.get_json("rest/api/2/myself")
        return (
            myself.get("displayName") or myself.get("emailAddress") or myself.get("name") or "an unnamed user"
        )

    def user_time_zone(self) -> ZoneInfo:
        """JQL dates are read in the searching user's time zone, so `since` is written in it."""
        if self._time_zone is None:
            name = self.http.get_json("rest/api/2/myself").get("timeZone") or "UTC"
            try:
                self._time_zone = ZoneInfo(name)
            except (ZoneInfoNotFoundError, ValueError):
                raise BadPayload(f"Jira reports an unknown time zone {name!r} for the user") from None
        return self._time_zone

    def search_jql(self, scope: ScopeSpec, since: datetime | None) -> str:
        try:
            jql = scope_jql(scope.query)
        except ValueError as error:
            raise BadRequest(str(error)) from None
        if since is not None:
            local = since.astimezone(self.user_time_zone())
            jql += f' AND updated >= "{local:%Y/%m/%d %H:%M}"'  # minute precision: floors, never skips
        return jql + " ORDER BY updated ASC, key ASC"

    def read_changes(self, scope: ScopeSpec, since: datetime | None) -> Iterator[Page]:
        fields = sorted(set(BASE_FIELDS) | set(scope.fields) | {self.epic_link_field})
        for issues in self._search(
            self.search_jql(scope, since), fields, scope.page_size, expand="changelog"
        ):
            yield self._page(issues)

    def read_item(self, key: str, scope: ScopeSpec) -> ToolItem:
        fields = sorted(set(BASE_FIELDS) | set(scope.fields) | {self.epic_link_field})
        issue = self.http.get_json(
            f"{self.api}/issue/{key}", params={"fields": ",".join(fields), "expand": "changelog"}
        )
        return issue_to_item(issue, self.installation.base_url, self._histories(issue), self.epic_link_field)

    def list_ids(self, scope: ScopeSpec) -> Iterator[str]:
        jql = self.search_jql(scope, None)
        for issues in self._search(jql, ["id"], 1000, expand=""):
            for issue in issues:
                yield str(issue["id"])

    def _search(self, jql: str, fields: list[str], page_size: int, *, expand: str) -> Iterator[list[dict]]:
        if self.flavour == CLOUD:
            body: dict[str, Any] = {"jql": jql, "fields": fields, "maxResults": page_size}
            if expand:
                body["expand"] = expand
            yield from self.http.paginate_token(f"{self.api}/search/jql", method="POST", json=body)
        else:
            params = {"jql": jql, "fields": ",".join(fields)}
            if expand:
                params["expand"] = expand
            yield from self.http.paginate_offset(f"{self.api}/search", params=params, page_size=page_size)

    def _page(self, issues: list[dict]) -> Page:
        page = Page(items=[])
        for issue in issues:
            try:
                page.items.append(
                    issue_to_item(
                        issue, self.installation.base_url, self._histories(issue), self.epic_link_field
                    )
                )
            except (KeyError, TypeError, ValueError, AttributeError) as error:
                key = issue.get("key", "") if isinstance(issue, dict) else ""
                native_id = str(issue.get("id", "")) if isinstance(issue, dict) else ""
                page.failures.append(
                    ItemFailure(
                        native_id, key, f"cannot read issue {key or native_id}: {error!r:.200}", issue
                    )
                )
        return page

    def _histories(self, issue: dict) -> list[dict]:
        """The full changelog: the embedded one, or the paged endpoint when Jira truncated it."""
        changelog = issue.get("changelog") or {}
        histories = changelog.get("histories") or []
        total = changelog.get("total")
        if not isinstance(total, int) or total <= len(histories):
            return histories
        paged = []
        for values in self.http.paginate_offset(
            f"{self.api}/issue/{issue['key']}/changelog",
            page_size=CHANGELOG_PAGE,
            items_field="values",
        ):
            paged.extend(values)
        return paged

    # Writing

    def create_item(
        self, scope: ScopeSpec, item_type: str, fields: dict[str, Any], *, marker: str = ""
    ) -> ToolItem:
        project = fields.pop("project", None) or scope.query.strip()
        payload = {"project": {"key": project}, "issuetype": {"name": item_type}, **fields}
        body: dict[str, Any] = {"fields": payload}
        if marker:  # an entity property: kept on the issue, shown to nobody, out of its changelog
            body["properties"] = [{"key": MARKER_PROPERTY, "value": {"marker": marker}}]
        created = self.http.post_json("rest/api/2/issue", body)
        return self.read_item(created["key"], scope)

    def find_created(
        self, scope: ScopeSpec, item_type: str, *, marker: str, title: str, started: datetime
    ) -> list[ToolItem]:
        """The issue an earlier create made, found without trusting the search index.

        JQL search is eventually consistent: an issue created seconds ago may be missing from it, and a
        retry that trusted it would create a second one. But keys are numbered in creation order within
        a project, and reading an issue by key is always current. So the probe reads, one by one, the
        keys after the newest issue the search shows created before `started` less CLOCK_SKEW (a stale
        index can only make that lower, costing reads, never missing one), until the issue with the
        marker (or, for a creation without one, of the type with the title), an issue created after the
        call could have ended (CREATE_CALL_BOUND), or MAX_KEY_GAP missing keys in a row (deleted or
        moved issues leave gaps).
        """
        project = scope.query.strip()
        if not PROJECT_KEY.fullmatch(project):
            raise BadRequest(
                f"cannot look for an issue made in {project!r}: name a project key as the container"
            )
        number, missed = self._newest_number_before(project, started - CLOCK_SKEW), 0
        while missed < MAX_KEY_GAP:
            number += 1
            try:
                issue = self.http.get_json(
                    f"rest/api/2/issue/{project}-{number}",
                    params={"fields": "created,summary,issuetype", "properties": MARKER_PROPERTY},
                )
            except NotFound:
                missed += 1
                continue
            missed = 0
            if _made_by(issue, marker, title, item_type):
                return [self.read_item(issue["key"], scope)]
            if parse_jira_time(issue["fields"]["created"]) > started + CREATE_CALL_BOUND:
                break
        return []

    def _newest_number_before(self, project: str, instant: datetime) -> int:
        """The number of the project's newest issue the search shows created before `instant` (0: none)."""
        local = instant.astimezone(self.user_time_zone())
        jql = f'project = {project} AND created < "{local:%Y/%m/%d %H:%M}" ORDER BY key DESC'
        for issues in self._search(jql, ["id"], 1, expand=""):
            for issue in issues:
                return int(issue["key"].rsplit("-", 1)[1])
            break
        return 0

    def update_item(self, ref: ItemRef, fields: dict[str, Any]) -> None:
        self.http.put_json(f"rest/api/2/issue/{ref.key}", {"fields": fields})

    def transition_item(self, ref: ItemRef, to_status: str) -> None:
        """Move the issue to `to_status`, through the workflow's intermediate statuses where no transition
        goes there directly (To Do -> In Progress -> In Review -> Done).

        Jira lists only the transitions offered from the issue's current status, so the walk goes step
        by step: a transition into the target when one is offered, else one into a status not visited
        yet whose category (To Do, In Progress, Done) is nearest the target's; each step is a transition
        of its own, at most MAX_WORKFLOW_STEPS. Where no offered transition leads on, BadRequest says
        where the walk stopped and what was offered there.
        """
        wanted = to_status.casefold()
        target_rank = self._category_rank(to_status, ref)
        issue = self.http.get_json(f"rest/api/2/issue/{ref.key}", params={"fields": "status"})
        walked = [issue["fields"]["status"]["name"]]
        for _ in range(MAX_WORKFLOW_STEPS):
            if walked[-1].casefold() == wanted:
                return
            offered = self.http.get_json(f"rest/api/2/issue/{ref.key}/transitions").get("transitions", [])
            seen = {status.casefold() for status in walked}
            direct = [t for t in offered if _to_name(t).casefold() == wanted]
            onward = [t for t in offered if _to_name(t).casefold() not in seen]
            if not direct and not onward:
                choices = ", ".join(f"{t.get('name', '?')} (to {_to_name(t)})" for t in offered) or "nothing"
                raise BadRequest(
                    f"{ref.key} cannot move to “{to_status}”: walked {' -> '.join(walked)}, where the "
                    f"workflow offers {choices}; add the missing transition or map another status"
                )
            step = direct[0] if direct else min(onward, key=lambda t: abs(_category_rank(t) - target_rank))
            self.http.post_json(f"rest/api/2/issue/{ref.key}/transitions", {"transition": {"id": step["id"]}})
            walked.append(_to_name(step))
        if walked[-1].casefold() != wanted:
            raise BadRequest(
                f"{ref.key} did not reach “{to_status}” in {MAX_WORKFLOW_STEPS} transitions: "
                f"walked {' -> '.join(walked)}"
            )

    def _category_rank(self, status: str, ref: ItemRef) -> int:
        """Where the status's category stands in To Do -> In Progress -> Done; BadRequest for a status
        Jira does not have."""
        if self._status_categories is None:
            self._status_categories = {
                str(found.get("name", "")).casefold(): ((found.get("statusCategory") or {}).get("key") or "")
                for found in self.http.get_json("rest/api/2/status")
            }
        category = self._status_categories.get(status.casefold())
        if category is None:
            raise BadRequest(f"{ref.key} cannot move to “{status}”: Jira has no status of that name")
        return CATEGORY_RANKS.get(category, 1)

    def title_path(self, item_type: str) -> str:
        return "summary"

    def person_value(self, path: str, account_id: str) -> tuple[str, Any]:
        identity = "accountId" if self.flavour == CLOUD else "name"
        return path.split(".")[0], {identity: account_id}

    def condition_value(self, path: str, value: str) -> Any:
        return [value] if path == "labels" else value

    def add_link(self, ref: ItemRef, link: ToolLink | None = None, *, url: str = "", title: str = "") -> None:
        if link is not None:
            self.http.post_json(
                "rest/api/2/issueLink",
                {
                    "type": {"name": LINK_TYPE_NAMES.get(link.kind, "Relates")},
                    # Jira shows each issue the *other* one: posted as inward, `ref` sees the
                    # target as its outwardIssue, which is the side the reader records.
                    "inwardIssue": {"key": ref.key},
                    "outwardIssue": {"key": link.target_key},
                },
            )
            return
        # Re-posting the same globalId updates the remote link instead of adding a second one.
        self.http.post_json(
            f"rest/api/2/issue/{ref.key}/remotelink",
            {"globalId": f"vsm-portal={url}", "object": {"url": url, "title": title or url}},
        )


def _made_by(issue: dict, marker: str, title: str, item_type: str) -> bool:
    """Whether the create call with this marker made the issue (without a marker: the title and type)."""
    if marker:
        return ((issue.get("properties") or {}).get(MARKER_PROPERTY) or {}).get("marker") == marker
    fields = issue.get("fields") or {}
    return fields.get("summary") == title and (fields.get("issuetype") or {}).get("name") == item_type


def _to_name(transition: dict) -> str:
    return str((transition.get("to") or {}).get("name", "?"))


def _category_rank(transition: dict) -> int:
    return CATEGORY_RANKS.get(((transition.get("to") or {}).get("statusCategory") or {}).get("key", ""), 1)


class BearerAuth(httpx.Auth):
    def __init__(self, token: str):
        self._token = token

    def auth_flow(self, request):
        request.headers["Authorization"] = f"Bearer {self._token}"
        yield request
