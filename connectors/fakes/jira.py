"""A faithful fake of the Jira REST API, Cloud and Data Center, for tests and the demo.

The shapes are copied from recorded payloads (DevLake raw tables; see connectors-reference.md §1):
issue JSON, changelog histories and items, timestamps like ``2021-01-25T11:33:16.108+0800`` in the
user's time zone, Jira's error body ``{"errorMessages": [...], "errors": {...}}``.

Flavours
    ``cloud``: HTTP Basic ``email:api_token``; ``GET|POST /rest/api/{2,3}/search/jql`` pages with
    ``nextPageToken`` (the key is absent on the last page, where ``isLast`` is true; no total); without
    ``fields`` only ``id`` comes back; the legacy ``/rest/api/{2,3}/search`` answers 410 Gone.
    ``datacenter``: ``Authorization: Bearer <personal access token>`` (not accepted as a Basic
    password); only ``/rest/api/2``; ``GET|POST /rest/api/2/search`` pages with startAt/maxResults/total;
    no ``/search/jql``.
    Both: ``myself``, ``serverInfo``, ``project``, ``status``, ``issue/{idOrKey}`` (GET with ``fields``
    and ``expand=changelog``, PUT, DELETE), ``POST issue``, ``issue/{key}/changelog`` (page bean),
    ``issue/{key}/transitions`` (GET, POST), ``POST issueLink``, ``issueLinkType``,
    ``issue/{key}/remotelink`` (GET, POST; the same ``globalId`` updates instead of duplicating),
    ``issue/{key}/properties`` (GET: the keys) and ``issue/{key}/properties/{propertyKey}`` (GET, PUT,
    DELETE).

Entity properties
    Apps' own JSON on an issue, outside its fields: ``POST issue`` takes ``"properties": [{"key",
    "value"}]`` beside ``fields`` (keys up to 255 characters; a bad shape is a 400); ``GET issue/{key}``
    renders ``"properties": {key: value}`` only when asked with ``properties=key1,key2`` or ``*all``;
    PUT of one answers 201 when created, 200 when replaced. Setting one is no edit: neither ``updated``
    nor the changelog moves, as in Jira.

Search consistency
    Atlassian documents JQL search as eventually consistent. With ``search_lag`` set (zero by default:
    search is current and nothing extra is kept), both search endpoints see each issue as it was that
    long ago by the fake's clock: a new issue is missing, an edited, transitioned or linked one shows
    its former fields, status, ``updated`` and changelog (and JQL filters and orders on those), a deleted
    one lingers. ``GET issue/{key}``, its changelog and transitions are always current.

Changelog
    Every edit, transition, link and remote link adds a history and bumps ``updated``. Entering a
    status of category ``done`` sets the resolution (Done) and ``resolutiondate``; leaving it clears
    them, with their own items, as Jira's default workflows do. An embedded changelog
    (``expand=changelog``) holds only the newest ``embedded_changelog_limit`` histories (newest first
    on Cloud, oldest first on Data Center, as recorded) with ``total`` counting all of them, so clients
    must page ``/issue/{key}/changelog`` when ``total`` is larger.

JQL (parsed strictly; anything else is a 400 in Jira's error shape)
    ``project = KEY``, ``project in (A, B)``, ``key = A-1``, ``key in (A-1, A-2)``,
    ``updated|created >=|>|<=|< "yyyy/MM/dd HH:mm"`` (also ``yyyy-MM-dd HH:mm`` and date only), read in
    the searching user's time zone; clauses joined by AND; ``ORDER BY updated|created|key [ASC|DESC]``,
    comma-separated. Ties are always broken by issue id, and a ``nextPageToken`` carries the last
    position in that order, so issues sharing one ``updated`` across a page boundary are neither
    skipped nor repeated.

Programmatic API (tests and the demo generator; no HTTP needed)
    ``add_user``, ``add_project`` (statuses with categories new/indeterminate/done, ``TransitionRule``),
    ``add_custom_field``, ``add_link_type``, ``add_issue`` (backdated, with status histories),
    ``transition``, ``edit``, ``link``, ``add_remote_link``, ``set_issue_property``, ``delete``;
    ``Issue.properties``; faults ``rate_limit``, ``fail``, ``slow``, ``malformed``, ``set_search_lag``
    (or the ``search_lag`` property), ``clear_faults``; ``requests`` (a Counter keyed "METHOD endpoint")
    and ``writes``; ``now`` is the clock for changes made without an explicit instant.

Control endpoints: FAKE-ONLY, never on a real Jira. No credentials; never faulted or counted.
    POST /_fake/reset        {"flavour"?, "time_zone"?, "embedded_changelog_limit"?}: an empty site
    POST /_fake/faults       {"rate_limit": {"count", "retry_after"?}, "fail": {"count", "status"?},
                              "slow": {"count", "seconds"}, "malformed": ["KEY-1"],
                              "search_lag": seconds, "clear": true (also sets the lag back to 0)}
    GET  /_fake/stats        request counters, writes, pending faults, issue count
    POST /_fake/clock        {"now": "2026-03-01T10:30:00+00:00"} freezes the clock; {"now": null} frees it
    POST /_fake/users        {"email", "token", "display_name"?, "time_zone"?, "account_id"?, "name"?}
    POST /_fake/projects     {"key", "name"?, "statuses"?: {"To Do": "new", ...},
                              "transitions"?: [{"name", "to", "from"?: [...]}], "issue_types"?: [...]}
    POST /_fake/issues       {"project", "issue_type", "summary", "status"?, "created"?, "updated"?,
                              "fields"?, "parent"?, "reporter"?, "properties"?: {key: value},
                              "histories"?: [{"at", "from", "to", "author"?}]}  -> 201 {"id", "key"}
    POST /_fake/issues/{key}/transition   {"to", "at"?, "author"?}
    POST /_fake/issues/{key}/edit         {"fields", "at"?, "author"?}
    POST /_fake/links        {"source", "type", "target", "at"?, "author"?}
Instants in control bodies are ISO 8601 with an offset; authors are an email, accountId or username.
"""

from __future__ import annotations

import base64
import binascii
import bisect
import hashlib
import itertools
import json
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from connectors.fakes.query import regex_tokens
from connectors.fakes.wsgi import (
    CONTROL_PREFIX,
    FakeApp,
    HttpError,
    InvalidRequestBody,
    Request,
    Response,
    basic_credentials,
    bearer_token,
    empty_response,
    json_response,
    locked,
)

FLAVOURS = ("cloud", "datacenter")
DEMO_EMAIL = "demo@vsm.example"
DEMO_TOKEN = "fake-jira-token"  # noqa: S105 (a published demo credential of the fake)

STATUS_CATEGORIES = {
    "new": {"id": 2, "key": "new", "colorName": "blue-gray", "name": "To Do"},
    "indeterminate": {"id": 4, "key": "indeterminate", "colorName": "yellow", "name": "In Progress"},
    "done": {"id": 3, "key": "done", "colorName": "green", "name": "Done"},
}
DEFAULT_STATUSES = {"To Do": "new", "In Progress": "indeterminate", "Done": "done"}
DEFAULT_ISSUE_TYPES = ("Epic", "Story", "Task", "Bug", "Sub-task")
SUBTASK_ISSUE_TYPES = frozenset({"Sub-task"})
PRIORITIES = {"1": "Highest", "2": "High", "3": "Medium", "4": "Low", "5": "Lowest"}
DEFAULT_LINK_TYPES = (
    ("Blocks", "is blocked by", "blocks"),
    ("Cloners", "is cloned by", "clones"),
    ("Duplicate", "is duplicated by", "duplicates"),
    ("Relates", "relates to", "relates to"),
)
DONE_RESOLUTION = {"id": "10000", "name": "Done", "description": "Work has been completed on this issue."}
ISSUE_EXPAND = "operations,versionedRepresentations,editmeta,changelog,renderedFields"
EDITABLE_SYSTEM_FIELDS = frozenset(
    {
        "summary",
        "description",
        "environment",
        "labels",
        "priority",
        "assignee",
        "reporter",
        "duedate",
        "parent",
        "fixVersions",
    }
)
RICH_TEXT_FIELDS = frozenset({"description", "environment"})
CUSTOM_FIELD_ID = re.compile(r"customfield_\d+")
PROJECT_KEY = re.compile(r"[A-Z][A-Z0-9_]{0,9}")
ISSUE_KEY = re.compile(r"[A-Za-z][A-Za-z0-9_]*-\d+")
JQL_DATE_FORMATS = ("%Y/%m/%d %H:%M", "%Y-%m-%d %H:%M", "%Y/%m/%d", "%Y-%m-%d")

DEFAULT_PAGE_SIZE = 50
CLOUD_ID_ONLY_PAGE_CAP = 5000  # Cloud serves big pages only for id/key-only requests
CLOUD_PAGE_CAP = 100
DATACENTER_PAGE_CAP = 1000  # the admin-configurable default
CHANGELOG_PAGE_CAP = 100
PROPERTY_KEY_MAX = 255
PROPERTY_VALUE_MAX = 32768  # characters of the value's JSON
MAX_SEARCH_LAG = timedelta(days=365)
# When the issues that already exist as a search lag is switched on were indexed: long ago, for any clock.
ALWAYS_INDEXED = datetime.min.replace(tzinfo=UTC)

ISSUE_NOT_FOUND = "Issue does not exist or you do not have permission to see it."
LEGACY_SEARCH_GONE = (
    "The requested API has been removed. Please migrate to the /rest/api/3/search/jql API. "
    "A full migration guideline is available at https://developer.atlassian.com/changelog/#CHANGE-2046"
)
NOT_AUTHENTICATED = "You are not authenticated. Authentication required to perform this operation."
UNBOUNDED_JQL = "Unbounded JQL queries are not allowed here. Please add a search restriction to your query."
ADF_REQUIRED = "Operation value must be an Atlassian Document (see the Atlassian Document Format)"
PROPERTIES_SHAPE = '\'properties\' must be a list of {"key": "...", "value": ...} objects.'


class JiraError(HttpError):
    """Jira's error, ``{"errorMessages": [...], "errors": {field: message}}`` with its HTTP status.

    Raised by the programmatic API too, where it reads as a plain exception with the same messages.
    """

    def __init__(self, status: int, messages: Sequence[str] = (), errors: dict[str, str] | None = None):
        self.messages, self.errors = list(messages), dict(errors or {})
        super().__init__(json_response({"errorMessages": self.messages, "errors": self.errors}, status))
        self.args = ("; ".join([*self.messages, *(f"{name}: {text}" for name, text in self.errors.items())]),)


@dataclass(frozen=True)
class TransitionRule:
    """A workflow transition named `name` into status `to`, from any of `sources` (every other status
    when empty, as in Jira's "all statuses can transition to this one")."""

    name: str
    to: str
    sources: tuple[str, ...] = ()


@dataclass
class User:
    account_id: str  # Cloud's identity
    name: str  # Data Center's username
    key: str  # Data Center's user key
    display_name: str
    email: str
    token: str  # Cloud API token, or Data Center personal access token
    time_zone: str


@dataclass
class Status:
    id: str
    name: str
    category: str  # a key of STATUS_CATEGORIES


@dataclass
class IssueType:
    id: str
    name: str
    subtask: bool
    hierarchy_level: int


@dataclass
class Project:
    id: str
    key: str
    name: str
    statuses: list[str]  # the first is where new issues start
    transitions: list[tuple[str, TransitionRule]]  # (transition id, rule)
    issue_types: list[str]
    last_number: int = 0


@dataclass
class History:
    id: str
    created: datetime
    author: User
    items: list[dict[str, Any]]


@dataclass
class LinkType:
    id: str
    name: str
    inward: str
    outward: str


@dataclass
class IssueLink:
    """`source` <outward> `target`, e.g. "A-1 blocks A-2"; `target` <inward> `source` read backwards."""

    id: str
    type: LinkType
    source: str
    target: str


@dataclass
class RemoteLink:
    id: int
    global_id: str | None
    body: dict[str, Any]


@dataclass
class Issue:
    id: str
    key: str
    project: Project
    issue_type: IssueType
    status: str
    reporter: User
    created: datetime
    updated: datetime
    status_category_changed: datetime
    fields: dict[str, Any]  # editable fields in stored form: users as User, priority as its name
    parent: str | None = None
    resolved: datetime | None = None
    histories: list[History] = field(default_factory=list)
    remote_links: list[RemoteLink] = field(default_factory=list)
    # Entity properties (key -> any JSON value): apps' own data, outside fields, changelog and `updated`.
    properties: dict[str, Any] = field(default_factory=dict)

    @property
    def number(self) -> int:
        return int(self.key.rsplit("-", 1)[1])


@dataclass
class IssueSnapshot:
    """An issue as search sees it from `indexed` on (the fake clock's instant of the write that made
    this state), with the links and children it had then; `issue` is None from its deletion on."""

    indexed: datetime
    issue: Issue | None
    links: list[IssueLink] = field(default_factory=list)
    children: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class View:
    """How one request sees the site: where `self` links point, its time zone, its API version."""

    base_url: str
    zone: ZoneInfo
    version: str

    @property
    def api(self) -> str:
        return f"{self.base_url}/rest/api/{self.version}"


def format_instant(instant: datetime, zone: ZoneInfo) -> str:
    """Jira's ``yyyy-MM-dd'T'HH:mm:ss.SSSZ`` in `zone`, e.g. ``2021-01-25T11:33:16.108+0800``."""
    local = instant.astimezone(zone)
    return f"{local:%Y-%m-%dT%H:%M:%S}.{local.microsecond // 1000:03d}{local:%z}"


def to_jira_instant(value: datetime) -> datetime:
    """UTC at Jira's millisecond precision; naive datetimes are refused, their zone being a guess."""
    if not isinstance(value, datetime) or value.tzinfo is None:
        raise ValueError(f"Expected an aware datetime (with tzinfo), got {value!r}")
    return value.astimezone(UTC).replace(microsecond=value.microsecond // 1000 * 1000)


def _parse_iso_instant(text: Any, name: str) -> datetime:
    try:
        return to_jira_instant(datetime.fromisoformat(text))
    except (TypeError, ValueError) as error:
        raise InvalidRequestBody(
            f"'{name}' must be an ISO 8601 instant with an offset, not {text!r}"
        ) from error


# JQL ------------------------------------------------------------------------------------------------

_JQL_TOKEN = re.compile(
    r"""\s*(?:(?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')"""
    r"""|(?P<operator>>=|<=|!=|!~|=|>|<|~)"""
    r"""|(?P<punctuation>[(),])"""
    r"""|(?P<word>[^\s"'(),=<>!~]+))"""
)
_JQL_FIELD_ALIASES = {
    "project": "project",
    "key": "key",
    "issuekey": "key",
    "updated": "updated",
    "created": "created",
}
_JQL_OPERATORS = {
    "project": ("=", "in"),
    "key": ("=", "in"),
    "updated": (">=", ">", "<=", "<"),
    "created": (">=", ">", "<=", "<"),
}
_JQL_ORDER_FIELDS = ("updated", "created", "key")
_JQL_SUPPORTED = (
    "the fake Jira knows project, key, updated and created clauses joined by AND, "
    "and ORDER BY updated, created or key"
)


@dataclass(frozen=True)
class JqlCondition:
    field: str
    operator: str
    values: tuple[str, ...]


@dataclass(frozen=True)
class JqlQuery:
    conditions: tuple[JqlCondition, ...]
    order_by: tuple[tuple[str, bool], ...]  # (field, descending)


class JqlError(ValueError):
    pass


def _tokenize_jql(text: str) -> list[tuple[str, str]]:
    try:
        return regex_tokens(_JQL_TOKEN, text, lambda quoted: re.sub(r"\\(.)", r"\1", quoted[1:-1]))
    except ValueError as error:
        raise JqlError(f"Error in the JQL Query: {error}.") from None


def parse_jql(text: str) -> JqlQuery:
    """The supported subset of JQL; JqlError (with a message fit for Jira's 400) for anything else."""
    tokens = _tokenize_jql(text or "")
    position = 0

    def peek_word() -> str | None:
        if position < len(tokens) and tokens[position][0] == "word":
            return tokens[position][1].lower()
        return None

    def take(expected_kind: str | None = None, what: str = "a value") -> str:
        nonlocal position
        if position >= len(tokens):
            raise JqlError(f"Error in the JQL Query: expecting {what} but reached the end of the query.")
        kind, value = tokens[position]
        if expected_kind is not None and kind != expected_kind:
            raise JqlError(f"Error in the JQL Query: expecting {what} but got '{value}'.")
        position += 1
        return value

    def at_punctuation(mark: str) -> bool:
        return position < len(tokens) and tokens[position] == ("punctuation", mark)

    conditions: list[JqlCondition] = []
    depth = 0  # parentheses only group AND-ed clauses here, so they change nothing but must balance
    while position < len(tokens) and peek_word() != "order":
        if conditions:
            joiner = take("word", "'AND'").lower()
            if joiner != "and":
                raise JqlError(f"The fake Jira does not support '{joiner.upper()}' in JQL: {_JQL_SUPPORTED}.")
        while at_punctuation("("):
            take()
            depth += 1
        name = take(what="a field name")
        field_name = _JQL_FIELD_ALIASES.get(name.lower())
        if field_name is None:
            raise JqlError(f"The fake Jira does not support the field '{name}' in JQL: {_JQL_SUPPORTED}.")
        operator = take(what="an operator").lower()
        if operator not in _JQL_OPERATORS[field_name]:
            raise JqlError(f"The fake Jira does not support '{name} {operator}' in JQL: {_JQL_SUPPORTED}.")
        if operator == "in":
            take("punctuation", "'('")
            values = [take(what="a value")]
            while (separator := take("punctuation", "',' or ')'")) == ",":
                values.append(take(what="a value"))
            if separator != ")":
                raise JqlError(f"Error in the JQL Query: expecting ')' but got '{separator}'.")
        else:
            values = [take(what="a value")]
        conditions.append(JqlCondition(field_name, operator, tuple(values)))
        while depth and at_punctuation(")"):
            take()
            depth -= 1
    if depth:
        raise JqlError("Error in the JQL Query: expecting ')' before the end of the query.")

    order_by: list[tuple[str, bool]] = []
    if position < len(tokens):
        take("word", "'ORDER'")
        if (peek_word() or "") != "by":
            raise JqlError("Error in the JQL Query: expecting 'BY' after 'ORDER'.")
        take("word")
        while True:
            name = take("word", "a field to order by").lower()
            if name not in _JQL_ORDER_FIELDS:
                raise JqlError(f"The fake Jira does not support ORDER BY '{name}': {_JQL_SUPPORTED}.")
            descending = False
            if peek_word() in {"asc", "desc"}:
                descending = take("word").lower() == "desc"
            order_by.append((name, descending))
            if position >= len(tokens):
                break
            take("punctuation", "','")
    return JqlQuery(tuple(conditions), tuple(order_by))


def parse_jql_date(literal: str, zone: ZoneInfo) -> datetime | None:
    """A JQL date literal read in `zone` (the searching user's), or None when it is not one."""
    for date_format in JQL_DATE_FORMATS:
        try:
            return datetime.strptime(literal, date_format).replace(tzinfo=zone)
        except ValueError:
            continue
    return None


# The fake ---------------------------------------------------------------------------------------------


class FakeJira(FakeApp):
    """An in-memory Jira site speaking the REST API of its `flavour` (see the module docstring)."""

    def __init__(
        self,
        flavour: str = "cloud",
        time_zone: str = "Asia/Shanghai",
        now: Callable[[], datetime] | None = None,
        embedded_changelog_limit: int = 100,
        search_lag: timedelta | float = 0,
    ) -> None:
        super().__init__(now)
        control = self.control.add
        control("POST", rf"{CONTROL_PREFIX}/users", self._control_add_user, "users")
        control("POST", rf"{CONTROL_PREFIX}/projects", self._control_add_project, "projects")
        control("POST", rf"{CONTROL_PREFIX}/issues", self._control_add_issue, "issues")
        control(
            "POST",
            rf"{CONTROL_PREFIX}/issues/(?P<key>[^/]+)/transition",
            self._control_transition,
            "transition",
        )
        control("POST", rf"{CONTROL_PREFIX}/issues/(?P<key>[^/]+)/edit", self._control_edit, "edit")
        control("POST", rf"{CONTROL_PREFIX}/links", self._control_link, "links")
        self.reset(flavour, time_zone, embedded_changelog_limit)
        if search_lag:
            self.search_lag = search_lag

    @locked
    def reset(
        self,
        flavour: str | None = None,
        time_zone: str | None = None,
        embedded_changelog_limit: int | None = None,
    ) -> None:
        """An empty site with only the demo user; options left out keep their current values."""
        super().reset()
        flavour = flavour or self.flavour
        if flavour not in FLAVOURS:
            raise ValueError(f"flavour must be one of {FLAVOURS}, not {flavour!r}")
        time_zone = time_zone or self.time_zone
        _zone(time_zone)
        limit = (
            self.embedded_changelog_limit if embedded_changelog_limit is None else embedded_changelog_limit
        )
        if limit < 0:
            raise ValueError("embedded_changelog_limit cannot be negative")
        self.flavour, self.time_zone, self.embedded_changelog_limit = flavour, time_zone, limit

        self.users: list[User] = []
        self.projects: dict[str, Project] = {}
        self.statuses: dict[str, Status] = {}
        self.issue_types: dict[str, IssueType] = {}
        self.custom_fields: dict[str, str] = {}  # id -> name
        self.link_types: dict[str, LinkType] = {}
        self.issues: dict[str, Issue] = {}  # by key
        self._children: dict[str, list[str]] = {}  # parent key -> child keys, so rendering stays linear
        # Search results per (query, zone), valid while nothing that searches see has changed; under a
        # search lag per (query, zone, lag), also only while the lagged instant stays in a window.
        self._revision = 0
        self._search_cache: dict[tuple, tuple] = {}
        # Eventually consistent search (see `set_search_lag`): zero, and no snapshots, unless set.
        self._search_lag = timedelta(0)
        self._search_snapshots: dict[str, list[IssueSnapshot]] = {}  # issue key -> oldest first
        self.links: list[IssueLink] = []
        self.malformed_keys: set[str] = set()
        self._issue_keys_by_id: dict[str, str] = {}
        self._id_counters = {
            kind: itertools.count(start)
            for kind, start in {
                "issue": 10001,
                "history": 10001,
                "link": 10001,
                "remote link": 10001,
                "project": 10000,
                "status": 10000,
                "issue type": 10000,
                "link type": 10000,
                "user": 10000,
            }.items()
        }
        for name in DEFAULT_ISSUE_TYPES:
            self._issue_type(name)
        for name, inward, outward in DEFAULT_LINK_TYPES:
            self.add_link_type(name, inward, outward)
        self.default_user = self.add_user(DEMO_EMAIL, DEMO_TOKEN, display_name="VSM Demo")
        self._build_routes()

    @locked
    def restore(self, state: dict[str, Any]) -> None:
        """Issue properties, the search lag and the search snapshots are tool state like the issues:
        saved with them, they come back as they were, so a restored site searches exactly as it did
        (the lagged instant follows the clock given on loading). A state saved before they existed comes
        back with no properties and no lag."""
        super().restore(state)
        for issue in self.issues.values():
            vars(issue).setdefault("properties", {})
        self._build_routes()  # the flavour's API, not the constructor's default

    @property
    def cloud(self) -> bool:
        return self.flavour == "cloud"

    @property
    def label(self) -> str:
        return "Jira Cloud" if self.cloud else "Jira Data Center"

    def credentials(self) -> dict[str, str]:
        user = self.default_user
        if self.cloud:
            return {"email": user.email, "api_token": user.token}
        return {"personal_access_token": user.token}

    def _next_id(self, kind: str) -> str:
        return str(next(self._id_counters[kind]))

    def _clock(self) -> datetime:
        return to_jira_instant(self.now())

    # Programmatic API --------------------------------------------------------------------------------

    @locked
    def add_user(
        self,
        email: str,
        token: str,
        display_name: str | None = None,
        time_zone: str | None = None,
        account_id: str | None = None,
        name: str | None = None,
    ) -> User:
        """A user who can authenticate with `token` (Cloud: as `email:token` Basic; Data Center: Bearer)."""
        if any(user.email.lower() == email.lower() for user in self.users):
            raise JiraError(400, errors={"emailAddress": f"A user with email {email} already exists."})
        time_zone = time_zone or self.time_zone
        _zone(time_zone)
        user = User(
            account_id=account_id or hashlib.sha256(email.lower().encode()).hexdigest()[:24],
            name=name or email.split("@")[0],
            key=f"JIRAUSER{self._next_id('user')}",
            display_name=display_name or email.split("@")[0],
            email=email,
            token=token,
            time_zone=time_zone,
        )
        self.users.append(user)
        return user

    @locked
    def add_project(
        self,
        key: str,
        name: str | None = None,
        statuses: dict[str, str] | None = None,
        transitions: Sequence[TransitionRule] | None = None,
        issue_types: Sequence[str] = DEFAULT_ISSUE_TYPES,
    ) -> Project:
        """A project whose workflow has `statuses` (name -> category new/indeterminate/done; the first
        is where issues start) and `transitions` (default: into every status from every other)."""
        if not PROJECT_KEY.fullmatch(key) or key in self.projects:
            raise JiraError(400, errors={"projectKey": f"Project key '{key}' is invalid or already taken."})
        statuses = dict(statuses or DEFAULT_STATUSES)
        for status_name, category in statuses.items():
            self._register_status(status_name, category)
        rules = list(transitions) if transitions is not None else [TransitionRule(s, s) for s in statuses]
        for rule in rules:
            unknown = {rule.to, *rule.sources} - set(statuses)
            if unknown:
                raise JiraError(
                    400, [f"Transition '{rule.name}' uses statuses outside the workflow: {unknown}"]
                )
        project = Project(
            id=self._next_id("project"),
            key=key,
            name=name or key,
            statuses=list(statuses),
            # Jira numbers a workflow's transitions 11, 21, 31...
            transitions=[(str(11 + 10 * index), rule) for index, rule in enumerate(rules)],
            issue_types=[self._issue_type(type_name).name for type_name in issue_types],
        )
        self.projects[key] = project
        return project

    @locked
    def add_custom_field(self, field_id: str, name: str) -> None:
        """Name a custom field (``customfield_10020`` -> "Sprint"); changelog items carry the name."""
        if not CUSTOM_FIELD_ID.fullmatch(field_id):
            raise ValueError(f"Custom field ids look like customfield_10020, not {field_id!r}")
        self.custom_fields[field_id] = name

    @locked
    def add_link_type(self, name: str, inward: str, outward: str) -> LinkType:
        link_type = LinkType(self._next_id("link type"), name, inward, outward)
        self.link_types[name] = link_type
        return link_type

    @locked
    def add_issue(
        self,
        project: str,
        issue_type: str,
        summary: str,
        status: str | None = None,
        created: datetime | None = None,
        updated: datetime | None = None,
        fields: dict[str, Any] | None = None,
        histories: Iterable[Sequence[Any]] = (),
        parent: str | None = None,
        reporter: User | str | None = None,
        properties: dict[str, Any] | None = None,
    ) -> str:
        """Create an issue, possibly backdated, and return its key.

        `fields` take the JSON of Jira's create/edit (``{"priority": {"name": "High"}, "labels": [...],
        "assignee": {"accountId": ...}, "customfield_10100": 5}``); unknown custom fields are named
        after their id. `histories` are status changes ``(at, from_status, to_status[, author])`` in
        time order, recorded as given: real changelogs are not always continuous (a workflow migration
        leaves gaps). The issue starts in the first history's from-status (else `status`, else the
        workflow's first) and ends in `status` when given, else in the last history's to-status.
        `properties` are entity properties (key -> JSON value), as create's ``properties`` list sets.
        """
        project_record = self._project(project)
        stored_properties = self._parse_properties(
            [{"key": name, "value": value} for name, value in (properties or {}).items()]
        )
        created_at = to_jira_instant(created) if created is not None else self._clock()
        changes = [
            (to_jira_instant(at), from_status, to_status, self._user(author[0] if author else None))
            for at, from_status, to_status, *author in histories
        ]
        instants = [created_at, *(change[0] for change in changes)]
        if any(later < earlier for earlier, later in itertools.pairwise(instants)):
            raise ValueError("Histories must be in time order, none before the issue's creation")
        for named in {status, *(name for change in changes for name in change[1:3])} - {None}:
            self._require_workflow_status(project_record, named)
        # A given `updated` is kept as is: recorded issues have histories a few ms after their `updated`.
        updated_at = to_jira_instant(updated) if updated is not None else instants[-1]
        if updated_at < created_at:
            raise ValueError(f"updated ({updated_at}) is before the issue's creation ({created_at})")
        self._register_custom_fields(fields or {})
        issue = self._create(
            project_record,
            self._project_issue_type(project_record, issue_type),
            {"summary": summary, **(fields or {}), **({"parent": {"key": parent}} if parent else {})},
            reporter=self._user(reporter),
            at=created_at,
            status=changes[0][1] if changes else status,
            properties=stored_properties,
        )
        for at, from_status, to_status, author in changes:
            self._commit(
                issue, at, author, self._status_items(issue, to_status, at, recorded_from=from_status)
            )
        if status is not None:
            issue.status = status
        issue.updated = updated_at
        self._revision += 1
        self._snapshot(issue)
        return issue.key

    @locked
    def transition(
        self, key: str, to_status: str, at: datetime | None = None, author: User | str | None = None
    ) -> None:
        """Move an issue to `to_status` (any status of its workflow: the API is an admin's hand, not
        bound to the transition rules that ``POST .../transitions`` enforces)."""
        issue = self._issue(key)
        if to_status == issue.status:
            raise JiraError(400, [f"{issue.key} is already in status '{to_status}'."])
        instant = to_jira_instant(at) if at is not None else self._clock()
        self._commit(issue, instant, self._user(author), self._status_items(issue, to_status, instant))

    @locked
    def edit(
        self, key: str, fields: dict[str, Any], at: datetime | None = None, author: User | str | None = None
    ) -> None:
        """Set fields with the JSON of Jira's edit; one history with an item per changed field."""
        issue = self._issue(key)
        self._register_custom_fields(fields)
        instant = to_jira_instant(at) if at is not None else self._clock()
        self._commit(
            issue, instant, self._user(author), self._set_fields(issue, self._parse_fields(issue, fields))
        )

    @locked
    def link(
        self,
        source: str,
        link_type: str,
        target: str,
        at: datetime | None = None,
        author: User | str | None = None,
    ) -> str:
        """Link `source` <outward> `target` ("A-1 blocks A-2"); both get a Link history. The link id."""
        instant = to_jira_instant(at) if at is not None else self._clock()
        return self._link(self._issue(source), link_type, self._issue(target), instant, self._user(author))

    @locked
    def add_remote_link(
        self, key: str, body: dict[str, Any], at: datetime | None = None, author: User | str | None = None
    ) -> tuple[RemoteLink, bool]:
        """Add a remote link, or update the one with the same ``globalId``; (link, whether created)."""
        instant = to_jira_instant(at) if at is not None else self._clock()
        return self._put_remote_link(self._issue(key), body, instant, self._user(author))

    @locked
    def set_issue_property(self, key: str, property_key: str, value: Any) -> bool:
        """Set an entity property of an issue (any JSON value); whether it was created. Like Jira, this
        leaves `updated` and the changelog alone."""
        issue = self._issue(key)
        ((name, stored),) = self._parse_properties([{"key": property_key, "value": value}]).items()
        created = name not in issue.properties
        issue.properties[name] = stored
        return created

    @locked
    def delete(self, key: str) -> None:
        """Delete an issue with its sub-tasks and links; other children lose their parent."""
        issue = self._issue(key)
        touched = {issue.parent} if issue.parent else set()  # issues whose rendering changes with it
        for child in [self.issues[child_key] for child_key in self._children.pop(issue.key, [])]:
            if child.issue_type.subtask:
                self.delete(child.key)
            else:
                child.parent = None
                touched.add(child.key)
        siblings = self._children.get(issue.parent, []) if issue.parent else []
        if issue.key in siblings:  # not when its parent's deletion took the list already
            siblings.remove(issue.key)
        if self._search_lag:
            touched.update(
                link.target if link.source == issue.key else link.source
                for link in self.links
                if issue.key in (link.source, link.target)
            )
        self.links = [link for link in self.links if issue.key not in (link.source, link.target)]
        del self.issues[issue.key], self._issue_keys_by_id[issue.id]
        self.malformed_keys.discard(issue.key)
        self._revision += 1
        self._snapshot(*(self.issues[other] for other in sorted(touched) if other in self.issues))
        self._snapshot_deletion(issue.key)

    @locked
    def malformed(self, key: str) -> None:
        """From now on render `key` broken (``fields.created`` "not-a-date", no ``fields.status``)."""
        self.malformed_keys.add(self._issue(key).key)

    @property
    def search_lag(self) -> timedelta:
        """How far behind the fake's clock search sees the site (zero: search is current)."""
        return self._search_lag

    @search_lag.setter
    def search_lag(self, lag: timedelta | float) -> None:
        self.set_search_lag(lag.total_seconds() if isinstance(lag, timedelta) else lag)

    @locked
    def set_search_lag(self, seconds: float) -> None:
        """Make search eventually consistent, as Atlassian documents JQL search: from now on both
        search endpoints see every issue as it was `seconds` ago by the fake's clock, so an issue
        created less than that ago is missing, one edited, transitioned or linked less than that ago
        shows as it was before (fields, status, `updated`, changelog; JQL filters and orders on those),
        and a deleted one still shows for that long. GET of one issue, its changelog and transitions
        stay current. A change counts as made at the fake clock's instant of the call, even one
        backdated with `at`; issues that exist when a lag is switched on count as indexed long ago.
        States no search can see any more are dropped as the clock moves on (setting it back does not
        bring them back). Zero (the default) is search as it always was, with no snapshots kept. Also
        ``{"search_lag": seconds}`` on ``POST /_fake/faults``; cleared with the other faults."""
        try:
            lag = timedelta(seconds=float(seconds))
        except (OverflowError, TypeError, ValueError) as error:
            raise ValueError(f"search_lag must be a number of seconds, not {seconds!r}") from error
        if not timedelta(0) <= lag <= MAX_SEARCH_LAG:
            raise ValueError(f"search_lag must be between 0 and {MAX_SEARCH_LAG.total_seconds():.0f} seconds")
        if lag == self._search_lag:
            return
        if not lag:
            self._search_snapshots = {}
        elif not self._search_lag:
            self._search_snapshots = {
                issue.key: [self._issue_snapshot(issue, ALWAYS_INDEXED)] for issue in self.issues.values()
            }
        self._search_lag = lag
        self._revision += 1

    @locked
    def clear_faults(self) -> None:
        super().clear_faults()
        self.malformed_keys.clear()
        self.set_search_lag(0)

    def configure_faults(self, settings: dict[str, Any]) -> None:
        super().configure_faults(settings)
        for key in settings.get("malformed", ()):
            self.malformed(key)
        if "search_lag" in settings:
            self.set_search_lag(settings["search_lag"])

    def stats(self) -> dict[str, Any]:
        stats = super().stats()
        return {
            **stats,
            "faults": {**stats["faults"], "search_lag": self._search_lag.total_seconds()},
            "flavour": self.flavour,
            "issues": len(self.issues),
            "malformed": sorted(self.malformed_keys),
        }

    # State helpers -----------------------------------------------------------------------------------

    def _register_status(self, name: str, category: str) -> None:
        if category not in STATUS_CATEGORIES:
            raise JiraError(
                400, [f"Status category must be one of {list(STATUS_CATEGORIES)}, not '{category}'."]
            )
        existing = self.statuses.get(name)
        if existing is None:
            self.statuses[name] = Status(self._next_id("status"), name, category)
        elif existing.category != category:
            # Statuses are site-wide in Jira: one name, one id, one category.
            raise JiraError(400, [f"Status '{name}' already exists with category '{existing.category}'."])

    def _issue_type(self, name: str) -> IssueType:
        if name not in self.issue_types:
            subtask = name in SUBTASK_ISSUE_TYPES
            level = -1 if subtask else 1 if name == "Epic" else 0
            self.issue_types[name] = IssueType(self._next_id("issue type"), name, subtask, level)
        return self.issue_types[name]

    def _register_custom_fields(self, fields: dict[str, Any]) -> None:
        for field_id in fields:
            if CUSTOM_FIELD_ID.fullmatch(field_id) and field_id not in self.custom_fields:
                self.custom_fields[field_id] = field_id

    def _project(self, reference: str) -> Project:
        for project in self.projects.values():
            if reference.upper() == project.key or reference in (project.id, project.name):
                return project
        raise JiraError(404, [f"No project could be found with key '{reference}'."])

    def _project_issue_type(self, project: Project, name: str) -> IssueType:
        if name not in project.issue_types:
            raise JiraError(400, errors={"issuetype": "Specify a valid issue type"})
        return self.issue_types[name]

    def _find_issue(self, id_or_key: str) -> Issue | None:
        key = self._issue_keys_by_id.get(id_or_key, id_or_key.upper())
        return self.issues.get(key)

    def _issue(self, id_or_key: str) -> Issue:
        issue = self._find_issue(id_or_key)
        if issue is None:
            raise JiraError(404, [ISSUE_NOT_FOUND])
        return issue

    def _find_user(self, reference: str) -> User | None:
        for user in self.users:
            if reference in (user.account_id, user.name, user.key) or reference.lower() == user.email.lower():
                return user
        return None

    def _user(self, reference: User | str | None) -> User:
        if reference is None:
            return self.default_user
        if isinstance(reference, User):
            return reference
        user = self._find_user(reference)
        if user is None:
            raise JiraError(404, [f"No user '{reference}'."])
        return user

    def _require_workflow_status(self, project: Project, status: str) -> None:
        if status not in project.statuses:
            raise JiraError(400, [f"Status '{status}' is not in the workflow of project {project.key}."])

    def _user_reference(self, user: User) -> str:
        return user.account_id if self.cloud else user.name

    def _parse_properties(self, raw: Any) -> dict[str, Any]:
        """Create's ``properties`` list -> key: value; a bad shape is a 400 before anything is made."""
        if raw is None:
            return {}
        if not isinstance(raw, list):
            raise JiraError(400, [PROPERTIES_SHAPE])
        parsed = {}
        for entry in raw:
            if not isinstance(entry, dict) or not isinstance(entry.get("key"), str) or "value" not in entry:
                raise JiraError(400, [PROPERTIES_SHAPE])
            parsed[_property_key(entry["key"])] = _property_value(entry["value"])
        return parsed

    # Search snapshots (only while a search lag is set) -------------------------------------------------

    def _issue_snapshot(self, issue: Issue, indexed: datetime) -> IssueSnapshot:
        """A copy of what search renders of `issue` now: the containers its changes replace or grow are
        copied, the records inside them (users, histories, links) never change once made."""
        copy = replace(
            issue,
            fields=dict(issue.fields),
            histories=list(issue.histories),
            remote_links=list(issue.remote_links),
            properties=dict(issue.properties),
        )
        links = [link for link in self.links if issue.key in (link.source, link.target)]
        return IssueSnapshot(indexed, copy, links, list(self._children.get(issue.key, ())))

    def _snapshot(self, *issues: Issue) -> None:
        """Keep the issues as they stand for search to see once the lag has passed; nothing without a lag."""
        if not self._search_lag:
            return
        for issue in issues:
            self._keep_snapshot(issue.key, lambda indexed, issue=issue: self._issue_snapshot(issue, indexed))

    def _snapshot_deletion(self, key: str) -> None:
        if self._search_lag:
            self._keep_snapshot(key, lambda indexed: IssueSnapshot(indexed, None))

    def _keep_snapshot(self, key: str, make: Callable[[datetime], IssueSnapshot]) -> None:
        """Index at the fake clock's now, never before the issue's previous state (a clock set back
        does not reorder its states); several writes at one instant leave the last state."""
        kept = self._search_snapshots.setdefault(key, [])
        indexed = self._clock()
        if kept and kept[-1].indexed >= indexed:
            kept[-1] = make(kept[-1].indexed)
        else:
            kept.append(make(indexed))
        _drop_superseded(kept, indexed - self._search_lag)

    def _snapshots_as_of(self, as_of: datetime) -> tuple[dict[str, IssueSnapshot], datetime]:
        """The state of every issue search sees at `as_of` (deleted and not yet created ones left out),
        and the next instant at which one of them changes. Drops the states no search can see again."""
        visible: dict[str, IssueSnapshot] = {}
        next_change = datetime.max.replace(tzinfo=UTC)
        gone = []
        for key, kept in self._search_snapshots.items():
            _drop_superseded(kept, as_of)
            if kept[0].indexed > as_of:
                next_change = min(next_change, kept[0].indexed)
                continue
            if len(kept) > 1:
                next_change = min(next_change, kept[1].indexed)
            if kept[0].issue is not None:
                visible[key] = kept[0]
            elif len(kept) == 1:
                gone.append(key)  # deleted longer than the lag ago: search forgets it too
        for key in gone:
            del self._search_snapshots[key]
        return visible, next_change

    # Changes -----------------------------------------------------------------------------------------

    def _create(
        self,
        project: Project,
        issue_type: IssueType,
        raw_fields: dict[str, Any],
        reporter: User,
        at: datetime,
        status: str | None = None,
        properties: dict[str, Any] | None = None,
    ) -> Issue:
        """A new issue (no history: Jira records creation in `created`, not in the changelog)."""
        status = status or project.statuses[0]
        number = project.last_number + 1
        issue = Issue(
            id=self._next_id("issue"),
            key=f"{project.key}-{number}",
            project=project,
            issue_type=issue_type,
            status=status,
            reporter=reporter,
            created=at,
            updated=at,
            status_category_changed=at,
            fields={"summary": None, "labels": [], "priority": "Medium", "reporter": reporter},
            properties=dict(properties or {}),
        )
        self._require_workflow_status(project, status)
        values = self._parse_fields(issue, raw_fields)
        errors = {}
        if not values.get("summary"):
            errors["summary"] = "You must specify a summary of the issue."
        if issue_type.subtask and not values.get("parent"):
            errors["issuetype"] = "Issue type is a sub-task but parent issue key or id not specified."
        if errors:
            raise JiraError(400, errors=errors)
        project.last_number = number
        self.issues[issue.key] = issue
        self._issue_keys_by_id[issue.id] = issue.key
        self._revision += 1
        self._set_fields(issue, values)
        if self.statuses[status].category == "done":
            issue.resolved = at
        self._snapshot(issue)
        return issue

    def _commit(self, issue: Issue, at: datetime, author: User, items: list[dict[str, Any]]) -> None:
        """One changelog history for `items` by `author` at `at`, kept in time order; bumps `updated`."""
        if not items:
            return
        history = History(self._next_id("history"), at, author, items)
        bisect.insort(issue.histories, history, key=lambda kept: (kept.created, int(kept.id)))
        issue.updated = max(issue.updated, at)
        self._revision += 1
        self._snapshot(issue)

    def _status_items(
        self, issue: Issue, to_status: str, at: datetime, recorded_from: str | None = None
    ) -> list[dict[str, Any]]:
        """Move `issue` to `to_status`; the items: the resolution when done-ness changes, then status."""
        self._require_workflow_status(issue.project, to_status)
        old, new = self.statuses[recorded_from or issue.status], self.statuses[to_status]
        items = []
        now_done = new.category == "done"
        if now_done != (issue.resolved is not None):
            resolution = (DONE_RESOLUTION["id"], DONE_RESOLUTION["name"])
            before, after = ((None, None), resolution) if now_done else (resolution, (None, None))
            items.append(_item("resolution", "jira", "resolution", *before, *after))
            issue.resolved = at if now_done else None
        if self.statuses[issue.status].category != new.category:
            issue.status_category_changed = at
        items.append(_item("status", "jira", "status", old.id, old.name, new.id, new.name))
        issue.status = to_status
        return items

    def _parse_fields(self, issue: Issue, raw_fields: dict[str, Any]) -> dict[str, Any]:
        """Jira's create/edit JSON -> stored values; every bad field is reported at once, as Jira does."""
        values: dict[str, Any] = {}
        errors: dict[str, str] = {}
        for field_id, raw in raw_fields.items():
            if field_id not in EDITABLE_SYSTEM_FIELDS and field_id not in self.custom_fields:
                errors[field_id] = (
                    f"Field '{field_id}' cannot be set. It is not on the appropriate screen, or unknown."
                )
                continue
            try:
                values[field_id] = self._parse_field(issue, field_id, raw)
            except ValueError as error:
                errors[field_id] = str(error)
        if errors:
            raise JiraError(400, errors=errors)
        return values

    def _parse_field(self, issue: Issue, field_id: str, raw: Any) -> Any:
        if field_id == "summary":
            if not isinstance(raw, str) or not raw.strip():
                raise ValueError("You must specify a summary of the issue.")
            if len(raw) > 255:
                raise ValueError("Summary must be less than 255 characters.")
            return raw
        if field_id == "labels":
            if not isinstance(raw, list) or not all(isinstance(label, str) for label in raw):
                raise ValueError("Labels are a list of strings.")
            for label in raw:
                if not label or any(character.isspace() for character in label):
                    raise ValueError(f"The label '{label}' contains spaces which is invalid.")
            return list(raw)
        if field_id == "priority":
            return self._parse_priority(raw)
        if field_id in {"assignee", "reporter"}:
            return self._parse_user_field(field_id, raw)
        if field_id == "duedate":
            if raw is not None and not (isinstance(raw, str) and _is_iso_date(raw)):
                raise ValueError(f"Error parsing date string: {raw}")
            return raw
        if field_id == "parent":
            return self._parse_parent(issue, raw)
        if field_id == "fixVersions":
            names = [version.get("name") for version in raw] if isinstance(raw, list) else None
            if names is None or not all(isinstance(name, str) and name.strip() for name in names):
                raise ValueError('Fix versions are a list of {"name": ...} objects.')
            return names
        return raw  # description, environment, custom fields: stored as sent

    def _parse_priority(self, raw: Any) -> str:
        if isinstance(raw, dict) and "name" in raw and raw["name"] in PRIORITIES.values():
            return raw["name"]
        if isinstance(raw, dict) and "id" in raw and str(raw["id"]) in PRIORITIES:
            return PRIORITIES[str(raw["id"])]
        raise ValueError(f"Specify the Priority (id or name) of an existing priority, not {raw!r}")

    def _parse_user_field(self, field_id: str, raw: Any) -> User | None:
        if raw is None and field_id == "assignee":
            return None
        identity = "accountId" if self.cloud else "name"
        reference = raw.get(identity) if isinstance(raw, dict) else None
        user = self._find_user(reference) if isinstance(reference, str) else None
        if user is None:
            raise ValueError(f"Specify a user by '{identity}' of an existing user, not {raw!r}")
        return user

    def _parse_parent(self, issue: Issue, raw: Any) -> str | None:
        if raw is None:
            return None
        reference = (raw.get("key") or raw.get("id")) if isinstance(raw, dict) else None
        parent = self._find_issue(str(reference)) if reference else None
        if parent is None or parent.key == issue.key:
            raise ValueError("Could not find issue by id or key.")
        return parent.key

    def _set_fields(self, issue: Issue, values: dict[str, Any]) -> list[dict[str, Any]]:
        """Store `values`; the changelog items of those that changed."""
        items = []
        for field_id, new in values.items():
            old = issue.parent if field_id == "parent" else issue.fields.get(field_id)
            if old == new:
                continue
            items.append(self._field_item(field_id, old, new))
            if field_id == "parent":
                if issue.parent:
                    self._children.get(issue.parent, []).remove(issue.key)
                if new:
                    self._children.setdefault(new, []).append(issue.key)
                issue.parent = new
                self._snapshot(*(self.issues[key] for key in (old, new) if key in self.issues))
            else:
                issue.fields[field_id] = new
        return items

    def _field_item(self, field_id: str, old: Any, new: Any) -> dict[str, Any]:
        if field_id == "priority":
            return _item("priority", "jira", "priority", _priority_id(old), old, _priority_id(new), new)
        if field_id in {"assignee", "reporter"}:
            before = (self._user_reference(old), old.display_name) if old else (None, None)
            after = (self._user_reference(new), new.display_name) if new else (None, None)
            return _item(field_id, "jira", field_id, *before, *after)
        if field_id == "parent":
            before = (self.issues[old].id, old) if old in self.issues else (None, None)
            after = (self.issues[new].id, new) if new else (None, None)
            return _item("IssueParentAssociation", "jira", None, *before, *after)
        if field_id == "labels":
            return _item("labels", "jira", "labels", None, " ".join(old or []), None, " ".join(new or []))
        if field_id == "duedate":
            return _item("duedate", "jira", "duedate", old, old, new, new)
        if field_id == "fixVersions":
            return _item(
                "Fix Version", "jira", "fixVersions", None, ", ".join(old or []), None, ", ".join(new)
            )
        if field_id in self.custom_fields:
            name = self.custom_fields[field_id]
            return _item(name, "custom", field_id, None, _text(old), None, _text(new))
        return _item(field_id, "jira", field_id, None, _text(old), None, _text(new))

    def _link(self, source: Issue, link_type_name: str, target: Issue, at: datetime, author: User) -> str:
        link_type = self.link_types.get(link_type_name)
        if link_type is None:
            raise JiraError(404, [f"No issue link type with name '{link_type_name}' found."])
        for existing in self.links:
            if (existing.type, existing.source, existing.target) == (link_type, source.key, target.key):
                return existing.id  # Jira keeps one link per type and direction
        link = IssueLink(self._next_id("link"), link_type, source.key, target.key)
        self.links.append(link)
        self._commit(source, at, author, [_link_item(f"This issue {link_type.outward}", target.key)])
        self._commit(target, at, author, [_link_item(f"This issue {link_type.inward}", source.key)])
        return link.id

    def _put_remote_link(
        self, issue: Issue, body: dict[str, Any], at: datetime, author: User
    ) -> tuple[RemoteLink, bool]:
        remote_object = body.get("object")
        errors = {}
        if not isinstance(remote_object, dict) or not remote_object.get("url"):
            errors["url"] = "'url' is required."
        if not isinstance(remote_object, dict) or not remote_object.get("title"):
            errors["title"] = "'title' is required."
        if errors:
            raise JiraError(400, errors=errors)
        global_id = body.get("globalId")
        existing = next(
            (kept for kept in issue.remote_links if global_id and kept.global_id == global_id), None
        )
        if existing is not None:
            before = _remote_link_text(existing.body)
            existing.body = body
            self._commit(issue, at, author, [_remote_item(existing.id, before, _remote_link_text(body))])
            return existing, False
        remote_link = RemoteLink(int(self._next_id("remote link")), global_id, body)
        issue.remote_links.append(remote_link)
        self._commit(issue, at, author, [_remote_item(None, None, _remote_link_text(body), remote_link.id)])
        return remote_link, True

    # Rendering ---------------------------------------------------------------------------------------

    def _user_json(self, user: User, view: View, own_profile: bool = False) -> dict[str, Any]:
        """Cloud hides email addresses from other users (the privacy default, as recorded)."""
        if self.cloud:
            identity = {"self": f"{view.api}/user?accountId={user.account_id}", "accountId": user.account_id}
        else:
            identity = {"self": f"{view.api}/user?username={user.name}", "name": user.name, "key": user.key}
        avatar = f"{view.base_url}/secure/useravatar?ownerId={user.key}"
        return {
            **identity,
            **({"emailAddress": user.email} if own_profile or not self.cloud else {}),
            "avatarUrls": {size: f"{avatar}&size={size}" for size in ("48x48", "24x24", "16x16", "32x32")},
            "displayName": user.display_name,
            "active": True,
            "timeZone": user.time_zone,
            **({"accountType": "atlassian"} if self.cloud else {}),
        }

    def _status_json(self, status: Status, view: View) -> dict[str, Any]:
        category = STATUS_CATEGORIES[status.category]
        return {
            "self": f"{view.api}/status/{status.id}",
            "description": "",
            "iconUrl": f"{view.base_url}/",
            "name": status.name,
            "id": status.id,
            "statusCategory": {"self": f"{view.api}/statuscategory/{category['id']}", **category},
        }

    def _issue_type_json(self, issue_type: IssueType, view: View) -> dict[str, Any]:
        return {
            "self": f"{view.api}/issuetype/{issue_type.id}",
            "id": issue_type.id,
            "description": "",
            "iconUrl": f"{view.base_url}/images/icons/issuetypes/{issue_type.name.lower()}.svg",
            "name": issue_type.name,
            "subtask": issue_type.subtask,
            **({"hierarchyLevel": issue_type.hierarchy_level} if self.cloud else {}),
        }

    def _project_json(self, project: Project, view: View) -> dict[str, Any]:
        return {
            "self": f"{view.api}/project/{project.id}",
            "id": project.id,
            "key": project.key,
            "name": project.name,
            "projectTypeKey": "software",
            **({"simplified": False} if self.cloud else {}),
        }

    def _priority_json(self, name: str | None, view: View) -> dict[str, Any] | None:
        if name is None:
            return None
        priority_id = _priority_id(name)
        return {
            "self": f"{view.api}/priority/{priority_id}",
            "iconUrl": f"{view.base_url}/images/icons/priorities/{name.lower()}.svg",
            "name": name,
            "id": priority_id,
        }

    def _issue_brief(self, issue: Issue, view: View) -> dict[str, Any]:
        """How an issue appears inside another: parent, sub-tasks, issue links."""
        return {
            "id": issue.id,
            "key": issue.key,
            "self": f"{view.api}/issue/{issue.id}",
            "fields": {
                "summary": issue.fields["summary"],
                "status": self._status_json(self.statuses[issue.status], view),
                "priority": self._priority_json(issue.fields.get("priority"), view),
                "issuetype": self._issue_type_json(issue.issue_type, view),
            },
        }

    def _related(self, key: str, lagged: dict[str, IssueSnapshot] | None) -> Issue | None:
        """Another issue as the rendering sees it: current, or as a lagged search sees it (maybe not)."""
        if lagged is None:
            return self.issues[key]
        snapshot = lagged.get(key)
        return snapshot.issue if snapshot is not None else None

    def _issue_links_json(
        self, issue: Issue, view: View, lagged: dict[str, IssueSnapshot] | None = None
    ) -> list[dict[str, Any]]:
        rendered = []
        for link in self.links if lagged is None else lagged[issue.key].links:
            if issue.key not in (link.source, link.target):
                continue
            link_type = link.type
            outward = link.source == issue.key
            other = self._related(link.target if outward else link.source, lagged)
            if other is None:
                continue
            rendered.append(
                {
                    "id": link.id,
                    "self": f"{view.api}/issueLink/{link.id}",
                    "type": self._link_type_json(link_type, view),
                    ("outwardIssue" if outward else "inwardIssue"): self._issue_brief(other, view),
                }
            )
        return rendered

    def _link_type_json(self, link_type: LinkType, view: View) -> dict[str, Any]:
        return {
            "id": link_type.id,
            "name": link_type.name,
            "inward": link_type.inward,
            "outward": link_type.outward,
            "self": f"{view.api}/issueLinkType/{link_type.id}",
        }

    def _fields_json(
        self, issue: Issue, view: View, lagged: dict[str, IssueSnapshot] | None = None
    ) -> dict[str, Any]:
        stored = issue.fields
        children = self._children.get(issue.key, ()) if lagged is None else lagged[issue.key].children
        assignee, reporter = stored.get("assignee"), stored["reporter"]
        rendered = {
            "summary": stored["summary"],
            "issuetype": self._issue_type_json(issue.issue_type, view),
            "project": self._project_json(issue.project, view),
            "status": self._status_json(self.statuses[issue.status], view),
            "priority": self._priority_json(stored.get("priority"), view),
            "assignee": self._user_json(assignee, view) if assignee else None,
            "reporter": self._user_json(reporter, view),
            "creator": self._user_json(issue.reporter, view),
            "created": format_instant(issue.created, view.zone),
            "updated": format_instant(issue.updated, view.zone),
            "statuscategorychangedate": format_instant(issue.status_category_changed, view.zone),
            "resolution": {"self": f"{view.api}/resolution/10000", **DONE_RESOLUTION}
            if issue.resolved
            else None,
            "resolutiondate": format_instant(issue.resolved, view.zone) if issue.resolved else None,
            "labels": list(stored.get("labels", [])),
            "description": stored.get("description"),
            "environment": stored.get("environment"),
            "duedate": stored.get("duedate"),
            "components": [],
            "fixVersions": [
                {"id": str(10000 + index), "name": name, "archived": False, "released": True}
                for index, name in enumerate(stored.get("fixVersions", []))
            ],
            "issuelinks": self._issue_links_json(issue, view, lagged),
            "subtasks": [
                self._issue_brief(child, view)
                for child in (self._related(key, lagged) for key in children)
                if child is not None and child.issue_type.subtask
            ],
        }
        parent = self._related(issue.parent, lagged) if issue.parent else None
        if parent is not None:
            rendered["parent"] = self._issue_brief(parent, view)
        for field_id in self.custom_fields:
            rendered[field_id] = stored.get(field_id)
        return rendered

    def _history_json(self, history: History, view: View) -> dict[str, Any]:
        return {
            "id": history.id,
            "author": self._user_json(history.author, view),
            "created": format_instant(history.created, view.zone),
            "items": [dict(item) for item in history.items],
        }

    def _issue_json(
        self,
        issue: Issue,
        view: View,
        selection: FieldSelection | None,
        with_changelog: bool,
        lagged: dict[str, IssueSnapshot] | None = None,
    ) -> dict[str, Any]:
        """The issue as Jira renders it; a None `selection` is Cloud's fields-less search: only the id.
        `lagged` is the site as a lagged search sees it, where `issue` is one of its snapshots."""
        rendered: dict[str, Any] = {"id": issue.id}
        if selection is not None:
            fields = {
                name: value
                for name, value in self._fields_json(issue, view, lagged).items()
                if selection.selects(name)
            }
            if issue.key in self.malformed_keys:
                fields["created"] = "not-a-date"
                fields.pop("status", None)
            rendered = {
                "expand": ISSUE_EXPAND,
                "id": issue.id,
                "self": f"{view.api}/issue/{issue.id}",
                "key": issue.key,
                "fields": fields,
            }
        if with_changelog:
            limit = self.embedded_changelog_limit
            newest = issue.histories[max(0, len(issue.histories) - limit) :]
            ordered = list(reversed(newest)) if self.cloud else newest
            rendered["changelog"] = {
                "startAt": 0,
                "maxResults": len(ordered),
                "total": len(issue.histories),
                "histories": [self._history_json(history, view) for history in ordered],
            }
        return rendered

    # HTTP --------------------------------------------------------------------------------------------

    def _build_routes(self) -> None:
        self.router.routes.clear()
        add = self.router.add
        api = r"/rest/api/(?P<version>[23])" if self.cloud else r"/rest/api/(?P<version>2)"
        issue = rf"{api}/issue/(?P<key>[^/]+)"
        add("GET", rf"{api}/serverInfo", self._http_server_info, "serverInfo", public=True)
        add("GET", rf"{api}/myself", self._http_myself, "myself")
        add("GET", rf"{api}/project", self._http_projects, "project")
        add("GET", rf"{api}/status", self._http_statuses, "status")
        if self.cloud:
            add("GET", rf"{api}/search/jql", self._http_search_jql, "search/jql")
            add("POST", rf"{api}/search/jql", self._http_search_jql, "search/jql", write=False)
            add("GET", rf"{api}/search", self._http_search_gone, "search")
            add("POST", rf"{api}/search", self._http_search_gone, "search", write=False)
        else:
            add("GET", rf"{api}/search", self._http_search_offset, "search")
            add("POST", rf"{api}/search", self._http_search_offset, "search", write=False)
        add("POST", rf"{api}/issue", self._http_create_issue, "issue")
        add("GET", issue, self._http_get_issue, "issue")
        add("PUT", issue, self._http_edit_issue, "issue")
        add("DELETE", issue, self._http_delete_issue, "issue")
        add("GET", rf"{issue}/changelog", self._http_changelog, "issue/changelog")
        add("GET", rf"{issue}/transitions", self._http_transitions, "issue/transitions")
        add("POST", rf"{issue}/transitions", self._http_do_transition, "issue/transitions")
        add("GET", rf"{issue}/properties", self._http_property_keys, "issue/properties")
        issue_property = rf"{issue}/properties/(?P<property>[^/]+)"
        add("GET", issue_property, self._http_get_property, "issue/properties")
        add("PUT", issue_property, self._http_set_property, "issue/properties")
        add("DELETE", issue_property, self._http_delete_property, "issue/properties")
        add("GET", rf"{issue}/remotelink", self._http_remote_links, "issue/remotelink")
        add("POST", rf"{issue}/remotelink", self._http_add_remote_link, "issue/remotelink")
        add("POST", rf"{api}/issueLink", self._http_link, "issueLink")
        add("GET", rf"{api}/issueLinkType", self._http_link_types, "issueLinkType")

    def authenticate(self, request: Request) -> User:
        if self.cloud:
            credentials = basic_credentials(request)
            user = credentials and next(
                (
                    user
                    for user in self.users
                    if user.email.lower() == credentials[0].lower() and user.token == credentials[1]
                ),
                None,
            )
            challenge = 'Basic realm="protected-by-api-token"'
        else:
            token = bearer_token(request)
            user = token and next((user for user in self.users if user.token == token), None)
            challenge = 'Bearer realm="Jira"'
        if not user:
            raise HttpError(
                self.error_response(
                    401,
                    NOT_AUTHENTICATED,
                    [("WWW-Authenticate", challenge), ("X-Seraph-LoginReason", "AUTHENTICATED_FAILED")],
                )
            )
        return user

    def error_response(self, status: int, message: str, headers: Iterable[tuple[str, str]] = ()) -> Response:
        return json_response({"errorMessages": [message], "errors": {}}, status, headers)

    def rate_limited_response(self, retry_after_seconds: int) -> Response:
        if self.cloud:
            reset_at = datetime.now(UTC) + timedelta(seconds=retry_after_seconds)
            headers = [
                ("Retry-After", str(retry_after_seconds)),
                ("X-RateLimit-Limit", "100"),
                ("X-RateLimit-Remaining", "0"),
                ("X-RateLimit-Reset", f"{reset_at:%Y-%m-%dT%H:%M}Z"),
                ("X-RateLimit-NearLimit", "true"),
                ("RateLimit-Reason", "jira-burst-based"),
            ]
        else:
            headers = [
                ("Retry-After", str(retry_after_seconds)),
                ("X-RateLimit-Limit", "100"),
                ("X-RateLimit-Remaining", "0"),
                ("X-RateLimit-Interval-Seconds", "1"),
                ("X-RateLimit-FillRate", "10"),
            ]
        return self.error_response(429, "Rate limit exceeded.", headers)

    def _view(self, request: Request) -> View:
        zone = ZoneInfo(request.user.time_zone if request.user else self.time_zone)
        return View(request.base_url, zone, request.params.get("version", "2"))

    def _http_server_info(self, request: Request) -> Response:
        view = self._view(request)
        version = (1001, 0, 0) if self.cloud else (9, 12, 2)
        return json_response(
            {
                "baseUrl": request.base_url,
                "version": ".".join(map(str, version)) + ("-SNAPSHOT" if self.cloud else ""),
                "versionNumbers": list(version),
                "deploymentType": "Cloud" if self.cloud else "Server",
                "buildNumber": 100282 if self.cloud else 9120002,
                "serverTime": format_instant(self._clock(), view.zone),
                "serverTitle": "Jira",
            }
        )

    def _http_myself(self, request: Request) -> Response:
        user_json = self._user_json(request.user, self._view(request), own_profile=True)
        return json_response(
            {
                **user_json,
                "locale": "en_US",
                "groups": {"size": 1, "items": []},
                "applicationRoles": {"size": 1, "items": []},
                "expand": "groups,applicationRoles",
            }
        )

    def _http_projects(self, request: Request) -> Response:
        view = self._view(request)
        return json_response([self._project_json(project, view) for project in self.projects.values()])

    def _http_statuses(self, request: Request) -> Response:
        view = self._view(request)
        return json_response([self._status_json(status, view) for status in self.statuses.values()])

    # Search.

    def _http_search_gone(self, request: Request) -> Response:
        raise JiraError(410, [LEGACY_SEARCH_GONE])

    def _http_search_jql(self, request: Request) -> Response:
        if request.method == "POST":
            body = request.json_object()
            jql, token, fields = body.get("jql", ""), body.get("nextPageToken"), body.get("fields")
            expand, max_results = body.get("expand", ""), body.get("maxResults")
            if fields is not None and not _is_string_list(fields):
                raise JiraError(400, ["'fields' must be a list of strings."])
            if not isinstance(expand, str):
                raise JiraError(400, ["'expand' must be a comma-separated string, e.g. \"changelog\"."])
        else:
            jql, token = request.arg("jql", ""), request.arg("nextPageToken")
            fields = _comma_separated(request.query["fields"]) if "fields" in request.query else None
            expand, max_results = request.arg("expand", ""), request.arg("maxResults")
        selection = FieldSelection.parse(fields) if fields is not None else None
        id_only = selection is None or (selection.names <= {"id", "key"} and not selection.include_all)
        # At least one per page: an empty page with a token would send a client round in circles.
        page_size = max(1, _page_size(max_results, CLOUD_ID_ONLY_PAGE_CAP if id_only else CLOUD_PAGE_CAP))
        query = self._parse_query(jql)
        if not query.conditions:
            raise JiraError(400, [UNBOUNDED_JQL])
        view = self._view(request)
        ordered, sort_keys, lagged = self._search(query, view.zone)
        fingerprint = hashlib.sha256(jql.encode()).hexdigest()[:16]
        start = 0
        if token is not None:
            start = bisect.bisect_right(sort_keys, _decode_page_token(token, fingerprint))
        page, rest = ordered[start : start + page_size], ordered[start + page_size :]
        with_changelog = "changelog" in _comma_separated([expand])
        response: dict[str, Any] = {
            "issues": [self._issue_json(issue, view, selection, with_changelog, lagged) for _, issue in page]
        }
        if rest:
            response["nextPageToken"] = _encode_page_token(fingerprint, page[-1][0])
        response["isLast"] = not rest
        return json_response(response)

    def _http_search_offset(self, request: Request) -> Response:
        if request.method == "POST":
            body = request.json_object()
            jql, start_at, max_results = body.get("jql", ""), body.get("startAt", 0), body.get("maxResults")
            fields, expand = body.get("fields"), body.get("expand", [])
            if fields is not None and not _is_string_list(fields):
                raise JiraError(400, ["'fields' must be a list of strings."])
            if not _is_string_list(expand):
                raise JiraError(400, ["'expand' must be a list of strings."])
        else:
            jql, start_at, max_results = (
                request.arg("jql", ""),
                request.arg("startAt", "0"),
                request.arg("maxResults"),
            )
            fields = _comma_separated(request.query["fields"]) if "fields" in request.query else None
            expand = _comma_separated(request.query.get("expand", []))
        start = _non_negative_int(start_at, "startAt")
        page_size = _page_size(max_results, DATACENTER_PAGE_CAP)
        selection = FieldSelection.parse(fields if fields is not None else ["*navigable"])
        view = self._view(request)
        ordered, _, lagged = self._search(self._parse_query(jql), view.zone)
        with_changelog = "changelog" in _comma_separated(expand)
        return json_response(
            {
                "expand": "schema,names",
                "startAt": start,
                "maxResults": page_size,
                "total": len(ordered),
                "issues": [
                    self._issue_json(issue, view, selection, with_changelog, lagged)
                    for _, issue in ordered[start : start + page_size]
                ],
            }
        )

    def _parse_query(self, jql: str) -> JqlQuery:
        try:
            return parse_jql(jql)
        except JqlError as error:
            raise JiraError(400, [str(error)]) from error

    def _search(
        self, query: JqlQuery, zone: ZoneInfo
    ) -> tuple[list[tuple[tuple[int, ...], Issue]], list, dict[str, IssueSnapshot] | None]:
        """Matching issues with their sort keys in the query's order (ties broken by id), the keys, and
        under a search lag the site as search sees it (what to render links, parents, sub-tasks from).

        Cached until the next change, so paging through N issues costs N, not N per page; under a lag
        also only until the lagged instant reaches the next change search has yet to see.
        """
        if self._search_lag:
            return self._lagged_search(query, zone)
        cached = self._search_cache.get((query, zone))
        if cached is not None and cached[0] == self._revision:
            return cached[1], cached[2], None
        ordered = self._ordered_matches(query, zone, self.issues.values())
        sort_keys = [sort_key for sort_key, _ in ordered]
        self._search_cache[(query, zone)] = (self._revision, ordered, sort_keys)
        return ordered, sort_keys, None

    def _lagged_search(
        self, query: JqlQuery, zone: ZoneInfo
    ) -> tuple[list[tuple[tuple[int, ...], Issue]], list, dict[str, IssueSnapshot]]:
        as_of = self._clock() - self._search_lag
        cache_key = (query, zone, self._search_lag)
        cached = self._search_cache.get(cache_key)
        if cached is not None and cached[0] == self._revision and cached[1] <= as_of < cached[2]:
            return cached[3], cached[4], cached[5]
        visible, next_change = self._snapshots_as_of(as_of)
        issues = [snapshot.issue for snapshot in visible.values() if snapshot.issue is not None]
        ordered = self._ordered_matches(query, zone, issues)
        sort_keys = [sort_key for sort_key, _ in ordered]
        self._search_cache[cache_key] = (self._revision, as_of, next_change, ordered, sort_keys, visible)
        return ordered, sort_keys, visible

    def _ordered_matches(
        self, query: JqlQuery, zone: ZoneInfo, issues: Iterable[Issue]
    ) -> list[tuple[tuple[int, ...], Issue]]:
        tests = [self._condition_test(condition, zone) for condition in query.conditions]
        order_by = query.order_by or (("key", True),)  # Jira's default order: newest key first
        project_rank = {key: rank for rank, key in enumerate(sorted(self.projects))}

        def sort_key(issue: Issue) -> tuple[int, ...]:
            parts: list[int] = []
            for field_name, descending in order_by:
                if field_name == "key":
                    values = [project_rank[issue.project.key], issue.number]
                else:
                    values = [int(getattr(issue, field_name).timestamp() * 1000)]
                parts.extend(-value if descending else value for value in values)
            return (*parts, int(issue.id))

        matching = [(sort_key(issue), issue) for issue in issues if all(test(issue) for test in tests)]
        return sorted(matching, key=lambda pair: pair[0])

    def _condition_test(self, condition: JqlCondition, zone: ZoneInfo) -> Callable[[Issue], bool]:
        if condition.field == "project":
            keys = set()
            for value in condition.values:
                try:
                    keys.add(self._project(value).key)
                except JiraError as error:
                    raise JiraError(
                        400, [f"The value '{value}' does not exist for the field 'project'."]
                    ) from error
            return lambda issue: issue.project.key in keys
        if condition.field == "key":
            wanted = set()
            for value in condition.values:
                issue = self._find_issue(value) if ISSUE_KEY.fullmatch(value) else None
                if issue is None:
                    raise JiraError(400, [f"An issue with key '{value}' does not exist for field 'key'."])
                wanted.add(issue.key)
            return lambda issue: issue.key in wanted
        literal = condition.values[0]
        bound = parse_jql_date(literal, zone)
        if bound is None:
            raise JiraError(
                400,
                [
                    f"Date value '{literal}' for field '{condition.field}' is invalid. "
                    "Valid formats include: "
                    "'yyyy/MM/dd HH:mm', 'yyyy-MM-dd HH:mm', 'yyyy/MM/dd', 'yyyy-MM-dd', "
                    "or a period format e.g. '-5d', '4w 2d'."
                ],
            )
        compare = {
            ">=": lambda instant: instant >= bound,
            ">": lambda instant: instant > bound,
            "<=": lambda instant: instant <= bound,
            "<": lambda instant: instant < bound,
        }[condition.operator]
        return lambda issue: compare(getattr(issue, condition.field))

    # Issues.

    def _http_get_issue(self, request: Request) -> Response:
        issue = self._issue(request.params["key"])
        fields = _comma_separated(request.query["fields"]) if "fields" in request.query else ["*all"]
        with_changelog = "changelog" in _comma_separated(request.query.get("expand", []))
        rendered = self._issue_json(issue, self._view(request), FieldSelection.parse(fields), with_changelog)
        if "properties" in request.query:  # keys, or *all; -key leaves one out
            requested = _comma_separated(request.query["properties"])
            excluded = {name[1:] for name in requested if name.startswith("-")}
            named = [name for name in requested if not name.startswith(("-", "*"))]
            rendered["properties"] = {
                name: issue.properties[name]
                for name in (list(issue.properties) if "*all" in requested else named)
                if name in issue.properties and name not in excluded
            }
        return json_response(rendered)

    def _http_create_issue(self, request: Request) -> Response:
        body = request.json_object()
        properties = self._parse_properties(body.get("properties"))
        raw_fields = dict(body.get("fields") or {})
        project_ref, type_ref = raw_fields.pop("project", None), raw_fields.pop("issuetype", None)
        errors = {}
        project = None
        if isinstance(project_ref, dict) and (project_ref.get("key") or project_ref.get("id")):
            project = next(
                (
                    p
                    for p in self.projects.values()
                    if project_ref.get("key") == p.key or project_ref.get("id") == p.id
                ),
                None,
            )
        if project is None:
            errors["project"] = "valid project is required"
        issue_type = None
        if isinstance(type_ref, dict) and project is not None:
            issue_type = next(
                (
                    self.issue_types[name]
                    for name in project.issue_types
                    if type_ref.get("name") == name or type_ref.get("id") == self.issue_types[name].id
                ),
                None,
            )
        if issue_type is None:
            errors["issuetype"] = "valid issue type is required"
        if errors and not raw_fields.get("summary"):
            errors["summary"] = "You must specify a summary of the issue."
        errors.update(self._rich_text_errors(request, raw_fields))
        if errors:
            raise JiraError(400, errors=errors)
        issue = self._create(
            project, issue_type, raw_fields, reporter=request.user, at=self._clock(), properties=properties
        )
        view = self._view(request)
        return json_response({"id": issue.id, "key": issue.key, "self": f"{view.api}/issue/{issue.id}"}, 201)

    def _rich_text_errors(self, request: Request, raw_fields: dict[str, Any]) -> dict[str, str]:
        """On /rest/api/3 rich-text fields must be Atlassian Document Format, not strings."""
        if request.params.get("version") != "3":
            return {}
        return {name: ADF_REQUIRED for name in RICH_TEXT_FIELDS if isinstance(raw_fields.get(name), str)}

    def _http_edit_issue(self, request: Request) -> Response:
        issue = self._issue(request.params["key"])
        body = request.json_object()
        raw_fields = dict(body.get("fields") or {})
        for field_id, operations in (body.get("update") or {}).items():
            raw_fields[field_id] = self._apply_update_operations(issue, field_id, operations)
        errors = self._rich_text_errors(request, raw_fields)
        if errors:
            raise JiraError(400, errors=errors)
        items = self._set_fields(issue, self._parse_fields(issue, raw_fields))
        self._commit(issue, self._clock(), request.user, items)
        return empty_response(204)

    def _apply_update_operations(self, issue: Issue, field_id: str, operations: Any) -> Any:
        """Jira's ``update`` verbs: add/remove/set on labels, set on any editable field."""
        value = list(issue.fields.get("labels", [])) if field_id == "labels" else None
        for operation in operations if isinstance(operations, list) else [operations]:
            if not isinstance(operation, dict) or len(operation) != 1:
                raise JiraError(400, errors={field_id: "Each update operation is one {verb: value} object."})
            ((verb, argument),) = operation.items()
            if verb == "set":
                value = argument
            elif field_id == "labels" and verb == "add" and argument not in value:
                value.append(argument)
            elif field_id == "labels" and verb == "remove":
                value = [label for label in value if label != argument]
            else:
                raise JiraError(
                    400, errors={field_id: f"The fake Jira does not support '{verb}' on '{field_id}'."}
                )
        return value

    def _http_delete_issue(self, request: Request) -> Response:
        issue = self._issue(request.params["key"])
        has_subtasks = any(
            child.parent == issue.key and child.issue_type.subtask for child in self.issues.values()
        )
        if has_subtasks and request.arg("deleteSubtasks", "false").lower() != "true":
            raise JiraError(
                400,
                [
                    f"The issue '{issue.key}' has subtasks. "
                    "You must specify the 'deleteSubtasks' parameter to delete it."
                ],
            )
        self.delete(issue.key)
        return empty_response(204)

    def _http_changelog(self, request: Request) -> Response:
        issue = self._issue(request.params["key"])
        start = _non_negative_int(request.arg("startAt", "0"), "startAt")
        page_size = max(
            1, _page_size(request.arg("maxResults"), CHANGELOG_PAGE_CAP, default=CHANGELOG_PAGE_CAP)
        )
        view = self._view(request)
        values = issue.histories[start : start + page_size]
        is_last = start + page_size >= len(issue.histories)
        page_url = f"{view.api}/issue/{issue.key}/changelog?maxResults={page_size}&startAt="
        return json_response(
            {
                "self": f"{page_url}{start}",
                **({} if is_last else {"nextPage": f"{page_url}{start + page_size}"}),
                "maxResults": page_size,
                "startAt": start,
                "total": len(issue.histories),
                "isLast": is_last,
                "values": [self._history_json(history, view) for history in values],
            }
        )

    # Entity properties: apps' data on an issue, outside its fields; setting one is no edit (neither
    # `updated` nor the changelog move), so search snapshots ignore them.

    def _http_property_keys(self, request: Request) -> Response:
        issue = self._issue(request.params["key"])
        view = self._view(request)
        return json_response(
            {
                "keys": [
                    {"self": self._property_url(issue, name, view), "key": name} for name in issue.properties
                ]
            }
        )

    def _http_get_property(self, request: Request) -> Response:
        issue = self._issue(request.params["key"])
        name = request.params["property"]
        if name not in issue.properties:
            raise JiraError(404, [f"The property with key '{name}' does not exist."])
        return json_response({"key": name, "value": issue.properties[name]})

    def _http_set_property(self, request: Request) -> Response:
        issue = self._issue(request.params["key"])
        created = self.set_issue_property(issue.key, request.params["property"], request.json())
        return empty_response(201 if created else 200)

    def _http_delete_property(self, request: Request) -> Response:
        issue = self._issue(request.params["key"])
        name = request.params["property"]
        if name not in issue.properties:
            raise JiraError(404, [f"The property with key '{name}' does not exist."])
        del issue.properties[name]
        return empty_response(204)

    def _property_url(self, issue: Issue, name: str, view: View) -> str:
        return f"{view.api}/issue/{issue.key}/properties/{quote(name, safe='')}"

    # Transitions.

    def _available_transitions(self, issue: Issue) -> list[tuple[str, TransitionRule]]:
        return [
            (transition_id, rule)
            for transition_id, rule in issue.project.transitions
            if rule.to != issue.status and (not rule.sources or issue.status in rule.sources)
        ]

    def _http_transitions(self, request: Request) -> Response:
        issue = self._issue(request.params["key"])
        view = self._view(request)
        return json_response(
            {
                "expand": "transitions",
                "transitions": [
                    {
                        "id": transition_id,
                        "name": rule.name,
                        "to": self._status_json(self.statuses[rule.to], view),
                        "hasScreen": False,
                        "isGlobal": not rule.sources,
                        "isInitial": False,
                        "isAvailable": True,
                        "isConditional": False,
                        "isLooped": False,
                    }
                    for transition_id, rule in self._available_transitions(issue)
                ],
            }
        )

    def _http_do_transition(self, request: Request) -> Response:
        issue = self._issue(request.params["key"])
        body = request.json_object()
        transition = body.get("transition")
        transition_id = str(transition.get("id", "")) if isinstance(transition, dict) else ""
        if not transition_id:
            raise JiraError(400, ["Missing 'transition' identifier"])
        rule = dict(self._available_transitions(issue)).get(transition_id)
        if rule is None:
            raise JiraError(400, [f"Transition id '{transition_id}' is not valid for this issue."])
        raw_fields = dict(body.get("fields") or {})
        values = self._parse_fields(issue, raw_fields)
        at = self._clock()
        # One history for the fields set on the transition screen and the status change, as in Jira.
        items = self._set_fields(issue, values) + self._status_items(issue, rule.to, at)
        self._commit(issue, at, request.user, items)
        return empty_response(204)

    # Links.

    def _http_link(self, request: Request) -> Response:
        body = request.json_object()
        link_type = body.get("type") or {}
        inward, outward = body.get("inwardIssue") or {}, body.get("outwardIssue") or {}
        type_name = link_type.get("name") or next(
            (kept.name for kept in self.link_types.values() if kept.id == str(link_type.get("id"))), ""
        )
        # Jira creates the link from inwardIssue to outwardIssue: {"type": "Blocks", "inwardIssue": A,
        # "outwardIssue": B} reads "A blocks B", which surprises nearly everyone the first time.
        source = self._issue(str(inward.get("key") or inward.get("id") or ""))
        target = self._issue(str(outward.get("key") or outward.get("id") or ""))
        link_id = self._link(source, type_name, target, self._clock(), request.user)
        view = self._view(request)
        return empty_response(201, [("Location", f"{view.api}/issueLink/{link_id}")])

    def _http_link_types(self, request: Request) -> Response:
        view = self._view(request)
        return json_response(
            {
                "issueLinkTypes": [
                    self._link_type_json(link_type, view) for link_type in self.link_types.values()
                ]
            }
        )

    def _http_remote_links(self, request: Request) -> Response:
        issue = self._issue(request.params["key"])
        view = self._view(request)
        return json_response([self._remote_link_json(issue, remote, view) for remote in issue.remote_links])

    def _http_add_remote_link(self, request: Request) -> Response:
        issue = self._issue(request.params["key"])
        remote, created = self._put_remote_link(issue, request.json_object(), self._clock(), request.user)
        view = self._view(request)
        return json_response(
            {"id": remote.id, "self": f"{view.api}/issue/{issue.key}/remotelink/{remote.id}"},
            201 if created else 200,
        )

    def _remote_link_json(self, issue: Issue, remote: RemoteLink, view: View) -> dict[str, Any]:
        return {
            "id": remote.id,
            "self": f"{view.api}/issue/{issue.key}/remotelink/{remote.id}",
            **({"globalId": remote.global_id} if remote.global_id else {}),
            "application": remote.body.get("application") or {},
            **({"relationship": remote.body["relationship"]} if "relationship" in remote.body else {}),
            "object": remote.body["object"],
        }

    # Control endpoints (fake-only) -------------------------------------------------------------------

    def _control_add_user(self, request: Request) -> Response:
        body = request.json_object()
        user = self.add_user(
            _required(body, "email"),
            _required(body, "token"),
            display_name=body.get("display_name"),
            time_zone=body.get("time_zone"),
            account_id=body.get("account_id"),
            name=body.get("name"),
        )
        return json_response({"accountId": user.account_id, "name": user.name, "key": user.key}, 201)

    def _control_add_project(self, request: Request) -> Response:
        body = request.json_object()
        transitions = body.get("transitions")
        project = self.add_project(
            _required(body, "key"),
            name=body.get("name"),
            statuses=body.get("statuses"),
            transitions=None
            if transitions is None
            else [
                TransitionRule(_required(t, "name"), _required(t, "to"), tuple(t.get("from", ())))
                for t in transitions
            ],
            issue_types=body.get("issue_types", DEFAULT_ISSUE_TYPES),
        )
        return json_response({"id": project.id, "key": project.key}, 201)

    def _control_add_issue(self, request: Request) -> Response:
        body = request.json_object()
        key = self.add_issue(
            _required(body, "project"),
            _required(body, "issue_type"),
            _required(body, "summary"),
            status=body.get("status"),
            created=_parse_iso_instant(body["created"], "created") if body.get("created") else None,
            updated=_parse_iso_instant(body["updated"], "updated") if body.get("updated") else None,
            fields=body.get("fields"),
            histories=[
                (
                    _parse_iso_instant(_required(change, "at"), "at"),
                    _required(change, "from"),
                    _required(change, "to"),
                    change.get("author"),
                )
                for change in body.get("histories", ())
            ],
            parent=body.get("parent"),
            reporter=body.get("reporter"),
            properties=_optional_object(body, "properties"),
        )
        return json_response({"id": self.issues[key].id, "key": key}, 201)

    def _control_transition(self, request: Request) -> Response:
        body = request.json_object()
        at = _parse_iso_instant(body["at"], "at") if body.get("at") else None
        self.transition(request.params["key"], _required(body, "to"), at=at, author=body.get("author"))
        return empty_response(204)

    def _control_edit(self, request: Request) -> Response:
        body = request.json_object()
        at = _parse_iso_instant(body["at"], "at") if body.get("at") else None
        self.edit(request.params["key"], _required(body, "fields"), at=at, author=body.get("author"))
        return empty_response(204)

    def _control_link(self, request: Request) -> Response:
        body = request.json_object()
        at = _parse_iso_instant(body["at"], "at") if body.get("at") else None
        link_id = self.link(
            _required(body, "source"),
            _required(body, "type"),
            _required(body, "target"),
            at,
            body.get("author"),
        )
        return json_response({"id": link_id}, 201)


@dataclass(frozen=True)
class FieldSelection:
    """Jira's ``fields`` parameter: ``*all``/``*navigable``, names, and ``-name`` exclusions."""

    include_all: bool
    names: frozenset[str]
    excluded: frozenset[str]

    @classmethod
    def parse(cls, requested: Iterable[str]) -> FieldSelection:
        requested = [name.strip() for name in requested if name.strip()]
        excluded = frozenset(name[1:] for name in requested if name.startswith("-"))
        included = [name for name in requested if not name.startswith("-")]
        include_all = any(name in {"*all", "*navigable"} for name in included) or (
            not included and bool(excluded)
        )
        return cls(include_all, frozenset(included), excluded)

    def selects(self, name: str) -> bool:
        return name not in self.excluded and (self.include_all or name in self.names)


def _item(
    field_name: str,
    field_type: str,
    field_id: str | None,
    from_value: Any,
    from_string: Any,
    to_value: Any,
    to_string: Any,
) -> dict[str, Any]:
    """A changelog item; Link, parent and remote-link items carry no fieldId, as recorded."""
    item: dict[str, Any] = {"field": field_name, "fieldtype": field_type}
    if field_id is not None:
        item["fieldId"] = field_id
    item.update({"from": from_value, "fromString": from_string, "to": to_value, "toString": to_string})
    return item


def _link_item(description: str, other_key: str) -> dict[str, Any]:
    return _item("Link", "jira", None, None, None, other_key, f"{description} {other_key}")


def _remote_item(
    from_id: int | None, before: str | None, after: str, to_id: int | None = None
) -> dict[str, Any]:
    """Creation has from null; an update names the same link id on both sides, as recorded."""
    link_id = to_id if to_id is not None else from_id
    return _item("RemoteIssueLink", "jira", None, _text(from_id), before, str(link_id), after)


def _remote_link_text(body: dict[str, Any]) -> str:
    application = (body.get("application") or {}).get("name") or "Web Link"
    return f'This issue links to "{body["object"]["title"]} ({application})"'


def _drop_superseded(kept: list[IssueSnapshot], as_of: datetime) -> None:
    """Drop the states older than the one search sees at `as_of`: no later search can see them."""
    seen = bisect.bisect_right(kept, as_of, key=lambda snapshot: snapshot.indexed)
    if seen > 1:
        del kept[: seen - 1]


def _property_key(key: str) -> str:
    if not key:
        raise JiraError(400, ["The property key cannot be empty."])
    if len(key) > PROPERTY_KEY_MAX:
        raise JiraError(400, [f"The property key cannot be longer than {PROPERTY_KEY_MAX} characters."])
    return key


def _property_value(value: Any) -> Any:
    if value is None:
        raise JiraError(400, ["The property value cannot be empty."])
    if len(json.dumps(value, ensure_ascii=False)) > PROPERTY_VALUE_MAX:
        raise JiraError(400, [f"The property value cannot be longer than {PROPERTY_VALUE_MAX} characters."])
    return value


def _priority_id(name: str | None) -> str | None:
    return next((priority_id for priority_id, known in PRIORITIES.items() if known == name), None)


def _text(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False) if isinstance(value, dict | list) else str(value)


def _is_iso_date(text: str) -> bool:
    try:
        date.fromisoformat(text)
    except ValueError:
        return False
    return len(text) == len("yyyy-MM-dd")  # fromisoformat also takes the compact 20260301


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as error:
        raise JiraError(400, errors={"timeZone": f"Unknown time zone '{name}'."}) from error


def _is_string_list(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(item, str) for item in value)


def _comma_separated(values: Iterable[str]) -> list[str]:
    return [part.strip() for value in values for part in value.split(",") if part.strip()]


def _non_negative_int(value: Any, name: str) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError) as error:
        raise JiraError(400, [f"'{name}' must be a number, not {value!r}."]) from error
    if number < 0:
        raise JiraError(400, [f"'{name}' must not be negative."])
    return number


def _page_size(requested: Any, cap: int, default: int = DEFAULT_PAGE_SIZE) -> int:
    """Jira silently lowers a too-large maxResults to its cap."""
    if requested is None or requested == "":
        return min(default, cap)
    return min(_non_negative_int(requested, "maxResults"), cap)


def _encode_page_token(fingerprint: str, after: tuple[int, ...]) -> str:
    payload = json.dumps({"query": fingerprint, "after": list(after)}, separators=(",", ":"))
    return base64.urlsafe_b64encode(payload.encode()).decode().rstrip("=")


def _decode_page_token(token: Any, fingerprint: str) -> tuple[int, ...]:
    """The position a token points after; a token of another query (or garbage) is a 400."""
    try:
        payload = json.loads(base64.urlsafe_b64decode(str(token) + "=" * (-len(str(token)) % 4)))
        if payload["query"] == fingerprint:
            return tuple(int(part) for part in payload["after"])
    except (binascii.Error, ValueError, KeyError, TypeError):
        pass
    raise JiraError(400, ["The provided next page token is invalid or expired."])


def _optional_object(body: dict[str, Any], name: str) -> dict[str, Any] | None:
    value = body.get(name)
    if value is not None and not isinstance(value, dict):
        raise InvalidRequestBody(f"'{name}' must be a JSON object.")
    return value


def _required(body: Any, name: str) -> Any:
    if not isinstance(body, dict) or body.get(name) in (None, ""):
        raise InvalidRequestBody(f"'{name}' is required.")
    return body[name]
