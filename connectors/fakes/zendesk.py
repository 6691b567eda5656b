"""A faithful fake of the Zendesk Support REST API (v2), for tests and the demo.

Shapes follow connectors-reference.md §7 and Zendesk's documented and recorded payloads: ticket JSON
(``url``, ``id``, ``external_id``, ``via``, ``created_at``/``updated_at`` as ``2024-05-01T13:00:00Z``,
``generated_timestamp`` in Unix seconds, ``type``, ``subject``, ``status``, ``priority``,
``requester_id``, ``organization_id``, ``tags``, ``custom_fields``/``fields`` as ``[{"id", "value"}]``,
``problem_id``, ``followup_ids``...), audits with ``events`` (``Create``, ``Change`` with
``previous_value``, ``Comment``; values are strings, even ids), comments, and Zendesk's error body
``{"error": "RecordNotFound", "description": "Not found"}`` (401: ``{"error": "Couldn't authenticate
you"}``).

Endpoints (under ``/api/v2``)
    ``GET users/me.json``; ``GET users/show_many.json?ids=1,2`` (up to 100 ids);
    ``GET incremental/tickets/cursor.json`` with ``start_time`` (Unix seconds) on the first request
    and ``cursor`` after it, ``per_page`` (at most 1000), ``exclude_deleted``, ``include``
    (``users``, ``organizations``, ``groups``, ``metric_sets`` side-loads). Tickets come in
    (``generated_timestamp``, ``id``) order and a cursor carries the last position, so tickets sharing
    one timestamp across a page boundary are neither skipped nor repeated. As on Zendesk since
    2024-10-28, changes made in the last minute before the request are left out, and a ``start_time``
    less than a minute in the past (or in the future) is a 400 ``InvalidValue`` "Too recent
    start_time". Deleted tickets are exported with ``status: "deleted"`` unless ``exclude_deleted``.
    The body: ``{"tickets", "after_url", "after_cursor", "before_url", "before_cursor",
    "end_of_stream"}`` (plus the side-loads).
    ``GET|PUT|DELETE tickets/{id}.json`` (show with side-loads; update with ``{"ticket": {...}}``,
    a ``comment`` adds a comment, ``custom_fields`` set fields; a closed ticket refuses updates with
    422 ``RecordInvalid``); ``POST tickets.json`` (201 ``{"ticket", "audit"}``);
    ``GET tickets/{id}/audits.json`` and ``GET tickets/{id}/comments.json``: cursor paging with
    ``page[size]``/``page[after]`` (``{"audits"|"comments", "meta": {"has_more", "after_cursor",
    "before_cursor"}, "links": {"prev", "next"}}``), else offset paging (``page``/``per_page``,
    ``{"next_page", "previous_page", "count"}``).

Auth: API token, HTTP Basic ``{email}/token:{api_token}``; anything else is a 401.

Programmatic API (tests and the demo generator; no HTTP needed)
    ``add_user``, ``add_organization``, ``add_ticket`` (backdated, with a status history that
    becomes audits), ``change_status``, ``escalate`` (sets the "Jira key" custom field,
    ``JIRA_KEY_FIELD_ID``), ``add_comment``, ``delete``; faults ``rate_limit``, ``fail``, ``slow``,
    ``malformed``, ``clear_faults``; ``tickets`` (by id), ``requests`` and ``writes``; ``now`` is the
    clock for changes made without an explicit instant.

Control endpoints: FAKE-ONLY, never on a real Zendesk. No credentials; never faulted or counted.
    POST /_fake/reset        {"subdomain"?}: an empty account with the demo agent
    POST /_fake/faults       {"rate_limit": {"count", "retry_after"?}, "fail": {"count", "status"?},
                              "slow": {"count", "seconds"}, "malformed": [ticket ids], "clear": true}
    GET  /_fake/stats        request counters, writes, pending faults, ticket count
    POST /_fake/clock        {"now": "2026-03-01T10:30:00+00:00"} freezes the clock; {"now": null} frees it
    POST /_fake/users        {"name", "email", "role"?, "token"?, "organization"?}  -> 201 {"id"}
    POST /_fake/organizations  {"name"}  -> 201 {"id"}
    POST /_fake/tickets      {"subject", "description"?, "type"?, "priority"?, "status"?, "requester"?,
                              "assignee"?, "organization"?, "tags"?, "external_id"?, "jira_key"?,
                              "custom_fields"?: {"id": value}, "problem_id"?, "created"?, "updated"?,
                              "history"?: [{"at", "from", "to", "author"?}]}  -> 201 {"id"}
    POST /_fake/tickets/{id}/status    {"to", "at"?, "author"?}
    POST /_fake/tickets/{id}/escalate  {"jira_key", "at"?, "author"?}
    POST /_fake/tickets/{id}/comments  {"body", "public"?, "at"?, "author"?}
    POST /_fake/tickets/{id}/delete    {"at"?}
Instants in control bodies are ISO 8601 with an offset; authors and requesters are an email or a user id.
"""

from __future__ import annotations

import base64
import binascii
import itertools
import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

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

DEMO_EMAIL = "agent@vsm.example"
DEMO_TOKEN = "fake-zendesk-token"  # noqa: S105 (a published demo credential of the fake)
DEMO_NAME = "VSM Demo Agent"
DEMO_CUSTOMER_EMAIL = "customer@vsm.example"
JIRA_KEY_FIELD_ID = 360001234567  # the "Jira key" ticket field every fake account has

STATUSES = ("new", "open", "pending", "hold", "solved", "closed")
TICKET_TYPES = ("question", "incident", "problem", "task")
PRIORITIES = ("low", "normal", "high", "urgent")
ROLES = ("end-user", "agent", "admin")
SYSTEM_AUTHOR_ID = -1  # Zendesk's author of changes made by the system (triggers, automations)

EXPORT_PAGE_CAP = 1000
EXPORT_DEFAULT_PAGE = 1000
EXPORT_EXCLUDED_RECENT = timedelta(minutes=1)
LIST_PAGE_CAP = 100
LIST_DEFAULT_PAGE = 100
SHOW_MANY_LIMIT = 100
SIDELOADS = frozenset({"users", "organizations", "groups", "metric_sets"})

NOT_AUTHENTICATED = "Couldn't authenticate you"
TOO_RECENT = "Too recent start_time. Use a start_time older than 1 minute"


def format_instant(instant: datetime) -> str:
    """Zendesk's ``2017-04-19T11:14:21Z``: UTC, whole seconds."""
    return f"{instant.astimezone(UTC):%Y-%m-%dT%H:%M:%SZ}"


def to_zendesk_instant(value: datetime) -> datetime:
    """UTC at Zendesk's second precision; naive datetimes are refused, their zone being a guess."""
    if not isinstance(value, datetime) or value.tzinfo is None:
        raise ValueError(f"Expected an aware datetime (with tzinfo), got {value!r}")
    return value.astimezone(UTC).replace(microsecond=0)


class ZendeskError(HttpError):
    """Zendesk's error ``{"error": code, "description": text}`` (``details`` on validation errors)."""

    def __init__(self, status: int, code: str, description: str | None = None, details: Any = None):
        body: dict[str, Any] = {"error": code}
        if description is not None:
            body["description"] = description
        if details is not None:
            body["details"] = details
        super().__init__(json_response(body, status))
        self.args = (f"{code}: {description}" if description else code,)


def _not_found() -> ZendeskError:
    return ZendeskError(404, "RecordNotFound", "Not found")


def _invalid(field_name: str, message: str) -> ZendeskError:
    return ZendeskError(
        422,
        "RecordInvalid",
        "Record validation errors",
        {field_name: [{"description": message, "error": "InvalidValue"}]},
    )


@dataclass
class User:
    id: int
    name: str
    email: str
    role: str
    token: str | None
    organization_id: int | None
    created_at: datetime


@dataclass
class Organization:
    id: int
    name: str
    created_at: datetime


@dataclass
class Audit:
    id: int
    created_at: datetime
    author_id: int
    events: list[dict[str, Any]]
    channel: str = "api"


@dataclass
class Comment:
    id: int
    audit_id: int
    author_id: int
    body: str
    public: bool
    created_at: datetime


@dataclass
class Ticket:
    id: int
    subject: str
    description: str
    type: str | None
    priority: str | None
    status: str
    requester_id: int
    submitter_id: int
    assignee_id: int | None
    organization_id: int | None
    group_id: int | None
    tags: list[str]
    external_id: str | None
    custom_fields: dict[int, Any]
    problem_id: int | None
    followup_ids: list[int]
    created_at: datetime
    updated_at: datetime
    generated_at: datetime  # generated_timestamp: what the incremental export orders and filters on
    status_updated_at: datetime
    channel: str = "web"
    audits: list[Audit] = field(default_factory=list)
    comments: list[Comment] = field(default_factory=list)

    @property
    def deleted(self) -> bool:
        return self.status == "deleted"

    @property
    def position(self) -> tuple[int, int]:
        return int(self.generated_at.timestamp()), self.id


def _encode_cursor(payload: dict[str, Any]) -> str:
    text = json.dumps(payload, separators=(",", ":"))
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def _decode_cursor(token: str, kind: str) -> dict[str, Any]:
    try:
        payload = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        if isinstance(payload, dict) and payload.get("k") == kind:
            return payload
    except (binascii.Error, ValueError, UnicodeDecodeError):
        pass
    raise ZendeskError(400, "InvalidPaginationParameter", "cursor is invalid")


def _int_param(value: str | None, name: str, default: int, minimum: int = 0) -> int:
    if value is None or value == "":
        return default
    try:
        number = int(value)
    except ValueError:
        raise ZendeskError(400, "InvalidValue", f"{name} must be an integer") from None
    if number < minimum:
        raise ZendeskError(400, "InvalidValue", f"{name} must be at least {minimum}")
    return number


def _parse_iso_instant(text: Any, name: str) -> datetime:
    try:
        return to_zendesk_instant(datetime.fromisoformat(text))
    except (TypeError, ValueError) as error:
        raise InvalidRequestBody(
            f"'{name}' must be an ISO 8601 instant with an offset, not {text!r}"
        ) from error


def _required(body: Any, name: str) -> Any:
    if not isinstance(body, dict) or body.get(name) in (None, ""):
        raise InvalidRequestBody(f"'{name}' is required.")
    return body[name]


def _text(value: Any) -> str | None:
    """Audit event values are strings, even ids and lists (tags are space-separated)."""
    if value is None:
        return None
    if isinstance(value, list):
        return " ".join(str(part) for part in value)
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


class FakeZendesk(FakeApp):
    """An in-memory Zendesk Support account (see the module docstring)."""

    def __init__(self, now: Callable[[], datetime] | None = None, subdomain: str = "vsm-demo") -> None:
        super().__init__(now)
        control = self.control.add
        control("POST", rf"{CONTROL_PREFIX}/users", self._control_add_user, "users")
        control("POST", rf"{CONTROL_PREFIX}/organizations", self._control_add_organization, "organizations")
        control("POST", rf"{CONTROL_PREFIX}/tickets", self._control_add_ticket, "tickets")
        ticket = rf"{CONTROL_PREFIX}/tickets/(?P<id>\d+)"
        control("POST", rf"{ticket}/status", self._control_status, "status")
        control("POST", rf"{ticket}/escalate", self._control_escalate, "escalate")
        control("POST", rf"{ticket}/comments", self._control_comment, "comments")
        control("POST", rf"{ticket}/delete", self._control_delete, "delete")
        self.subdomain = subdomain
        self._build_routes()
        self.reset(subdomain)

    @locked
    def reset(self, subdomain: str | None = None) -> None:
        """An empty account with only the demo agent; a left-out subdomain keeps its current value."""
        super().reset()
        self.subdomain = subdomain or self.subdomain
        self.users: dict[int, User] = {}
        self.organizations: dict[int, Organization] = {}
        self.tickets: dict[int, Ticket] = {}
        self.ticket_fields: dict[int, str] = {JIRA_KEY_FIELD_ID: "Jira key"}
        self.malformed_ids: set[int] = set()
        self._ids = {
            "user": itertools.count(361_000_001),
            "organization": itertools.count(362_000_001),
            "ticket": itertools.count(1),
            "audit": itertools.count(21_000_000_001),
            "event": itertools.count(22_000_000_001),
        }
        self.default_user = self.add_user(DEMO_NAME, DEMO_EMAIL, role="admin", token=DEMO_TOKEN)

    @property
    def label(self) -> str:
        return "Zendesk Support"

    def credentials(self) -> dict[str, str]:
        return {"email": self.default_user.email, "api_token": self.default_user.token or ""}

    def _clock(self) -> datetime:
        return to_zendesk_instant(self.now())

    def _next(self, kind: str) -> int:
        return next(self._ids[kind])

    # Programmatic API --------------------------------------------------------------------------------

    @locked
    def add_user(
        self,
        name: str,
        email: str,
        role: str = "end-user",
        token: str | None = None,
        organization: int | str | None = None,
    ) -> User:
        """A user; one with a `token` can call the API as ``{email}/token:{token}``."""
        if role not in ROLES:
            raise ValueError(f"role must be one of {ROLES}, not {role!r}")
        if any(user.email.lower() == email.lower() for user in self.users.values()):
            raise _invalid("email", f"Email: {email} is already being used by another user")
        organization_id = self._organization(organization).id if organization is not None else None
        user = User(self._next("user"), name, email, role, token, organization_id, self._clock())
        self.users[user.id] = user
        return user

    @locked
    def add_organization(self, name: str) -> Organization:
        if any(org.name.lower() == name.lower() for org in self.organizations.values()):
            raise _invalid("name", "Name: has already been taken")
        organization = Organization(self._next("organization"), name, self._clock())
        self.organizations[organization.id] = organization
        return organization

    @locked
    def add_ticket(
        self,
        subject: str,
        *,
        description: str = "",
        type: str | None = None,  # Zendesk's own field name
        priority: str | None = None,
        status: str | None = None,
        requester: int | str | None = None,
        assignee: int | str | None = None,
        organization: int | str | None = None,
        tags: Sequence[str] = (),
        external_id: str | None = None,
        custom_fields: dict[int, Any] | None = None,
        jira_key: str | None = None,
        problem_id: int | None = None,
        created: datetime | None = None,
        updated: datetime | None = None,
        history: Iterable[Sequence[Any]] = (),
    ) -> int:
        """Create a ticket, possibly backdated, and return its id.

        `history` holds status changes ``(at, from_status, to_status[, author])`` in time order, each
        recorded as an audit with a ``Change`` event. The ticket starts in the first change's
        from-status (else `status`, else "new") and ends in `status` when given, else in the last
        change's to-status. `updated` defaults to the last change (else the creation).
        """
        created_at = to_zendesk_instant(created) if created is not None else self._clock()
        changes = [
            (to_zendesk_instant(at), from_status, to_status, author[0] if author else None)
            for at, from_status, to_status, *author in history
        ]
        instants = [created_at, *(change[0] for change in changes)]
        if any(later < earlier for earlier, later in itertools.pairwise(instants)):
            raise ValueError("History must be in time order, none before the ticket's creation")
        for name in {status, *(name for change in changes for name in change[1:3])} - {None}:
            self._check_status(name)
        self._check_choice("type", type, TICKET_TYPES)
        self._check_choice("priority", priority, PRIORITIES)
        requester_user = self._user(requester) if requester is not None else self._default_requester()
        organization_id = (
            self._organization(organization).id
            if organization is not None
            else requester_user.organization_id
        )
        fields = {int(field_id): value for field_id, value in (custom_fields or {}).items()}
        if jira_key is not None:
            fields[JIRA_KEY_FIELD_ID] = jira_key
        for field_id in fields:
            self.ticket_fields.setdefault(field_id, f"Field {field_id}")
        if problem_id is not None:
            self._ticket(problem_id)
        start_status = changes[0][1] if changes else (status or "new")
        ticket = Ticket(
            id=self._next("ticket"),
            subject=subject,
            description=description or subject,
            type=type,
            priority=priority,
            status=start_status,
            requester_id=requester_user.id,
            submitter_id=requester_user.id,
            assignee_id=self._user(assignee).id if assignee is not None else None,
            organization_id=organization_id,
            group_id=None,
            tags=list(tags),
            external_id=external_id,
            custom_fields=fields,
            problem_id=problem_id,
            followup_ids=[],
            created_at=created_at,
            updated_at=created_at,
            generated_at=created_at,
            status_updated_at=created_at,
        )
        self.tickets[ticket.id] = ticket
        self._record_creation(ticket, requester_user.id, created_at)
        for at, from_status, to_status, author in changes:
            if ticket.status != from_status:
                ticket.status = from_status  # recorded as given: histories need not be continuous
            self._commit(ticket, at, self._author_id(author), {"status": to_status})
        if status is not None and ticket.status != status:
            ticket.status = status
        if updated is not None:
            updated_at = to_zendesk_instant(updated)
            if updated_at < ticket.updated_at:
                raise ValueError(f"updated ({updated_at}) is before the ticket's last change")
            ticket.updated_at = ticket.generated_at = updated_at
        return ticket.id

    @locked
    def change_status(
        self, ticket_id: int, to_status: str, at: datetime | None = None, author: int | str | None = None
    ) -> None:
        """Move a ticket to `to_status` with an audit, as an agent would."""
        ticket = self._ticket(ticket_id)
        self._check_status(to_status)
        if ticket.status == to_status:
            raise ValueError(f"ticket {ticket_id} is already {to_status}")
        instant = to_zendesk_instant(at) if at is not None else self._clock()
        self._commit(ticket, instant, self._author_id(author), {"status": to_status})

    @locked
    def escalate(
        self, ticket_id: int, jira_key: str, at: datetime | None = None, author: int | str | None = None
    ) -> None:
        """Set the ticket's "Jira key" custom field, as an escalation to engineering does."""
        ticket = self._ticket(ticket_id)
        instant = to_zendesk_instant(at) if at is not None else self._clock()
        self._commit(
            ticket, instant, self._author_id(author), {"custom_fields": {JIRA_KEY_FIELD_ID: jira_key}}
        )

    @locked
    def add_comment(
        self,
        ticket_id: int,
        body: str,
        public: bool = True,
        at: datetime | None = None,
        author: int | str | None = None,
    ) -> None:
        ticket = self._ticket(ticket_id)
        instant = to_zendesk_instant(at) if at is not None else self._clock()
        self._commit(ticket, instant, self._author_id(author), {}, comment=(body, public))

    @locked
    def delete(self, ticket_id: int, at: datetime | None = None) -> None:
        """Soft-delete: the ticket leaves the API but stays in the export with status "deleted"."""
        ticket = self._ticket(ticket_id)
        instant = to_zendesk_instant(at) if at is not None else self._clock()
        ticket.status = "deleted"
        ticket.updated_at = ticket.generated_at = max(instant, ticket.updated_at)

    @locked
    def malformed(self, ticket_id: int) -> None:
        """From now on render the ticket broken (``created_at`` "not-a-date", no ``status``)."""
        self.malformed_ids.add(self._ticket(ticket_id, include_deleted=True).id)

    @locked
    def clear_faults(self) -> None:
        super().clear_faults()
        self.malformed_ids.clear()

    def configure_faults(self, settings: dict[str, Any]) -> None:
        super().configure_faults(settings)
        for ticket_id in settings.get("malformed", ()):
            self.malformed(int(ticket_id))

    def stats(self) -> dict[str, Any]:
        return {
            **super().stats(),
            "tickets": sum(1 for ticket in self.tickets.values() if not ticket.deleted),
            "deleted_tickets": sum(1 for ticket in self.tickets.values() if ticket.deleted),
            "malformed": sorted(self.malformed_ids),
        }

    def jira_key(self, ticket_id: int) -> Any:
        return self._ticket(ticket_id, include_deleted=True).custom_fields.get(JIRA_KEY_FIELD_ID)

    # State helpers -----------------------------------------------------------------------------------

    def _check_status(self, status: str) -> None:
        if status not in STATUSES:
            raise _invalid("status", f"Status: {status} is not valid (one of {', '.join(STATUSES)})")

    @staticmethod
    def _check_choice(name: str, value: Any, choices: Sequence[str]) -> None:
        if value is not None and value not in choices:
            raise _invalid(name, f"{name.capitalize()}: {value} is not valid")

    def _ticket(self, ticket_id: Any, include_deleted: bool = False) -> Ticket:
        try:
            ticket = self.tickets.get(int(ticket_id))
        except (TypeError, ValueError):
            ticket = None
        if ticket is None or (ticket.deleted and not include_deleted):
            raise _not_found()
        return ticket

    def _user(self, reference: int | str | User) -> User:
        if isinstance(reference, User):
            return reference
        for user in self.users.values():
            if str(reference).lower() in (str(user.id), user.email.lower()):
                return user
        raise _not_found()

    def _author_id(self, reference: int | str | None) -> int:
        if reference is None:
            return self.default_user.id
        if str(reference) == str(SYSTEM_AUTHOR_ID):
            return SYSTEM_AUTHOR_ID
        return self._user(reference).id

    def _organization(self, reference: int | str) -> Organization:
        for organization in self.organizations.values():
            if str(reference).lower() in (str(organization.id), organization.name.lower()):
                return organization
        raise _not_found()

    def _default_requester(self) -> User:
        """The demo customer, who asks whenever a ticket names no requester."""
        for user in self.users.values():
            if user.email == DEMO_CUSTOMER_EMAIL:
                return user
        return self.add_user("Demo Customer", DEMO_CUSTOMER_EMAIL)

    def _event(self, event_type: str, **values: Any) -> dict[str, Any]:
        return {"id": self._next("event"), "type": event_type, **values}

    def _record_creation(self, ticket: Ticket, author_id: int, at: datetime) -> None:
        audit = Audit(self._next("audit"), at, author_id, [], channel=ticket.channel)
        comment = Comment(self._next("event"), audit.id, author_id, ticket.description, True, at)
        audit.events.append(self._comment_event(comment))
        for name, value in (
            ("subject", ticket.subject),
            ("requester_id", ticket.requester_id),
            ("type", ticket.type),
            ("priority", ticket.priority),
            ("status", ticket.status),
            ("tags", ticket.tags),
            ("organization_id", ticket.organization_id),
            *((str(field_id), value) for field_id, value in ticket.custom_fields.items()),
        ):
            if value not in (None, []):
                audit.events.append(self._event("Create", field_name=name, value=_text(value)))
        ticket.audits.append(audit)
        ticket.comments.append(comment)

    def _comment_event(self, comment: Comment) -> dict[str, Any]:
        return {
            "id": comment.id,
            "type": "Comment",
            "author_id": comment.author_id,
            "body": comment.body,
            "html_body": f'<div class="zd-comment" dir="auto"><p dir="auto">{comment.body}</p></div>',
            "plain_body": comment.body,
            "public": comment.public,
            "attachments": [],
            "audit_id": comment.audit_id,
        }

    def _commit(
        self,
        ticket: Ticket,
        at: datetime,
        author_id: int,
        changes: dict[str, Any],
        comment: tuple[str, bool] | None = None,
    ) -> Audit:
        """Apply `changes` (ticket attributes; ``custom_fields`` as {id: value}) as one audit."""
        audit = Audit(self._next("audit"), at, author_id, [])
        if comment is not None:
            body, public = comment
            recorded = Comment(self._next("event"), audit.id, author_id, body, public, at)
            ticket.comments.append(recorded)
            audit.events.append(self._comment_event(recorded))
        for name, value in changes.items():
            if name == "custom_fields":
                for field_id, field_value in value.items():
                    before = ticket.custom_fields.get(field_id)
                    if before != field_value:
                        ticket.custom_fields[field_id] = field_value
                        self.ticket_fields.setdefault(field_id, f"Field {field_id}")
                        audit.events.append(
                            self._event(
                                "Change",
                                field_name=str(field_id),
                                value=_text(field_value),
                                previous_value=_text(before),
                            )
                        )
                continue
            before = getattr(ticket, name)
            if before == value:
                continue
            setattr(ticket, name, value)
            if name == "status":
                ticket.status_updated_at = at
            audit.events.append(
                self._event("Change", field_name=name, value=_text(value), previous_value=_text(before))
            )
        ticket.audits.append(audit)
        ticket.updated_at = max(ticket.updated_at, at)
        ticket.generated_at = max(ticket.generated_at, at)
        return audit

    # Rendering ----------------------------------------------------------------------------------------

    def _api(self, request: Request) -> str:
        return f"{request.base_url}/api/v2"

    def _ticket_json(self, ticket: Ticket, request: Request) -> dict[str, Any]:
        custom = [
            {"id": field_id, "value": value} for field_id, value in sorted(ticket.custom_fields.items())
        ]
        rendered = {
            "url": f"{self._api(request)}/tickets/{ticket.id}.json",
            "id": ticket.id,
            "external_id": ticket.external_id,
            "via": {"channel": ticket.channel, "source": {"from": {}, "to": {}, "rel": None}},
            "created_at": format_instant(ticket.created_at),
            "updated_at": format_instant(ticket.updated_at),
            "generated_timestamp": int(ticket.generated_at.timestamp()),
            "type": ticket.type,
            "subject": ticket.subject,
            "raw_subject": ticket.subject,
            "description": ticket.description,
            "priority": ticket.priority,
            "status": ticket.status,
            "recipient": None,
            "requester_id": ticket.requester_id,
            "submitter_id": ticket.submitter_id,
            "assignee_id": ticket.assignee_id,
            "organization_id": ticket.organization_id,
            "group_id": ticket.group_id,
            "collaborator_ids": [],
            "follower_ids": [],
            "email_cc_ids": [],
            "forum_topic_id": None,
            "problem_id": ticket.problem_id,
            "has_incidents": any(other.problem_id == ticket.id for other in self.tickets.values()),
            "is_public": True,
            "due_at": None,
            "tags": list(ticket.tags),
            "custom_fields": custom,
            "satisfaction_rating": None,
            "sharing_agreement_ids": [],
            "fields": [dict(entry) for entry in custom],
            "followup_ids": list(ticket.followup_ids),
            "ticket_form_id": 360000000001,
            "brand_id": 360000000002,
            "allow_channelback": False,
            "allow_attachments": True,
            "from_messaging_channel": False,
        }
        if ticket.id in self.malformed_ids:
            rendered["created_at"] = "not-a-date"
            rendered.pop("status")
        return rendered

    def _user_json(self, user: User, request: Request) -> dict[str, Any]:
        return {
            "id": user.id,
            "url": f"{self._api(request)}/users/{user.id}.json",
            "name": user.name,
            "email": user.email,
            "created_at": format_instant(user.created_at),
            "updated_at": format_instant(user.created_at),
            "time_zone": "UTC",
            "iana_time_zone": "Etc/UTC",
            "locale": "en-US",
            "organization_id": user.organization_id,
            "role": user.role,
            "verified": True,
            "external_id": None,
            "tags": [],
            "active": True,
            "suspended": False,
            "user_fields": {},
        }

    def _organization_json(self, organization: Organization, request: Request) -> dict[str, Any]:
        return {
            "id": organization.id,
            "url": f"{self._api(request)}/organizations/{organization.id}.json",
            "name": organization.name,
            "created_at": format_instant(organization.created_at),
            "updated_at": format_instant(organization.created_at),
            "domain_names": [],
            "tags": [],
            "organization_fields": {},
        }

    def _metric_set_json(self, ticket: Ticket, request: Request) -> dict[str, Any]:
        solved = next(
            (
                audit.created_at
                for audit in reversed(ticket.audits)
                for event in audit.events
                if event.get("field_name") == "status" and event.get("value") == "solved"
            ),
            None,
        )
        reopens = sum(
            1
            for audit in ticket.audits
            for event in audit.events
            if event.get("type") == "Change"
            and event.get("field_name") == "status"
            and event.get("previous_value") in ("solved", "closed")
        )
        return {
            "url": f"{self._api(request)}/ticket_metrics/{ticket.id}.json",
            "id": ticket.id + 900_000_000,
            "ticket_id": ticket.id,
            "created_at": format_instant(ticket.created_at),
            "updated_at": format_instant(ticket.updated_at),
            "status_updated_at": format_instant(ticket.status_updated_at),
            "solved_at": format_instant(solved) if solved else None,
            "reopens": reopens,
            "replies": max(0, len(ticket.comments) - 1),
        }

    def _audit_json(self, ticket: Ticket, audit: Audit) -> dict[str, Any]:
        return {
            "id": audit.id,
            "ticket_id": ticket.id,
            "created_at": format_instant(audit.created_at),
            "author_id": audit.author_id,
            "metadata": {"system": {"client": "vsm-fake", "ip_address": "127.0.0.1"}, "custom": {}},
            "via": {"channel": audit.channel, "source": {"from": {}, "to": {}, "rel": None}},
            "events": [dict(event) for event in audit.events],
        }

    def _comment_json(self, comment: Comment) -> dict[str, Any]:
        event = self._comment_event(comment)
        event.pop("audit_id")
        return {
            **event,
            "type": "Comment",
            "audit_id": comment.audit_id,
            "created_at": format_instant(comment.created_at),
            "metadata": {"system": {}, "custom": {}},
            "via": {"channel": "api", "source": {"from": {}, "to": {}, "rel": None}},
        }

    def _sideloads(self, request: Request, tickets: list[Ticket]) -> dict[str, Any]:
        requested = {name.strip() for part in request.query.get("include", []) for name in part.split(",")}
        requested &= SIDELOADS
        loaded: dict[str, Any] = {}
        if "users" in requested:
            ids = {
                user_id
                for ticket in tickets
                for user_id in (ticket.requester_id, ticket.submitter_id, ticket.assignee_id)
                if user_id is not None
            }
            loaded["users"] = [self._user_json(self.users[user_id], request) for user_id in sorted(ids)]
        if "organizations" in requested:
            ids = {ticket.organization_id for ticket in tickets if ticket.organization_id is not None}
            loaded["organizations"] = [
                self._organization_json(self.organizations[org_id], request) for org_id in sorted(ids)
            ]
        if "groups" in requested:
            loaded["groups"] = []
        if "metric_sets" in requested:
            loaded["metric_sets"] = [
                self._metric_set_json(ticket, request) for ticket in tickets if not ticket.deleted
            ]
        return loaded

    # HTTP ---------------------------------------------------------------------------------------------

    def _build_routes(self) -> None:
        self.router.routes.clear()
        add = self.router.add
        api = "/api/v2"
        ticket = rf"{api}/tickets/(?P<id>\d+)"
        add("GET", rf"{api}/users/me\.json", self._http_me, "users/me")
        add("GET", rf"{api}/users/show_many\.json", self._http_show_many, "users/show_many")
        add(
            "GET", rf"{api}/incremental/tickets/cursor\.json", self._http_export, "incremental/tickets/cursor"
        )
        add("POST", rf"{api}/tickets\.json", self._http_create, "tickets")
        add("GET", rf"{ticket}\.json", self._http_show, "ticket")
        add("PUT", rf"{ticket}\.json", self._http_update, "ticket")
        add("DELETE", rf"{ticket}\.json", self._http_delete, "ticket")
        add("GET", rf"{ticket}/audits\.json", self._http_audits, "ticket/audits")
        add("GET", rf"{ticket}/comments\.json", self._http_comments, "ticket/comments")

    def authenticate(self, request: Request) -> User:
        credentials = basic_credentials(request)
        user = None
        if credentials is not None:
            login, secret = credentials
            email, separator, kind = login.rpartition("/")
            if separator and kind == "token":
                user = next(
                    (
                        known
                        for known in self.users.values()
                        if known.email.lower() == email.lower() and known.token and known.token == secret
                    ),
                    None,
                )
        if user is None or user.role == "end-user":
            raise HttpError(
                json_response(
                    {"error": NOT_AUTHENTICATED}, 401, [("WWW-Authenticate", 'Basic realm="Web Password"')]
                )
            )
        return user

    def error_response(self, status: int, message: str, headers: Iterable[tuple[str, str]] = ()) -> Response:
        code = {
            400: "InvalidValue",
            404: "InvalidEndpoint",
            409: "UpdateConflict",
            422: "RecordInvalid",
            429: "APIRateLimitExceeded",
        }.get(status, "InternalServerError" if status >= 500 else "InvalidValue")
        return json_response({"error": code, "description": message}, status, headers)

    def rate_limited_response(self, retry_after_seconds: int) -> Response:
        headers = [
            ("Retry-After", str(retry_after_seconds)),
            ("X-Rate-Limit", "700"),
            ("X-Rate-Limit-Remaining", "0"),
            ("ratelimit-limit", "700"),
            ("ratelimit-remaining", "0"),
            ("ratelimit-reset", str(retry_after_seconds)),
        ]
        return self.error_response(429, "Number of allowed API requests per minute exceeded", headers)

    def _http_me(self, request: Request) -> Response:
        return json_response({"user": self._user_json(request.user, request)})

    def _http_show_many(self, request: Request) -> Response:
        """``?ids=1,2,3`` (at most 100); unknown ids are left out, as Zendesk does."""
        raw = [part.strip() for part in (request.arg("ids") or "").split(",") if part.strip()]
        if not raw or len(raw) > SHOW_MANY_LIMIT or not all(part.isdigit() for part in raw):
            raise ZendeskError(400, "InvalidValue", f"ids must be 1 to {SHOW_MANY_LIMIT} comma-separated ids")
        users = [self.users[int(part)] for part in dict.fromkeys(raw) if int(part) in self.users]
        return json_response(
            {
                "users": [self._user_json(user, request) for user in users],
                "next_page": None,
                "previous_page": None,
                "count": len(users),
            }
        )

    def _http_export(self, request: Request) -> Response:
        now = self._clock()
        per_page = min(
            _int_param(request.arg("per_page"), "per_page", EXPORT_DEFAULT_PAGE, minimum=1), EXPORT_PAGE_CAP
        )
        exclude_deleted = (request.arg("exclude_deleted") or "").lower() == "true"
        cursor = request.arg("cursor")
        if cursor:
            try:
                first, second = _decode_cursor(cursor, "export")["after"]
                after = (int(first), int(second))
            except (KeyError, TypeError, ValueError):
                raise ZendeskError(400, "InvalidPaginationParameter", "cursor is invalid") from None
        else:
            if request.arg("start_time") in (None, ""):
                raise ZendeskError(400, "InvalidValue", "start_time or cursor is required")
            start_time = _int_param(request.arg("start_time"), "start_time", 0)
            if start_time > (now - EXPORT_EXCLUDED_RECENT).timestamp():
                raise ZendeskError(400, "InvalidValue", TOO_RECENT)
            after = (start_time, -1)
        cutoff = int((now - EXPORT_EXCLUDED_RECENT).timestamp())
        candidates = sorted(
            (
                ticket
                for ticket in self.tickets.values()
                if ticket.position > after
                and ticket.position[0] <= cutoff
                and not (exclude_deleted and ticket.deleted)
            ),
            key=lambda ticket: ticket.position,
        )
        page = candidates[:per_page]
        end_of_stream = len(candidates) <= per_page
        last = list(page[-1].position) if page else list(after)
        after_cursor = _encode_cursor({"k": "export", "after": last})
        before_cursor = _encode_cursor({"k": "export", "after": list(after)}) if page else None
        url = f"{self._api(request)}/incremental/tickets/cursor.json"
        extra = {"per_page": per_page}
        if request.arg("include"):
            extra["include"] = request.arg("include")
        if exclude_deleted:
            extra["exclude_deleted"] = "true"
        return json_response(
            {
                "tickets": [self._ticket_json(ticket, request) for ticket in page],
                "after_url": f"{url}?{urlencode({'cursor': after_cursor, **extra})}",
                "after_cursor": after_cursor,
                "before_url": f"{url}?{urlencode({'cursor': before_cursor, **extra})}"
                if before_cursor
                else None,
                "before_cursor": before_cursor,
                "end_of_stream": end_of_stream,
                **self._sideloads(request, page),
            }
        )

    def _http_show(self, request: Request) -> Response:
        ticket = self._ticket(request.params["id"])
        return json_response(
            {"ticket": self._ticket_json(ticket, request), **self._sideloads(request, [ticket])}
        )

    def _ticket_payload(self, request: Request) -> dict[str, Any]:
        body = request.json_object()
        payload = body.get("ticket")
        if not isinstance(payload, dict):
            raise ZendeskError(400, "InvalidValue", "The request body must hold a 'ticket' object")
        return payload

    def _changes_from(self, payload: dict[str, Any]) -> tuple[dict[str, Any], tuple[str, bool] | None]:
        """The attribute changes and the comment of a create/update payload, validated."""
        changes: dict[str, Any] = {}
        for name in ("status", "priority", "type"):
            if name in payload:
                value = payload[name]
                choices = {"status": STATUSES, "priority": PRIORITIES, "type": TICKET_TYPES}[name]
                if value is not None and value not in choices:
                    raise _invalid(name, f"{name.capitalize()}: {value} is not valid")
                if name == "status" and value is None:
                    raise _invalid(name, "Status: cannot be blank")
                changes[name] = value
        for name in ("subject", "external_id"):
            if name in payload:
                changes[name] = None if payload[name] is None else str(payload[name])
        if "tags" in payload:
            tags = payload["tags"]
            if not isinstance(tags, list) or not all(isinstance(tag, str) for tag in tags):
                raise _invalid("tags", "Tags: must be a list of strings")
            changes["tags"] = list(tags)
        for name in ("assignee_id", "requester_id", "organization_id", "group_id", "problem_id"):
            if name in payload:
                value = payload[name]
                if value is not None:
                    if name in ("assignee_id", "requester_id"):
                        self._user(value)
                    elif name == "organization_id":
                        self._organization(value)
                    elif name == "problem_id":
                        self._ticket(value)
                    value = int(value)
                changes[name] = value
        custom = payload.get("custom_fields", payload.get("fields"))
        if custom is not None:
            if not isinstance(custom, list) or not all(
                isinstance(entry, dict) and "id" in entry for entry in custom
            ):
                raise _invalid("custom_fields", "Custom fields: must be a list of {id, value}")
            changes["custom_fields"] = {int(entry["id"]): entry.get("value") for entry in custom}
        comment = None
        if "comment" in payload:
            raw = payload["comment"]
            if isinstance(raw, str):
                raw = {"body": raw}
            if not isinstance(raw, dict) or not (raw.get("body") or raw.get("html_body")):
                raise _invalid("comment", "Comment: cannot be blank")
            comment = (str(raw.get("body") or raw.get("html_body")), bool(raw.get("public", True)))
        return changes, comment

    def _http_update(self, request: Request) -> Response:
        ticket = self._ticket(request.params["id"])
        payload = self._ticket_payload(request)
        if ticket.status == "closed":
            raise _invalid("status", "Status: closed prevents ticket update")
        changes, comment = self._changes_from(payload)
        audit = self._commit(ticket, self._clock(), request.user.id, changes, comment=comment)
        return json_response(
            {"ticket": self._ticket_json(ticket, request), "audit": self._audit_json(ticket, audit)}
        )

    def _http_create(self, request: Request) -> Response:
        payload = self._ticket_payload(request)
        changes, comment = self._changes_from(payload)
        if comment is None:
            raise _invalid("description", "Description: cannot be blank")
        subject = changes.pop("subject", None) or comment[0][:80]
        ticket_id = self.add_ticket(
            subject,
            description=comment[0],
            type=changes.pop("type", None),
            priority=changes.pop("priority", None),
            status=changes.pop("status", None) or "new",
            requester=changes.pop("requester_id", None) or request.user.id,
            tags=changes.pop("tags", ()),
            external_id=changes.pop("external_id", None),
            custom_fields=changes.pop("custom_fields", None),
            problem_id=changes.pop("problem_id", None),
        )
        ticket = self.tickets[ticket_id]
        for name, value in changes.items():
            setattr(ticket, name, value)
        return json_response(
            {
                "ticket": self._ticket_json(ticket, request),
                "audit": self._audit_json(ticket, ticket.audits[0]),
            },
            201,
        )

    def _http_delete(self, request: Request) -> Response:
        self.delete(self._ticket(request.params["id"]).id)
        return empty_response(204)

    def _paged(self, request: Request, name: str, records: list[dict[str, Any]], path: str) -> Response:
        """Cursor paging when ``page[size]``/``page[after]`` is given, else offset paging."""
        url = f"{self._api(request)}/{path}"
        after = request.arg("page[after]") or request.arg("page[before]")
        if request.arg("page[size]") is not None or after is not None:
            size = min(
                _int_param(request.arg("page[size]"), "page[size]", LIST_DEFAULT_PAGE, minimum=1),
                LIST_PAGE_CAP,
            )
            try:
                start = int(_decode_cursor(after, name)["after"]) if after else 0
            except (KeyError, TypeError, ValueError):
                raise ZendeskError(400, "InvalidPaginationParameter", "cursor is invalid") from None
            chunk = records[start : start + size]
            has_more = start + size < len(records)
            after_cursor = _encode_cursor({"k": name, "after": start + len(chunk)}) if chunk else None
            before_cursor = _encode_cursor({"k": name, "after": max(0, start - size)}) if chunk else None
            return json_response(
                {
                    name: chunk,
                    "meta": {
                        "has_more": has_more,
                        "after_cursor": after_cursor,
                        "before_cursor": before_cursor,
                    },
                    "links": {
                        "prev": f"{url}?{urlencode({'page[before]': before_cursor, 'page[size]': size})}"
                        if before_cursor
                        else None,
                        "next": f"{url}?{urlencode({'page[after]': after_cursor, 'page[size]': size})}"
                        if has_more
                        else None,
                    },
                }
            )
        per_page = min(
            _int_param(request.arg("per_page"), "per_page", LIST_DEFAULT_PAGE, minimum=1), LIST_PAGE_CAP
        )
        page = _int_param(request.arg("page"), "page", 1, minimum=1)
        chunk = records[(page - 1) * per_page : page * per_page]
        return json_response(
            {
                name: chunk,
                "next_page": f"{url}?page={page + 1}&per_page={per_page}"
                if page * per_page < len(records)
                else None,
                "previous_page": f"{url}?page={page - 1}&per_page={per_page}" if page > 1 else None,
                "count": len(records),
            }
        )

    def _http_audits(self, request: Request) -> Response:
        ticket = self._ticket(request.params["id"])
        audits = [self._audit_json(ticket, audit) for audit in ticket.audits]
        return self._paged(request, "audits", audits, f"tickets/{ticket.id}/audits.json")

    def _http_comments(self, request: Request) -> Response:
        ticket = self._ticket(request.params["id"])
        comments = [self._comment_json(comment) for comment in ticket.comments]
        return self._paged(request, "comments", comments, f"tickets/{ticket.id}/comments.json")

    # Control endpoints (fake-only) -------------------------------------------------------------------

    def _control_add_user(self, request: Request) -> Response:
        body = request.json_object()
        user = self.add_user(
            _required(body, "name"),
            _required(body, "email"),
            role=body.get("role", "end-user"),
            token=body.get("token"),
            organization=body.get("organization"),
        )
        return json_response({"id": user.id}, 201)

    def _control_add_organization(self, request: Request) -> Response:
        organization = self.add_organization(_required(request.json_object(), "name"))
        return json_response({"id": organization.id}, 201)

    def _control_add_ticket(self, request: Request) -> Response:
        body = request.json_object()
        history = body.get("history") or []
        if not isinstance(history, list):
            raise InvalidRequestBody("'history' must be a list")
        try:
            ticket_id = self.add_ticket(
                _required(body, "subject"),
                description=body.get("description") or "",
                type=body.get("type"),
                priority=body.get("priority"),
                status=body.get("status"),
                requester=body.get("requester"),
                assignee=body.get("assignee"),
                organization=body.get("organization"),
                tags=body.get("tags") or (),
                external_id=body.get("external_id"),
                custom_fields=body.get("custom_fields"),
                jira_key=body.get("jira_key"),
                problem_id=body.get("problem_id"),
                created=_parse_iso_instant(body["created"], "created") if body.get("created") else None,
                updated=_parse_iso_instant(body["updated"], "updated") if body.get("updated") else None,
                history=[
                    (
                        _parse_iso_instant(_required(change, "at"), "at"),
                        _required(change, "from"),
                        _required(change, "to"),
                        change.get("author"),
                    )
                    for change in history
                ],
            )
        except ValueError as error:
            raise InvalidRequestBody(str(error)) from error
        return json_response({"id": ticket_id}, 201)

    def _control_at(self, body: dict[str, Any]) -> datetime | None:
        return _parse_iso_instant(body["at"], "at") if body.get("at") else None

    def _control_status(self, request: Request) -> Response:
        body = request.json_object()
        try:
            self.change_status(
                int(request.params["id"]), _required(body, "to"), self._control_at(body), body.get("author")
            )
        except ValueError as error:
            raise InvalidRequestBody(str(error)) from error
        return empty_response(204)

    def _control_escalate(self, request: Request) -> Response:
        body = request.json_object()
        self.escalate(
            int(request.params["id"]), _required(body, "jira_key"), self._control_at(body), body.get("author")
        )
        return empty_response(204)

    def _control_comment(self, request: Request) -> Response:
        body = request.json_object()
        self.add_comment(
            int(request.params["id"]),
            _required(body, "body"),
            bool(body.get("public", True)),
            self._control_at(body),
            body.get("author"),
        )
        return empty_response(204)

    def _control_delete(self, request: Request) -> Response:
        self.delete(int(request.params["id"]), self._control_at(request.json_object()))
        return empty_response(204)
