"""A faithful fake of the Targetprocess REST API v1 (JSON), for tests and the demo.

Shapes follow recorded v1 payloads (yltsrc/targetprocess-ruby cassettes; connectors-reference.md §6)
and the history docs: ``{"Prev": "...", "Next": "...", "Items": [...]}`` pages whose items carry
``ResourceType`` and ``Id`` and nested references such as
``{"ResourceType": "EntityState", "Id": 57, "Name": "New"}``; Microsoft JSON dates
``"\\/Date(1374757420000-0500)\\/"`` (epoch ms, then the server zone's offset at that instant);
custom fields as ``[{"Name", "Type", "Value"}]``; errors as
``{"Status": "BadRequest", "Message": "...", "Type": "...", "ErrorId": "..."}``.

Auth
    ``?access_token=<personal access token>`` on any request, or Basic ``login:password``; else 401.
    Without ``format=json`` or ``Accept: application/json`` the API answers XML, as Targetprocess does
    (here only a stub saying so: the fake speaks JSON).

Resources (all under /api/v1)
    ``Epics``, ``Features``, ``UserStories``, ``Requests``, ``Bugs``: GET the collection (where, include,
    orderBy/orderByDesc, take/skip), GET/POST/DELETE ``/{id}``, POST the collection (create, or update
    when the body has ``Id``), GET ``/{id}/History`` (simple history).
    ``{Type}SimpleHistories`` (one record per change of EntityState or Effort: Date, EntityState,
    Modifier, the entity reference), ``EntityStates`` (per entity type and process), ``Relations``
    (GET, POST: Master, Slave, RelationType), ``Projects`` (with their Process), ``Generals/{id}`` (any
    entity with its EntityType), ``Users/LoggedUser``.
    Ids: entities and projects share one sequence (Targetprocess's "General" ids).

Paging
    ``take`` defaults to 25 and is clamped to 1000; ``skip`` offsets. ``Next`` (and ``Prev``) repeat the
    request's query with the next ``skip``; no ``Next`` on the last page. The order is the requested
    field, then ``Id``, so items sharing one ModifyDate never straddle a page boundary unstably.

where (parsed strictly; anything else is a 400 in Targetprocess's error shape)
    Clauses ``Field op value`` joined by ``and`` (v1 has no ``or``), each optionally in parentheses.
    Entities: ``Id eq|ne|in``, ``ModifyDate|CreateDate gt|gte|lt|lte|eq '<date>'``, ``Project.Id eq|in``,
    ``EntityState.Name eq|ne``. Histories: ``{Type}.Id eq|in``, ``Date gt|gte|lt|lte``, ``Id``.
    EntityStates: ``EntityType.Name eq``, ``Process.Id eq``, ``Name eq``. Relations: ``Master.Id``,
    ``Slave.Id`` ``eq|in``. Date literals ``yyyy-MM-dd[ HH:mm[:ss[.fff]]]`` (or with ``T``) are read in the
    server's time zone; ``gt`` is strict at the millisecond.
include: ``[Id,Name,Master[Id,Name,EntityType]]``: only those fields (plus ResourceType and Id); a nested
    list expands a reference to the referenced object's fields.

Programmatic API (tests and the demo generator)
    ``add_user``, ``add_project``, ``add_item`` (backdated, with a state history), ``transition``,
    ``edit``, ``relate``, ``delete``, ``state_names``; faults ``rate_limit``, ``fail``, ``slow``,
    ``malformed``, ``clear_faults``; ``requests`` (Counter keyed "METHOD route"), ``writes``, ``queries``
    (the query of every API request, for asserting what a client sent); ``now`` is the clock.

Control endpoints: FAKE-ONLY. No credentials; never faulted or counted.
    POST /_fake/reset     {"time_zone"?}: an empty site with the demo user, the Scrum process, no projects
    POST /_fake/faults    {"rate_limit": {"count", "retry_after"?}, "fail": {"count", "status"?},
                           "slow": {"count", "seconds"}, "malformed": [id, ...], "clear": true}
    GET  /_fake/stats     request counters, writes, pending faults, entity count
    POST /_fake/clock     {"now": "2026-03-01T10:30:00+00:00"} freezes the clock; {"now": null} frees it
    POST /_fake/users     {"login", "password"?, "token"?, "first_name"?, "last_name"?, "email"?}
    POST /_fake/projects  {"name", "abbreviation"?, "created"?}                   -> 201 {"Id"}
    POST /_fake/items     {"entity_type", "name", "project"?, "state"?, "created"?, "modified"?,
                           "description"?, "owner"?, "parent"?, "custom_fields"?, "effort"?, "tags"?,
                           "history"?: [{"at", "to", "author"?}]}                    -> 201 {"Id"}
    POST /_fake/items/{id}/transition   {"to", "at"?, "author"?}
    POST /_fake/items/{id}/edit         {"fields", "at"?, "author"?}   (fields as in the API's bodies)
    POST /_fake/relations {"master", "slave", "relation_type"?, "at"?}          -> 201 {"Id"}
Instants in control bodies are ISO 8601 with an offset; authors are logins.
"""

from __future__ import annotations

import itertools
import re
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlencode
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
    empty_response,
    json_response,
    locked,
)

DEMO_LOGIN = "demo"
DEMO_PASSWORD = "fake-tp-password"  # noqa: S105 (a published demo credential of the fake)
DEMO_TOKEN = "fake-tp-access-token"  # noqa: S105

# name -> (collection, EntityType id, parent references it may carry)
ENTITY_TYPES: dict[str, tuple[str, int, tuple[str, ...]]] = {
    "Epic": ("Epics", 27, ()),
    "Feature": ("Features", 9, ("Epic",)),
    "UserStory": ("UserStories", 4, ("Feature",)),
    "Request": ("Requests", 17, ()),
    "Bug": ("Bugs", 8, ("UserStory", "Feature")),
}
COLLECTIONS = {collection: name for name, (collection, _, _) in ENTITY_TYPES.items()}
PROJECT_TYPE_ID = 1
DEFAULT_WORKFLOWS = {
    "Epic": ("New", "Planned", "In Progress", "Done"),
    "Feature": ("New", "Planned", "In Progress", "Done"),
    "UserStory": ("Open", "Planned", "In Progress", "In Testing", "Done"),
    "Request": ("New", "Open", "In Progress", "Done", "Rejected"),
    "Bug": ("Open", "In Progress", "Fixed", "Done"),
}
FINAL_STATES = frozenset({"Done", "Rejected"})
RELATION_TYPES = {"Dependency": 1, "Relation": 2, "Blocker": 3, "Link": 4, "Duplicate": 5}
DEFAULT_TAKE = 25
MAX_TAKE = 1000
STATUS_NAMES = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    429: "TooManyRequests",
    500: "InternalServerError",
    502: "BadGateway",
    503: "ServiceUnavailable",
    504: "GatewayTimeout",
}
DATE_LITERAL_FORMATS = (
    "%Y-%m-%d",
    "%Y-%m-%d %H:%M",
    "%Y-%m-%d %H:%M:%S",
    "%Y-%m-%d %H:%M:%S.%f",
    "%Y-%m-%dT%H:%M",
    "%Y-%m-%dT%H:%M:%S",
    "%Y-%m-%dT%H:%M:%S.%f",
)
API = "/api/v1"
_WIRE_DATE = re.compile(r'"/Date\((-?\d+[+-]\d{4})\)/"')


class TargetprocessError(HttpError):
    """Targetprocess's error body with its HTTP status; raised by the programmatic API too."""

    def __init__(
        self, status: int, message: str, error_type: str = "Tp.Web.Mvc.Exceptions.BadRequestException"
    ):
        self.message = message
        super().__init__(_error_response(status, message, error_type))
        self.args = (message,)


def _error_response(
    status: int, message: str, error_type: str = "", headers: Iterable[tuple[str, str]] = ()
) -> Response:
    return json_response(
        {
            "Status": STATUS_NAMES.get(status, str(status)),
            "Message": message,
            "Type": error_type or "Tp.Web.Mvc.Exceptions.HttpException",
            "ErrorId": str(uuid.uuid4()),
        },
        status,
        headers,
    )


def _dto(resource: str) -> str:
    return f"'{{ {resource} : Tp.Rest.Model.Resources.{resource}Dto }}'"


def _not_found_field(name: str, resource: str) -> TargetprocessError:
    return TargetprocessError(
        400,
        f"Error during parameters parsing: Could not find '{name}' in {_dto(resource)}",
        "Tp.Rest.RequestParametersParsingException",
    )


def to_tp_instant(value: datetime) -> datetime:
    """UTC at Targetprocess's millisecond precision; naive datetimes are refused."""
    if not isinstance(value, datetime) or value.tzinfo is None:
        raise ValueError(f"Expected an aware datetime (with tzinfo), got {value!r}")
    return value.astimezone(UTC).replace(microsecond=value.microsecond // 1000 * 1000)


def format_tp_date(instant: datetime | None, zone: ZoneInfo) -> str | None:
    """``/Date(ms+hhmm)/``: epoch milliseconds, then `zone`'s offset at that instant."""
    if instant is None:
        return None
    milliseconds = int((instant - datetime(1970, 1, 1, tzinfo=UTC)).total_seconds() * 1000)
    return f"/Date({milliseconds}{instant.astimezone(zone):%z})/"


def _iso(text: Any, name: str) -> datetime:
    try:
        return to_tp_instant(datetime.fromisoformat(text))
    except (TypeError, ValueError) as error:
        raise InvalidRequestBody(
            f"'{name}' must be an ISO 8601 instant with an offset, not {text!r}"
        ) from error


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as error:
        raise ValueError(f"unknown time zone {name!r}") from error


# Records --------------------------------------------------------------------------------------------


@dataclass
class User:
    id: int
    login: str
    password: str | None
    first_name: str
    last_name: str
    email: str
    tokens: list[str]
    created: datetime


@dataclass
class Process:
    id: int
    name: str


@dataclass
class State:
    id: int
    name: str
    entity_type: str
    process_id: int
    numeric_priority: float
    is_initial: bool
    is_final: bool


@dataclass
class Project:
    id: int
    name: str
    abbreviation: str
    process_id: int
    created: datetime


@dataclass
class HistoryRecord:
    id: int
    date: datetime
    state_id: int
    modifier: User
    effort: float


@dataclass
class Entity:
    id: int
    entity_type: str
    name: str
    description: str
    project_id: int
    state_id: int
    owner: User
    created: datetime
    modified: datetime
    effort: float = 0.0
    tags: str = ""
    numeric_priority: float = 0.0
    parents: dict[str, int] = field(default_factory=dict)
    custom_fields: dict[str, Any] = field(default_factory=dict)
    history: list[HistoryRecord] = field(default_factory=list)


@dataclass
class Relation:
    id: int
    master: int
    slave: int
    relation_type: str
    created: datetime


# where / include / orderBy ---------------------------------------------------------------------------

_TOKEN = re.compile(
    r"""\s*(?:(?P<string>'(?:[^']|'')*'|"(?:[^"\\]|\\.)*")|(?P<punct>[(),])|(?P<word>[^\s'"(),]+))"""
)
COMPARISONS = ("eq", "ne", "gt", "gte", "lt", "lte")


@dataclass(frozen=True)
class Condition:
    field: str
    op: str
    values: tuple[str, ...]


def _tokenize(text: str) -> list[tuple[str, str]]:
    return regex_tokens(_TOKEN, text, _unquote)


def _unquote(quoted: str) -> str:
    """'it''s' (doubled quotes) or "say \\"hi\\"" (backslashes)."""
    if quoted[0] == "'":
        return quoted[1:-1].replace("''", "'")
    return re.sub(r"\\(.)", r"\1", quoted[1:-1])


def parse_where(text: str) -> list[Condition]:
    """Clauses joined by `and`; ValueError (the 400's message) for anything else."""
    tokens = _tokenize(text)
    position = 0

    def take(kind: str | None = None, what: str = "a value") -> str:
        nonlocal position
        if position >= len(tokens):
            raise ValueError(f"expected {what} but the expression ended")
        token_kind, value = tokens[position]
        if kind is not None and token_kind != kind:
            raise ValueError(f"expected {what} but got '{value}'")
        position += 1
        return value

    def at(mark: str) -> bool:
        return position < len(tokens) and tokens[position] == ("punct", mark)

    conditions: list[Condition] = []
    depth = 0
    while position < len(tokens):
        if conditions:
            joiner = take("word", "'and'").lower()
            if joiner == "or":
                raise ValueError("'or' is not supported in REST API v1 where clauses; use 'and'")
            if joiner != "and":
                raise ValueError(f"expected 'and' but got '{joiner}'")
        while at("("):
            take()
            depth += 1
        name = take("word", "a field name")
        operator = take("word", "an operator").lower()
        if operator == "in":
            take("punct", "'('")
            values = [take(what="a value")]
            while (separator := take("punct", "',' or ')'")) == ",":
                values.append(take(what="a value"))
            if separator != ")":
                raise ValueError(f"expected ')' but got '{separator}'")
        elif operator in COMPARISONS:
            values = [take(what="a value")]
        else:
            raise ValueError(f"the fake Targetprocess does not support the operator '{operator}'")
        conditions.append(Condition(name, operator, tuple(values)))
        while depth and at(")"):
            take()
            depth -= 1
    if depth:
        raise ValueError("expected ')' before the end of the expression")
    if not conditions:
        raise ValueError("the where expression is empty")
    return conditions


def parse_include(text: str) -> list[tuple[str, list | None]]:
    """``[Id,Name,Master[Id,Name]]`` -> [("Id", None), ("Name", None), ("Master", [("Id", None), ...])]."""
    text = text.strip()
    position = 0

    def parse_list() -> list[tuple[str, list | None]]:
        nonlocal position
        if position >= len(text) or text[position] != "[":
            raise ValueError("include must be a bracketed list such as [Id,Name]")
        position += 1
        items: list[tuple[str, list | None]] = []
        while True:
            start = position
            while position < len(text) and text[position] not in "[],":
                position += 1
            name = text[start:position].strip()
            if not name:
                raise ValueError("include names a field with no name")
            sub = parse_list() if position < len(text) and text[position] == "[" else None
            items.append((name, sub))
            if position >= len(text):
                raise ValueError("include is missing its closing ']'")
            mark = text[position]
            position += 1
            if mark == "]":
                return items

    items = parse_list()
    if position != len(text):
        raise ValueError("unexpected text after the include list")
    return items


@dataclass(frozen=True)
class FieldSpec:
    kind: str  # "int", "date" or "str"
    ops: tuple[str, ...]
    read: Callable[[Any], Any]


# The fake ------------------------------------------------------------------------------------------


class FakeTargetprocess(FakeApp):
    """An in-memory Targetprocess site speaking REST API v1 (see the module docstring)."""

    def __init__(self, time_zone: str = "Europe/Berlin", now: Callable[[], datetime] | None = None) -> None:
        super().__init__(now)
        control = self.control.add
        control("POST", rf"{CONTROL_PREFIX}/users", self._control_add_user, "users")
        control("POST", rf"{CONTROL_PREFIX}/projects", self._control_add_project, "projects")
        control("POST", rf"{CONTROL_PREFIX}/items", self._control_add_item, "items")
        control(
            "POST", rf"{CONTROL_PREFIX}/items/(?P<id>\d+)/transition", self._control_transition, "transition"
        )
        control("POST", rf"{CONTROL_PREFIX}/items/(?P<id>\d+)/edit", self._control_edit, "edit")
        control("POST", rf"{CONTROL_PREFIX}/relations", self._control_relate, "relations")
        self.time_zone = time_zone
        self.reset(time_zone)

    @locked
    def reset(self, time_zone: str | None = None) -> None:
        """An empty site: the demo user and the Scrum process with each type's workflow, no projects."""
        super().reset()
        time_zone = time_zone or self.time_zone
        self.zone = _zone(time_zone)
        self.time_zone = time_zone
        self.users: list[User] = []
        self.processes: dict[int, Process] = {}
        self.states: dict[int, State] = {}
        self.projects: dict[int, Project] = {}
        self.entities: dict[int, Entity] = {}
        self.relations: dict[int, Relation] = {}
        self.malformed_ids: set[int] = set()
        self.queries: list[tuple[str, dict[str, str]]] = []
        self._general_ids = itertools.count(100)
        self._ids = {kind: itertools.count(1) for kind in ("user", "process", "state", "history", "relation")}
        self.default_user = self.add_user(
            DEMO_LOGIN, DEMO_PASSWORD, token=DEMO_TOKEN, first_name="VSM", last_name="Demo"
        )
        self.default_process = self._add_process("Scrum")
        self._build_routes()

    @property
    def label(self) -> str:
        return "Targetprocess"

    def credentials(self) -> dict[str, str]:
        return {"access_token": DEMO_TOKEN}

    def _clock(self) -> datetime:
        return to_tp_instant(self.now())

    def _next(self, kind: str) -> int:
        return next(self._ids[kind])

    # Programmatic API ----------------------------------------------------------------------------------

    @locked
    def add_user(
        self,
        login: str,
        password: str | None = None,
        token: str | None = None,
        first_name: str = "",
        last_name: str = "",
        email: str | None = None,
    ) -> User:
        """A user who signs in with Basic `login:password` or `?access_token=<token>`."""
        if any(user.login.lower() == login.lower() for user in self.users):
            raise TargetprocessError(400, f"A user with login '{login}' already exists.")
        user = User(
            id=self._next("user"),
            login=login,
            password=password,
            first_name=first_name or login,
            last_name=last_name,
            email=email or f"{login}@example.test",
            tokens=[token] if token else [],
            created=self._clock(),
        )
        self.users.append(user)
        return user

    def _add_process(self, name: str) -> Process:
        process = Process(self._next("process"), name)
        self.processes[process.id] = process
        for entity_type, workflow in DEFAULT_WORKFLOWS.items():
            for index, state_name in enumerate(workflow):
                state = State(
                    id=self._next("state"),
                    name=state_name,
                    entity_type=entity_type,
                    process_id=process.id,
                    numeric_priority=float(index + 1),
                    is_initial=index == 0,
                    is_final=state_name in FINAL_STATES,
                )
                self.states[state.id] = state
        return process

    @locked
    def add_project(self, name: str, abbreviation: str | None = None, created: datetime | None = None) -> int:
        """A project on the Scrum process; its id (from the entities' sequence)."""
        project = Project(
            id=next(self._general_ids),
            name=name,
            abbreviation=abbreviation or name[:3].upper(),
            process_id=self.default_process.id,
            created=to_tp_instant(created) if created else self._clock(),
        )
        self.projects[project.id] = project
        return project.id

    def states_of(self, entity_type: str, process_id: int | None = None) -> list[State]:
        process_id = process_id or self.default_process.id
        return [
            s for s in self.states.values() if s.entity_type == entity_type and s.process_id == process_id
        ]

    def state_names(self, entity_type: str) -> list[str]:
        """The workflow's state names for `entity_type`, initial first."""
        return [state.name for state in self.states_of(entity_type)]

    @locked
    def add_item(
        self,
        entity_type: str,
        name: str,
        project: int | None = None,
        state: str | None = None,
        created: datetime | None = None,
        modified: datetime | None = None,
        history: Iterable[Sequence[Any]] = (),
        description: str = "",
        owner: User | str | None = None,
        parent: int | None = None,
        custom_fields: dict[str, Any] | None = None,
        effort: float = 0.0,
        tags: str = "",
    ) -> int:
        """Create an entity, possibly backdated, and return its id.

        It is created in `state` (default: the workflow's initial state) at `created`; `history` then
        moves it, ``(at, to_state[, author])`` in time order, each a simple-history record. `modified`
        defaults to the last of those instants. `parent` is a Feature (for a story or bug), an Epic (for
        a feature) or a UserStory (for a bug); `custom_fields` are {name: value}.
        """
        if entity_type not in ENTITY_TYPES:
            raise TargetprocessError(404, f"Unknown entity type '{entity_type}'.")
        if project is None:
            project = self.add_project("Demo") if not self.projects else next(iter(self.projects))
        project_record = self._project(project)
        at = to_tp_instant(created) if created is not None else self._clock()
        creator = self._user(owner)
        moves = [
            (
                to_tp_instant(move[0]),
                self._state_named(entity_type, project_record, move[1]).id,
                self._user(move[2] if len(move) > 2 else None),
            )
            for move in history
        ]
        instants = [at, *(move[0] for move in moves)]
        if any(later < earlier for earlier, later in itertools.pairwise(instants)):
            raise ValueError("history must be in time order, none before the item's creation")
        start = (
            self._state_named(entity_type, project_record, state)
            if state
            else self.states_of(entity_type, project_record.process_id)[0]
        )
        entity = Entity(
            id=next(self._general_ids),
            entity_type=entity_type,
            name=name,
            description=description,
            project_id=project_record.id,
            state_id=start.id,
            owner=creator,
            created=at,
            modified=at,
            effort=float(effort),
            tags=tags,
            custom_fields=dict(custom_fields or {}),
        )
        entity.numeric_priority = float(entity.id)
        if parent is not None:
            self._set_parent(entity, parent)
        self.entities[entity.id] = entity
        self._record(entity, at, creator)
        for instant, state_id, author in moves:
            entity.state_id = state_id
            self._record(entity, instant, author)
            entity.modified = instant
        if modified is not None:
            modified = to_tp_instant(modified)
            if modified < entity.modified:
                raise ValueError(
                    f"modified ({modified}) is before the item's last change ({entity.modified})"
                )
            entity.modified = modified
        return entity.id

    @locked
    def transition(
        self, entity_id: int, to_state: str, at: datetime | None = None, author: User | str | None = None
    ) -> None:
        """Move an entity to `to_state` (any state of its workflow), with a history record."""
        entity = self._entity(entity_id)
        state = self._state_named(entity.entity_type, self._project(entity.project_id), to_state)
        if state.id == entity.state_id:
            raise TargetprocessError(
                400, f"{entity.entity_type} #{entity.id} is already in state '{to_state}'."
            )
        instant = to_tp_instant(at) if at is not None else self._clock()
        entity.state_id = state.id
        entity.modified = max(entity.modified, instant)
        self._record(entity, instant, self._user(author))

    @locked
    def edit(
        self,
        entity_id: int,
        fields: dict[str, Any],
        at: datetime | None = None,
        author: User | str | None = None,
    ) -> None:
        """Change fields with the JSON of the API's update body (Name, Effort, CustomFields...)."""
        entity = self._entity(entity_id)
        instant = to_tp_instant(at) if at is not None else self._clock()
        self._apply(entity, fields, self._user(author), instant)

    @locked
    def relate(
        self, master: int, slave: int, relation_type: str = "Relation", at: datetime | None = None
    ) -> int:
        """A relation master -> slave; both ends' ModifyDate moves (the fake's choice, see the report)."""
        instant = to_tp_instant(at) if at is not None else self._clock()
        return self._relate(self._entity(master), self._entity(slave), relation_type, instant).id

    @locked
    def delete(self, entity_id: int) -> None:
        entity = self._entity(entity_id)
        del self.entities[entity.id]
        self.relations = {
            key: relation
            for key, relation in self.relations.items()
            if entity.id not in (relation.master, relation.slave)
        }
        for other in self.entities.values():
            other.parents = {name: ref for name, ref in other.parents.items() if ref != entity.id}
        self.malformed_ids.discard(entity.id)

    @locked
    def malformed(self, entity_id: int) -> None:
        """From now on render the entity broken (CreateDate "not-a-date", no EntityState)."""
        self.malformed_ids.add(self._entity(entity_id).id)

    @locked
    def clear_faults(self) -> None:
        super().clear_faults()
        self.malformed_ids.clear()

    def configure_faults(self, settings: dict[str, Any]) -> None:
        super().configure_faults(settings)
        for entity_id in settings.get("malformed", ()):
            self.malformed(int(entity_id))

    def stats(self) -> dict[str, Any]:
        return {
            **super().stats(),
            "entities": len(self.entities),
            "relations": len(self.relations),
            "malformed": sorted(self.malformed_ids),
        }

    # State helpers -------------------------------------------------------------------------------------

    def _project(self, project_id: Any) -> Project:
        try:
            return self.projects[int(project_id)]
        except (KeyError, TypeError, ValueError):
            raise TargetprocessError(
                404, f"Project with Id {project_id} not found.", "Tp.Rest.NotFoundException"
            ) from None

    def _entity(self, entity_id: Any, entity_type: str | None = None) -> Entity:
        try:
            entity = self.entities[int(entity_id)]
        except (KeyError, TypeError, ValueError):
            entity = None
        if entity is None or (entity_type is not None and entity.entity_type != entity_type):
            raise TargetprocessError(
                404, f"{entity_type or 'General'} with Id {entity_id} not found.", "Tp.Rest.NotFoundException"
            )
        return entity

    def _user(self, reference: User | str | int | None) -> User:
        if reference is None:
            return self.default_user
        if isinstance(reference, User):
            return reference
        for user in self.users:
            if str(reference).lower() in (user.login.lower(), str(user.id)):
                return user
        raise TargetprocessError(404, f"User '{reference}' not found.", "Tp.Rest.NotFoundException")

    def _state_named(self, entity_type: str, project: Project, name: str) -> State:
        for state in self.states_of(entity_type, project.process_id):
            if state.name.casefold() == str(name).casefold():
                return state
        known = ", ".join(self.state_names(entity_type))
        raise TargetprocessError(
            400, f"There is no state '{name}' for {entity_type}; the process has: {known}."
        )

    def _set_parent(self, entity: Entity, parent_id: Any, kind: str | None = None) -> None:
        allowed = ENTITY_TYPES[entity.entity_type][2]
        if parent_id is None:
            entity.parents.pop(kind, None)
            return
        parent = self._entity(parent_id)
        kind = kind or parent.entity_type
        if kind not in allowed or parent.entity_type != kind:
            raise TargetprocessError(
                400,
                f"A {entity.entity_type} cannot have the {parent.entity_type} #{parent.id} as its {kind}.",
            )
        if entity.entity_type == "Bug":
            entity.parents.clear()
        entity.parents[kind] = parent.id

    def _record(self, entity: Entity, at: datetime, modifier: User) -> None:
        entity.history.append(
            HistoryRecord(self._next("history"), at, entity.state_id, modifier, entity.effort)
        )
        entity.history.sort(key=lambda record: (record.date, record.id))

    def _relate(self, master: Entity, slave: Entity, relation_type: str, at: datetime) -> Relation:
        if relation_type not in RELATION_TYPES:
            raise TargetprocessError(
                400, f"Unknown relation type '{relation_type}'; use one of {', '.join(RELATION_TYPES)}."
            )
        if master.id == slave.id:
            raise TargetprocessError(400, "An entity cannot be related to itself.")
        if any((r.master, r.slave) == (master.id, slave.id) for r in self.relations.values()):
            raise TargetprocessError(400, f"Relation between #{master.id} and #{slave.id} already exists.")
        relation = Relation(self._next("relation"), master.id, slave.id, relation_type, at)
        self.relations[relation.id] = relation
        for end in (master, slave):
            end.modified = max(end.modified, at)
        return relation

    def _apply(
        self, entity: Entity, body: dict[str, Any], user: User, at: datetime, creating: bool = False
    ) -> None:
        """Apply an API body; a history record when the state or effort changed; ModifyDate moves."""
        allowed = {
            "Id",
            "Name",
            "Description",
            "Tags",
            "NumericPriority",
            "Effort",
            "Owner",
            "EntityState",
            "CustomFields",
            "Project",
            *ENTITY_TYPES[entity.entity_type][2],
        }
        for name in body:
            if name not in allowed:
                raise _not_found_field(name, entity.entity_type)
        before = (entity.state_id, entity.effort)
        if "Name" in body:
            if not isinstance(body["Name"], str) or not body["Name"].strip():
                raise TargetprocessError(400, f"{entity.entity_type} should have a Name.")
            entity.name = body["Name"]
        if "Description" in body:
            entity.description = body["Description"] or ""
        if "Tags" in body:
            entity.tags = body["Tags"] or ""
        if "NumericPriority" in body:
            entity.numeric_priority = float(body["NumericPriority"])
        if "Effort" in body:
            try:
                entity.effort = float(body["Effort"])
            except (TypeError, ValueError):
                raise TargetprocessError(400, f"Effort must be a number, not {body['Effort']!r}.") from None
        if "Project" in body and not creating and _ref_id(body["Project"]) != entity.project_id:
            raise TargetprocessError(400, "The fake Targetprocess cannot move an entity to another project.")
        if "Owner" in body:
            entity.owner = self._user(_ref_id(body["Owner"]))
        if "EntityState" in body:
            state_id = _ref_id(body["EntityState"])
            state = self.states.get(state_id) if state_id is not None else None
            project = self._project(entity.project_id)
            if (
                state is None
                or state.entity_type != entity.entity_type
                or state.process_id != project.process_id
            ):
                raise TargetprocessError(
                    400,
                    f"Entity state with Id {state_id} is not a {entity.entity_type} state of this process.",
                )
            entity.state_id = state.id
        for kind in ENTITY_TYPES[entity.entity_type][2]:
            if kind in body:
                self._set_parent(entity, _ref_id(body[kind]) if body[kind] is not None else None, kind)
        if "CustomFields" in body:
            values = body["CustomFields"]
            if not isinstance(values, list) or not all(isinstance(v, dict) and v.get("Name") for v in values):
                raise TargetprocessError(400, 'CustomFields must be a list of {"Name": ..., "Value": ...}.')
            for value in values:
                entity.custom_fields[value["Name"]] = value.get("Value")
        if not creating:
            if (entity.state_id, entity.effort) != before:
                self._record(entity, at, user)
            entity.modified = max(entity.modified, at)

    # Rendering ---------------------------------------------------------------------------------------

    def _date(self, instant: datetime | None) -> str | None:
        return format_tp_date(instant, self.zone)

    def _user_ref(self, user: User) -> dict[str, Any]:
        return {
            "ResourceType": "GeneralUser",
            "Id": user.id,
            "FirstName": user.first_name,
            "LastName": user.last_name,
            "Login": user.login,
        }

    def _user_json(self, user: User) -> dict[str, Any]:
        return {
            "ResourceType": "User",
            "Id": user.id,
            "FirstName": user.first_name,
            "LastName": user.last_name,
            "Email": user.email,
            "Login": user.login,
            "CreateDate": self._date(user.created),
            "ModifyDate": self._date(user.created),
            "IsActive": True,
            "IsAdministrator": user is self.default_user,
        }

    def _process_ref(self, process_id: int) -> dict[str, Any]:
        return {"ResourceType": "Process", "Id": process_id, "Name": self.processes[process_id].name}

    def _project_ref(self, project: Project) -> dict[str, Any]:
        return {
            "ResourceType": "Project",
            "Id": project.id,
            "Name": project.name,
            "Process": self._process_ref(project.process_id),
        }

    def _project_json(self, project: Project) -> dict[str, Any]:
        return {
            "ResourceType": "Project",
            "Id": project.id,
            "Name": project.name,
            "Abbreviation": project.abbreviation,
            "CreateDate": self._date(project.created),
            "ModifyDate": self._date(project.created),
            "IsActive": True,
            "EntityType": self._type_ref("Project"),
            "Process": self._process_ref(project.process_id),
        }

    def _type_ref(self, name: str) -> dict[str, Any]:
        type_id = PROJECT_TYPE_ID if name == "Project" else ENTITY_TYPES[name][1]
        return {"ResourceType": "EntityType", "Id": type_id, "Name": name}

    def _state_ref(self, state: State) -> dict[str, Any]:
        return {
            "ResourceType": "EntityState",
            "Id": state.id,
            "Name": state.name,
            "NumericPriority": state.numeric_priority,
        }

    def _state_json(self, state: State) -> dict[str, Any]:
        return {
            **self._state_ref(state),
            "IsInitial": state.is_initial,
            "IsFinal": state.is_final,
            "IsPlanned": state.name == "Planned",
            "EntityType": self._type_ref(state.entity_type),
            "Process": self._process_ref(state.process_id),
        }

    def _entity_ref(self, entity: Entity, resource_type: str | None = None) -> dict[str, Any]:
        return {"ResourceType": resource_type or entity.entity_type, "Id": entity.id, "Name": entity.name}

    def _entity_json(self, entity: Entity) -> dict[str, Any]:
        rendered: dict[str, Any] = {
            "ResourceType": entity.entity_type,
            "Id": entity.id,
            "Name": entity.name,
            "Description": entity.description or None,
            "StartDate": None,
            "EndDate": None,
            "CreateDate": self._date(entity.created),
            "ModifyDate": self._date(entity.modified),
            "LastCommentDate": None,
            "Tags": entity.tags,
            "NumericPriority": entity.numeric_priority,
            "Effort": entity.effort,
            "EffortCompleted": 0.0,
            "EffortToDo": entity.effort,
            "TimeSpent": 0.0,
            "TimeRemain": entity.effort,
            "EntityType": self._type_ref(entity.entity_type),
            "Owner": self._user_ref(entity.owner),
            "LastCommentedUser": None,
            "Project": self._project_ref(self.projects[entity.project_id]),
            "Release": None,
            "Iteration": None,
            "TeamIteration": None,
            "Team": None,
            "Priority": None,
            "EntityState": self._state_ref(self.states[entity.state_id]),
        }
        if entity.entity_type == "Request":
            rendered.update({"IsPrivate": False, "IsReplied": False})
        for kind in ENTITY_TYPES[entity.entity_type][2]:
            parent = self.entities.get(entity.parents.get(kind, -1))
            rendered[kind] = self._entity_ref(parent) if parent else None
        rendered["CustomFields"] = [
            {"Name": name, "Type": _custom_field_type(value), "Value": value}
            for name, value in entity.custom_fields.items()
        ]
        if entity.id in self.malformed_ids:
            rendered["CreateDate"] = "not-a-date"
            rendered.pop("EntityState")
        return rendered

    def _general_json(self, general: Entity | Project) -> dict[str, Any]:
        rendered = self._project_json(general) if isinstance(general, Project) else self._entity_json(general)
        keep = ("Id", "Name", "CreateDate", "ModifyDate", "EntityType", "Owner", "Project")
        return {"ResourceType": "General", **{name: rendered[name] for name in keep if name in rendered}}

    def _history_json(self, entity: Entity, record: HistoryRecord) -> dict[str, Any]:
        return {
            "ResourceType": f"{entity.entity_type}SimpleHistory",
            "Id": record.id,
            "Date": self._date(record.date),
            "Effort": record.effort,
            "EffortCompleted": 0.0,
            "EffortToDo": record.effort,
            "TimeSpent": 0.0,
            "TimeRemain": record.effort,
            "EntityState": self._state_ref(self.states[record.state_id]),
            "Modifier": self._user_ref(record.modifier),
            entity.entity_type: self._entity_ref(entity),
            "Release": None,
            "Iteration": None,
        }

    def _relation_json(self, relation: Relation) -> dict[str, Any]:
        master, slave = self.entities[relation.master], self.entities[relation.slave]
        return {
            "ResourceType": "Relation",
            "Id": relation.id,
            "CreateDate": self._date(relation.created),
            "Master": self._entity_ref(master, "General"),
            "Slave": self._entity_ref(slave, "General"),
            "RelationType": {
                "ResourceType": "RelationType",
                "Id": RELATION_TYPES[relation.relation_type],
                "Name": relation.relation_type,
            },
        }

    def _expand(self, reference: dict[str, Any]) -> dict[str, Any]:
        """The full object a reference names, for nested includes."""
        resource_type, ref_id = reference.get("ResourceType"), reference.get("Id")
        if resource_type == "General" or resource_type in ENTITY_TYPES:
            general = self.entities.get(ref_id) or self.projects.get(ref_id)
            if general is not None:
                return {**self._general_json(general), "ResourceType": resource_type}
        if resource_type == "Project" and ref_id in self.projects:
            return self._project_json(self.projects[ref_id])
        if resource_type == "EntityState" and ref_id in self.states:
            return self._state_json(self.states[ref_id])
        if resource_type == "GeneralUser":
            user = next((user for user in self.users if user.id == ref_id), None)
            if user is not None:
                return {**self._user_json(user), "ResourceType": "GeneralUser"}
        return reference

    def _select(self, rendered: dict[str, Any], include: list, resource: str) -> dict[str, Any]:
        selected = {"ResourceType": rendered.get("ResourceType"), "Id": rendered.get("Id")}
        for name, sub in include:
            if name not in rendered:
                raise _not_found_field(name, resource)
            value = rendered[name]
            if sub is not None and isinstance(value, dict):
                expanded = self._expand(value)
                value = self._select(expanded, sub, str(expanded.get("ResourceType")))
            selected[name] = value
        return selected

    # Queries -------------------------------------------------------------------------------------------

    def _date_literal(self, text: str, name: str, resource: str) -> datetime:
        for date_format in DATE_LITERAL_FORMATS:
            try:
                return datetime.strptime(text, date_format).replace(tzinfo=self.zone)
            except ValueError:
                continue
        raise TargetprocessError(
            400,
            f"Error during parameters parsing: '{text}' is not a valid date for '{name}' in {_dto(resource)}",
            "Tp.Rest.RequestParametersParsingException",
        )

    def _entity_fields(self) -> dict[str, FieldSpec]:
        return {
            "Id": FieldSpec("int", ("eq", "ne", "in"), lambda e: e.id),
            "ModifyDate": FieldSpec("date", ("eq", "gt", "gte", "lt", "lte"), lambda e: e.modified),
            "CreateDate": FieldSpec("date", ("eq", "gt", "gte", "lt", "lte"), lambda e: e.created),
            "Project.Id": FieldSpec("int", ("eq", "in"), lambda e: e.project_id),
            "EntityState.Name": FieldSpec("str", ("eq", "ne"), lambda e: self.states[e.state_id].name),
            "Name": FieldSpec("str", ("eq",), lambda e: e.name),
        }

    def _filter(
        self, objects: Iterable[Any], where: str | None, fields: dict[str, FieldSpec], resource: str
    ) -> list[Any]:
        if where is None or not where.strip():
            return list(objects)
        try:
            conditions = parse_where(where)
        except ValueError as error:
            raise TargetprocessError(
                400, f"Error during parameters parsing: {error}", "Tp.Rest.RequestParametersParsingException"
            ) from None
        tests = []
        for condition in conditions:
            spec = next(
                (spec for name, spec in fields.items() if name.lower() == condition.field.lower()), None
            )
            if spec is None:
                if condition.field.split(".")[0].lower() in {name.split(".")[0].lower() for name in fields}:
                    raise TargetprocessError(
                        400,
                        f"The fake Targetprocess does not filter {resource} by '{condition.field}'; "
                        f"it knows {', '.join(fields)}.",
                    )
                raise _not_found_field(condition.field, resource)
            if condition.op not in spec.ops:
                raise TargetprocessError(
                    400, f"The fake Targetprocess does not support '{condition.field} {condition.op}'."
                )
            values = [self._literal(value, spec, condition.field, resource) for value in condition.values]
            tests.append((spec, condition.op, values))
        return [
            obj for obj in objects if all(_compare(spec.read(obj), op, values) for spec, op, values in tests)
        ]

    def _literal(self, text: str, spec: FieldSpec, name: str, resource: str) -> Any:
        if spec.kind == "date":
            return self._date_literal(text, name, resource)
        if spec.kind == "int":
            try:
                return int(text)
            except ValueError:
                raise TargetprocessError(
                    400, f"Error during parameters parsing: '{text}' is not a number for '{name}'."
                ) from None
        return text

    def _ordered(
        self,
        objects: list[Any],
        request: Request,
        orders: dict[str, Callable[[Any], Any]],
        default: str,
        resource: str,
    ) -> list[Any]:
        ascending, descending = request.arg("orderBy"), request.arg("orderByDesc")
        if ascending and descending:
            raise TargetprocessError(400, "Use either orderBy or orderByDesc.")
        name = ascending or descending or default
        key = next((read for known, read in orders.items() if known.lower() == name.lower()), None)
        if key is None:
            raise _not_found_field(name, resource)
        ordered = sorted(objects, key=lambda obj: obj.id)  # ties by Id, ascending either way
        return sorted(ordered, key=key, reverse=bool(descending))

    def _page(
        self, request: Request, rendered: Callable[[Any], dict[str, Any]], objects: list[Any], resource: str
    ) -> Response:
        take = _number(request.arg("take"), "take", DEFAULT_TAKE)
        skip = _number(request.arg("skip"), "skip", 0)
        take = max(1, min(take, MAX_TAKE))
        include = self._include(request)
        items = []
        for obj in objects[skip : skip + take]:
            item = rendered(obj)
            items.append(self._select(item, include, resource) if include is not None else item)
        payload: dict[str, Any] = {}
        if skip > 0:
            payload["Prev"] = self._page_url(request, take, max(0, skip - take))
        if skip + take < len(objects):
            payload["Next"] = self._page_url(request, take, skip + take)
        payload["Items"] = items
        return self._json(request, payload)

    def _include(self, request: Request) -> list | None:
        text = request.arg("include")
        if text is None:
            return None
        try:
            return parse_include(text)
        except ValueError as error:
            raise TargetprocessError(
                400, f"Error during parameters parsing: {error}", "Tp.Rest.RequestParametersParsingException"
            ) from None

    def _page_url(self, request: Request, take: int, skip: int) -> str:
        pairs = [
            (name, value)
            for name, values in request.query.items()
            if name.lower() not in ("take", "skip")
            for value in values
        ]
        pairs += [("take", str(take)), ("skip", str(skip))]
        return f"{request.base_url}{request.path}?{urlencode(pairs, quote_via=quote)}"

    def _json(self, request: Request, payload: Any, status: int = 200) -> Response:
        wants_json = (request.arg("format") or "").lower() == "json" or "json" in request.headers.get(
            "accept", ""
        )
        if not wants_json:
            body = (
                b"<Error><Status>NotAcceptable</Status><Message>The fake Targetprocess speaks JSON only: "
                b"send format=json or Accept: application/json.</Message></Error>"
            )
            return Response(status, body, [("Content-Type", "text/xml; charset=utf-8")])
        response = json_response(payload, status)
        # On the wire Targetprocess escapes the slashes of its dates: "\/Date(1374757420000-0500)\/".
        response.body = _WIRE_DATE.sub(r'"\\/Date(\1)\\/"', response.body.decode()).encode()
        return response

    # HTTP --------------------------------------------------------------------------------------------

    def _build_routes(self) -> None:
        self.router.routes.clear()
        add = self.router.add
        collection = "(?P<collection>" + "|".join(COLLECTIONS) + ")"
        types = "(?P<type>" + "|".join(ENTITY_TYPES) + ")"
        add("GET", rf"{API}/Users/LoggedUser/?", self._http_logged_user, "Users/LoggedUser")
        add("GET", rf"{API}/{collection}/?", self._http_list, "entities")
        add("POST", rf"{API}/{collection}/?", self._http_create, "entities")
        add("GET", rf"{API}/{collection}/(?P<id>\d+)/?", self._http_get, "entity")
        add("POST", rf"{API}/{collection}/(?P<id>\d+)/?", self._http_update, "entity")
        add("DELETE", rf"{API}/{collection}/(?P<id>\d+)/?", self._http_delete, "entity")
        add("GET", rf"{API}/{collection}/(?P<id>\d+)/History/?", self._http_item_history, "entity/History")
        add("GET", rf"{API}/{types}SimpleHistories/?", self._http_histories, "SimpleHistories")
        add("GET", rf"{API}/EntityStates/?", self._http_states, "EntityStates")
        add("GET", rf"{API}/Relations/?", self._http_relations, "Relations")
        add("POST", rf"{API}/Relations/?", self._http_add_relation, "Relations")
        add("GET", rf"{API}/Projects/?", self._http_projects, "Projects")
        add("GET", rf"{API}/Projects/(?P<id>\d+)/?", self._http_project, "Projects")
        add("GET", rf"{API}/Generals/(?P<id>\d+)/?", self._http_general, "Generals")

    def authenticate(self, request: Request) -> User:
        self.queries.append((request.path, {name: values[0] for name, values in request.query.items()}))
        token = request.arg("access_token")
        user = None
        if token:
            user = next((user for user in self.users if token in user.tokens), None)
        else:
            credentials = basic_credentials(request)
            if credentials:
                user = next(
                    (
                        user
                        for user in self.users
                        if user.login.lower() == credentials[0].lower()
                        and user.password is not None
                        and user.password == credentials[1]
                    ),
                    None,
                )
        if user is None:
            raise HttpError(
                _error_response(
                    401,
                    "Authentication failed: the access token or the login and password are not valid.",
                    "Tp.Web.Mvc.Exceptions.UnauthorizedException",
                    [("WWW-Authenticate", 'Basic realm="Targetprocess"')],
                )
            )
        return user

    def error_response(self, status: int, message: str, headers: Iterable[tuple[str, str]] = ()) -> Response:
        return _error_response(status, message, "", headers)

    def rate_limited_response(self, retry_after_seconds: int) -> Response:
        return _error_response(
            429, "Too many requests. Try again later.", "", [("Retry-After", str(retry_after_seconds))]
        )

    def _http_logged_user(self, request: Request) -> Response:
        return self._json(request, self._user_json(request.user))

    def _http_list(self, request: Request) -> Response:
        entity_type = COLLECTIONS[request.params["collection"]]
        objects = [entity for entity in self.entities.values() if entity.entity_type == entity_type]
        objects = self._filter(objects, request.arg("where"), self._entity_fields(), entity_type)
        orders = {
            "ModifyDate": lambda e: e.modified,
            "CreateDate": lambda e: e.created,
            "Id": lambda e: e.id,
            "Name": lambda e: e.name,
        }
        objects = self._ordered(objects, request, orders, "Id", entity_type)
        return self._page(request, self._entity_json, objects, entity_type)

    def _http_get(self, request: Request) -> Response:
        entity_type = COLLECTIONS[request.params["collection"]]
        entity = self._entity(request.params["id"], entity_type)
        rendered = self._entity_json(entity)
        include = self._include(request)
        return self._json(request, self._select(rendered, include, entity_type) if include else rendered)

    def _http_create(self, request: Request) -> Response:
        entity_type = COLLECTIONS[request.params["collection"]]
        body = request.json_object()
        if body.get("Id") is not None:
            return self._update(request, self._entity(body["Id"], entity_type), body)
        if not isinstance(body.get("Name"), str) or not body["Name"].strip():
            raise TargetprocessError(400, f"{entity_type} should have a Name.")
        project_id = _ref_id(body.get("Project"))
        if project_id is None:
            raise TargetprocessError(400, f"{entity_type} should have a Project.")
        project = self._project(project_id)
        at = self._clock()
        entity = Entity(
            id=next(self._general_ids),
            entity_type=entity_type,
            name=body["Name"],
            description="",
            project_id=project.id,
            state_id=self.states_of(entity_type, project.process_id)[0].id,
            owner=request.user,
            created=at,
            modified=at,
        )
        entity.numeric_priority = float(entity.id)
        self._apply(entity, body, request.user, at, creating=True)
        self.entities[entity.id] = entity
        self._record(entity, at, request.user)
        return self._json(request, self._entity_json(entity), 201)

    def _http_update(self, request: Request) -> Response:
        entity_type = COLLECTIONS[request.params["collection"]]
        return self._update(request, self._entity(request.params["id"], entity_type), request.json_object())

    def _update(self, request: Request, entity: Entity, body: dict[str, Any]) -> Response:
        if body.get("Id") is not None and _ref_id(body) != entity.id:
            raise TargetprocessError(400, "The Id in the body does not match the one in the URL.")
        self._apply(entity, body, request.user, self._clock())
        return self._json(request, self._entity_json(entity))

    def _http_delete(self, request: Request) -> Response:
        entity_type = COLLECTIONS[request.params["collection"]]
        entity = self._entity(request.params["id"], entity_type)
        self.delete(entity.id)
        return self._json(request, {"ResourceType": entity_type, "Id": entity.id})

    def _http_item_history(self, request: Request) -> Response:
        entity_type = COLLECTIONS[request.params["collection"]]
        entity = self._entity(request.params["id"], entity_type)
        resource = f"{entity_type}SimpleHistory"
        pairs = self._filter(
            [(entity, record) for record in entity.history],
            request.arg("where"),
            self._history_fields(entity_type),
            resource,
        )
        pairs = self._history_order(pairs, request, resource)
        return self._page(request, lambda pair: self._history_json(*pair), pairs, resource)

    def _history_fields(self, entity_type: str) -> dict[str, FieldSpec]:
        return {
            "Id": FieldSpec("int", ("eq", "in"), lambda pair: pair[1].id),
            f"{entity_type}.Id": FieldSpec("int", ("eq", "in"), lambda pair: pair[0].id),
            "Date": FieldSpec("date", ("gt", "gte", "lt", "lte"), lambda pair: pair[1].date),
        }

    def _history_order(self, pairs: list, request: Request, resource: str) -> list:
        ascending, descending = request.arg("orderBy"), request.arg("orderByDesc")
        name = (ascending or descending or "Date").lower()
        if name not in ("date", "id"):
            raise _not_found_field(ascending or descending, resource)
        ordered = sorted(pairs, key=lambda pair: pair[1].id)
        if name == "date":
            ordered.sort(key=lambda pair: pair[1].date)
        return list(reversed(ordered)) if descending else ordered

    def _http_histories(self, request: Request) -> Response:
        entity_type = request.params["type"]
        resource = f"{entity_type}SimpleHistory"
        pairs = [
            (entity, record)
            for entity in self.entities.values()
            if entity.entity_type == entity_type
            for record in entity.history
        ]
        pairs = self._filter(pairs, request.arg("where"), self._history_fields(entity_type), resource)
        pairs = self._history_order(pairs, request, resource)
        return self._page(request, lambda pair: self._history_json(*pair), pairs, resource)

    def _http_states(self, request: Request) -> Response:
        fields = {
            "Id": FieldSpec("int", ("eq", "in"), lambda s: s.id),
            "Name": FieldSpec("str", ("eq",), lambda s: s.name),
            "EntityType.Name": FieldSpec("str", ("eq",), lambda s: s.entity_type),
            "Process.Id": FieldSpec("int", ("eq",), lambda s: s.process_id),
        }
        states = self._filter(self.states.values(), request.arg("where"), fields, "EntityState")
        states = self._ordered(states, request, {"Id": lambda s: s.id}, "Id", "EntityState")
        return self._page(request, self._state_json, states, "EntityState")

    def _http_relations(self, request: Request) -> Response:
        fields = {
            "Id": FieldSpec("int", ("eq", "in"), lambda r: r.id),
            "Master.Id": FieldSpec("int", ("eq", "in"), lambda r: r.master),
            "Slave.Id": FieldSpec("int", ("eq", "in"), lambda r: r.slave),
        }
        relations = self._filter(self.relations.values(), request.arg("where"), fields, "Relation")
        relations = self._ordered(relations, request, {"Id": lambda r: r.id}, "Id", "Relation")
        return self._page(request, self._relation_json, relations, "Relation")

    def _http_add_relation(self, request: Request) -> Response:
        body = request.json_object()
        master, slave = _ref_id(body.get("Master")), _ref_id(body.get("Slave"))
        if master is None or slave is None:
            raise TargetprocessError(400, "Relation should have a Master and a Slave.")
        relation_type = body.get("RelationType") or {"Name": "Relation"}
        name = relation_type.get("Name") if isinstance(relation_type, dict) else None
        if name is None and isinstance(relation_type, dict):
            name = next(
                (known for known, type_id in RELATION_TYPES.items() if type_id == relation_type.get("Id")),
                None,
            )
        relation = self._relate(self._entity(master), self._entity(slave), name or "", self._clock())
        return self._json(request, self._relation_json(relation), 201)

    def _http_projects(self, request: Request) -> Response:
        fields = {
            "Id": FieldSpec("int", ("eq", "in"), lambda p: p.id),
            "Name": FieldSpec("str", ("eq",), lambda p: p.name),
        }
        projects = self._filter(self.projects.values(), request.arg("where"), fields, "Project")
        projects = self._ordered(projects, request, {"Id": lambda p: p.id}, "Id", "Project")
        return self._page(request, self._project_json, projects, "Project")

    def _http_project(self, request: Request) -> Response:
        return self._json(request, self._project_json(self._project(request.params["id"])))

    def _http_general(self, request: Request) -> Response:
        general_id = int(request.params["id"])
        general = self.entities.get(general_id) or self.projects.get(general_id)
        if general is None:
            raise TargetprocessError(
                404, f"General with Id {general_id} not found.", "Tp.Rest.NotFoundException"
            )
        rendered = self._general_json(general)
        include = self._include(request)
        return self._json(request, self._select(rendered, include, "General") if include else rendered)

    # Control endpoints (fake-only) -------------------------------------------------------------------

    def _control_add_user(self, request: Request) -> Response:
        body = request.json_object()
        user = self.add_user(
            _required(body, "login"),
            body.get("password"),
            token=body.get("token"),
            first_name=body.get("first_name", ""),
            last_name=body.get("last_name", ""),
            email=body.get("email"),
        )
        return json_response({"Id": user.id, "Login": user.login}, 201)

    def _control_add_project(self, request: Request) -> Response:
        body = request.json_object()
        project_id = self.add_project(
            _required(body, "name"),
            body.get("abbreviation"),
            _iso(body["created"], "created") if body.get("created") else None,
        )
        return json_response({"Id": project_id}, 201)

    def _control_add_item(self, request: Request) -> Response:
        body = request.json_object()
        try:
            entity_id = self.add_item(
                _required(body, "entity_type"),
                _required(body, "name"),
                project=body.get("project"),
                state=body.get("state"),
                created=_iso(body["created"], "created") if body.get("created") else None,
                modified=_iso(body["modified"], "modified") if body.get("modified") else None,
                history=[
                    (_iso(_required(move, "at"), "at"), _required(move, "to"), move.get("author"))
                    for move in body.get("history", ())
                ],
                description=body.get("description", ""),
                owner=body.get("owner"),
                parent=body.get("parent"),
                custom_fields=body.get("custom_fields"),
                effort=body.get("effort", 0.0),
                tags=body.get("tags", ""),
            )
        except ValueError as error:
            raise InvalidRequestBody(str(error)) from error
        return json_response({"Id": entity_id}, 201)

    def _control_transition(self, request: Request) -> Response:
        body = request.json_object()
        at = _iso(body["at"], "at") if body.get("at") else None
        self.transition(int(request.params["id"]), _required(body, "to"), at=at, author=body.get("author"))
        return empty_response(204)

    def _control_edit(self, request: Request) -> Response:
        body = request.json_object()
        at = _iso(body["at"], "at") if body.get("at") else None
        self.edit(int(request.params["id"]), _required(body, "fields"), at=at, author=body.get("author"))
        return empty_response(204)

    def _control_relate(self, request: Request) -> Response:
        body = request.json_object()
        at = _iso(body["at"], "at") if body.get("at") else None
        relation_id = self.relate(
            int(_required(body, "master")),
            int(_required(body, "slave")),
            body.get("relation_type", "Relation"),
            at,
        )
        return json_response({"Id": relation_id}, 201)


def _compare(value: Any, op: str, literals: list[Any]) -> bool:
    if op == "in":
        return value in literals
    literal = literals[0]
    if isinstance(value, str) and isinstance(literal, str):
        value, literal = value.casefold(), literal.casefold()
    return {
        "eq": value == literal,
        "ne": value != literal,
        "gt": value > literal,
        "gte": value >= literal,
        "lt": value < literal,
        "lte": value <= literal,
    }[op]


def _ref_id(reference: Any) -> int | None:
    value = reference.get("Id") if isinstance(reference, dict) else reference
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def _custom_field_type(value: Any) -> str:
    if isinstance(value, bool):
        return "CheckBox"
    if isinstance(value, int | float):
        return "Number"
    if isinstance(value, dict):
        return "URL"
    return "Text"


def _number(text: str | None, name: str, default: int) -> int:
    if text is None or text == "":
        return default
    try:
        number = int(text)
    except ValueError:
        raise TargetprocessError(
            400, f"Error during parameters parsing: '{name}' must be a number, not '{text}'."
        ) from None
    if number < 0:
        raise TargetprocessError(400, f"Error during parameters parsing: '{name}' must not be negative.")
    return number


def _required(body: Any, name: str) -> Any:
    if not isinstance(body, dict) or body.get(name) in (None, ""):
        raise InvalidRequestBody(f"'{name}' is required.")
    return body[name]
