"""A faithful fake of the Salesforce REST API (an org with a feature-request custom object and Case).

Shapes follow connectors-reference.md §5 and Salesforce's documented responses (the restforce
fixtures): the OAuth token response, ``{"totalSize", "done", "nextRecordsUrl"?, "records": [{"attributes":
{"type", "url"}, ...}]}`` query results, relationship fields as nested records, ``201 {"id", "success",
"errors"}`` creates and ``204`` updates, errors as a JSON **array** ``[{"message", "errorCode",
"fields"?}]``, timestamps like ``2024-05-01T13:00:00.000+0000`` (UTC, whole seconds, as Salesforce
stores them), 18-character ids with their case-checksum suffix, ``Sforce-Limit-Info`` on every REST answer.

Auth
    ``POST /services/oauth2/token`` (form-encoded) with ``grant_type=client_credentials`` and the
    connected app's ``client_id``/``client_secret`` (in the form or as HTTP Basic) answers
    ``{"access_token", "signature", "scope", "instance_url", "id", "token_type", "issued_at"}``; wrong
    credentials are Salesforce's OAuth error ``400 {"error", "error_description"}``. Other grant types
    (password, JWT bearer) answer ``unsupported_grant_type``. A token expires after `session_seconds`
    on the fake's clock, or on demand (``expire_tokens``); then the API answers
    ``401 [{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}]``.
    ``GET /id/{orgId}/{userId}`` is the identity URL of the token response.

Query (``GET /services/data/vNN.N/query?q=...``, any version; also ``/queryAll``)
    A strictly parsed SOQL subset: ``SELECT f, Rel.f, ... FROM Object [WHERE cond AND cond ...]
    [ORDER BY f [ASC|DESC] [NULLS FIRST|LAST], ...] [LIMIT n]``; conditions ``f = != <> < <= > >=
    literal`` and ``f IN (literal, ...)``, optionally in parentheses (which only group AND-ed clauses).
    Literals: 'quoted strings', numbers, true/false/null, unquoted datetimes ``YYYY-MM-DDThh:mm:ssZ`` or
    ``±hh:mm`` (whole seconds) and dates ``YYYY-MM-DD``. A quoted datetime, an unknown field, object or
    relationship, OR/NOT/LIKE, date literals, sub-queries... answer 400 with ``MALFORMED_QUERY``,
    ``INVALID_FIELD`` or ``INVALID_TYPE``. String comparisons ignore case, as in SOQL. Results are
    snapshotted by a query locator: ``nextRecordsUrl`` (``/services/data/vNN.N/query/01g...-2000``,
    including the mount prefix) pages through them, so records sharing one ``SystemModstamp`` across a
    page boundary are neither skipped nor repeated. The batch is ``Sforce-Query-Options: batchSize=N``
    (200..2000, default 2000) capped by `batch_cap` (Salesforce "may return fewer").

Objects
    ``User``, ``Account``, ``Opportunity`` (``Amount``, ``StageName``, ``AccountId``); the request object
    (`request_object`, default ``Feature_Request__c``: auto-number ``Name`` ``FR-000001``, ``Title__c``,
    ``Description__c``, ``Status__c``, ``Priority__c``, ``Account__c``, ``Opportunity__c``,
    ``Deal_Breaker__c``, ``Linked_Item__c``) with field history in ``Feature_Request__History``
    (``ParentId``); ``Case`` (``CaseNumber``, ``Subject``, ``Status``, ``Priority``, ``Origin``,
    ``AccountId``, ``IsClosed``, ``ClosedDate``, ``Feature_Request__c``) with ``CaseHistory``
    (``CaseId``). Every record has ``CreatedDate``, ``LastModifiedDate``, ``SystemModstamp``,
    ``CreatedById``, ``LastModifiedById``. Status is tracked: each change adds a history row (``Field``,
    ``OldValue``, ``NewValue``, ``CreatedDate``, ``CreatedById``), and creation adds a ``created`` row.

Writes
    ``POST /services/data/vNN.N/sobjects/{Type}/`` -> 201 ``{"id", "success": true, "errors": []}``;
    ``PATCH /sobjects/{Type}/{Id}`` -> 204; ``GET /sobjects/{Type}/{Id}`` -> every field. Unknown
    fields (``INVALID_FIELD``), read-only ones (``INVALID_FIELD_FOR_INSERT_UPDATE``), bad picklist
    values (``INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST``) and dangling lookups
    (``FIELD_INTEGRITY_EXCEPTION``) are 400s naming the ``fields``.

Rate limits and faults
    ``rate_limit(n)``: the next n requests answer 403 ``REQUEST_LIMIT_EXCEEDED`` (no Retry-After, as
    Salesforce sends none); a `daily_limit` of API calls does the same once spent. ``unavailable(n,
    retry_after)``: 503 with Retry-After. ``fail``, ``slow`` (from FakeApp), ``malformed(key)``: the
    record's dates come back unreadable, ``expire_tokens(after=n)``.

Programmatic API (tests and the demo generator)
    ``add_user``, ``add_account``, ``add_opportunity``, ``add_request`` and ``add_case`` (backdated, with
    status ``history``), ``set_status``, ``edit``, ``touch`` (a system change: SystemModstamp only),
    ``record``, ``history_of``, ``find_id``, ``add_field``; ``expire_tokens``, ``unavailable``,
    ``malformed``; ``requests`` / ``writes`` / ``queries`` (the SOQL received) / ``token_requests``.

Control endpoints: FAKE-ONLY, never on a real Salesforce. No credentials; never faulted or counted.
    POST /_fake/reset          {"request_object"?, "batch_cap"?, "daily_limit"?, "session_seconds"?}
    POST /_fake/faults         {"rate_limit": {"count"}, "unavailable": {"count", "retry_after"?},
                                "fail": {"count", "status"?}, "slow": {"count", "seconds"},
                                "malformed": ["FR-000001"], "expire_tokens": {"after"?}, "clear": true}
    GET  /_fake/stats          counters, writes, faults, record counts, API usage
    POST /_fake/clock          {"now": "2026-03-01T10:30:00+00:00"} | {"now": null}
    POST /_fake/accounts       {"name"}                                      -> 201 {"id"}
    POST /_fake/opportunities  {"name", "amount", "account"?, "stage"?}      -> 201 {"id"}
    POST /_fake/requests       {"title", "status"?, "created"?, "updated"?, "account"?, "amount"?,
                                "deal_breaker"?, "linked_item"?, "fields"?,
                                "history"?: [{"at", "from", "to", "author"?}]}  -> 201 {"id", "key"}
    POST /_fake/cases          {"subject", "status"?, "created"?, "updated"?, "account"?, "request"?,
                                "fields"?, "history"?: [...]}                 -> 201 {"id", "key"}
    POST /_fake/records/{key}/status   {"to", "at"?, "author"?}              -> 204
    POST /_fake/records/{key}/edit     {"fields", "at"?, "author"?}          -> 204
    POST /_fake/tokens/expire          {"after"?: 0}                         -> 204
Instants in control bodies are ISO 8601 with an offset; authors are user names.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import itertools
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

from connectors.fakes.wsgi import (
    CONTROL_PREFIX,
    FakeApp,
    HttpError,
    InvalidRequestBody,
    Request,
    Response,
    bearer_token,
    empty_response,
    json_response,
    locked,
)

DEMO_CLIENT_ID = "3MVG9fakeVsmDemoConnectedAppClientId.vsm"
DEMO_CLIENT_SECRET = "fake-salesforce-secret"  # noqa: S105 (a published demo credential of the fake)
DEMO_USER = "VSM Integration"
ORG_ID = "00DRO0000000001MAA"
DEFAULT_REQUEST_OBJECT = "Feature_Request__c"
REQUEST_STATUSES = ("New", "Under Review", "Planned", "In Development", "Delivered", "Declined")
CASE_STATUSES = ("New", "Working", "Escalated", "Closed")
PRIORITIES = ("High", "Medium", "Low")
CASE_ORIGINS = ("Phone", "Email", "Web")
STAGES = ("Prospecting", "Qualification", "Negotiation/Review", "Closed Won", "Closed Lost")
DEFAULT_BATCH = 2000
MIN_BATCH = 200
DEFAULT_DAILY_LIMIT = 15000
DEFAULT_SESSION_SECONDS = 2 * 60 * 60
API_VERSIONS = ("59.0", "60.0", "61.0", "62.0", "63.0", "64.0", "65.0", "66.0")
SESSION_EXPIRED = "Session expired or invalid"
NOT_FOUND_MESSAGE = "The requested resource does not exist"
ID_CHECKSUM_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"
BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
AUDIT_FIELDS = {
    "CreatedDate": "datetime",
    "LastModifiedDate": "datetime",
    "SystemModstamp": "datetime",
    "CreatedById": "reference",
    "LastModifiedById": "reference",
    "IsDeleted": "boolean",
}
READ_ONLY = frozenset({"Id", *AUDIT_FIELDS})
VERSION = r"v(?P<version>\d{2,3}\.\d)"


class SalesforceError(HttpError):
    """Salesforce's error array ``[{"message", "errorCode", "fields"?}]`` with its HTTP status."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        fields: Sequence[str] | None = None,
        headers: Iterable[tuple[str, str]] = (),
    ):
        error: dict[str, Any] = {"message": message, "errorCode": code}
        if fields is not None:
            error["fields"] = list(fields)
        super().__init__(json_response([error], status, headers))
        self.code = code
        self.args = (f"{code}: {message}",)


class OAuthError(HttpError):
    """The token endpoint's own error shape: ``{"error", "error_description"}``."""

    def __init__(self, error: str, description: str, status: int = 400):
        super().__init__(json_response({"error": error, "error_description": description}, status))


@dataclass
class SObjectType:
    name: str
    key_prefix: str
    fields: dict[str, str]  # canonical name -> kind
    references: dict[str, str] = field(default_factory=dict)  # lookup field -> target object
    picklists: dict[str, tuple[str, ...]] = field(default_factory=dict)
    read_only: frozenset[str] = READ_ONLY
    auto_number: tuple[str, str] | None = None  # (field, format with {n})
    history: str | None = None  # the history object's name
    tracked: frozenset[str] = frozenset()
    next_number: int = 1

    def field_named(self, name: str) -> str | None:
        lowered = name.lower()
        return next((known for known in self.fields if known.lower() == lowered), None)

    def relationships(self) -> dict[str, str]:
        """Relationship name -> lookup field: Account__r -> Account__c, Account -> AccountId."""
        names = {}
        for lookup in self.references:
            if lookup.endswith("__c"):
                names[lookup[:-3] + "__r"] = lookup
            elif lookup.endswith("Id"):
                names[lookup[:-2]] = lookup
        return names

    def relationship_named(self, name: str) -> tuple[str, str] | None:
        lowered = name.lower()
        return next(
            ((rel, lookup) for rel, lookup in self.relationships().items() if rel.lower() == lowered), None
        )


@dataclass
class Token:
    value: str
    user_id: str
    issued: datetime
    expired: bool = False


@dataclass
class QueryCursor:
    sobject: str
    ids: list[str]
    selection: list[tuple[str, ...]]
    batch: int


def salesforce_id(prefix: str, number: int) -> str:
    """An 18-character id: 3-character key prefix, pod and counter, then the case-checksum suffix."""
    digits = ""
    while True:
        number, rest = divmod(number, 62)
        digits = BASE62[rest] + digits
        if number == 0:
            break
    body = f"{prefix}RO0000{digits.rjust(6, '0')}"
    suffix = ""
    for chunk in range(3):
        bits = sum(1 << i for i, char in enumerate(body[chunk * 5 : chunk * 5 + 5]) if "A" <= char <= "Z")
        suffix += ID_CHECKSUM_ALPHABET[bits]
    return body + suffix


def to_salesforce_instant(value: datetime) -> datetime:
    """UTC at whole seconds, as Salesforce stores datetimes; naive datetimes are refused."""
    if not isinstance(value, datetime) or value.tzinfo is None:
        raise ValueError(f"Expected an aware datetime (with tzinfo), got {value!r}")
    return value.astimezone(UTC).replace(microsecond=0)


def format_instant(value: datetime) -> str:
    """``2024-05-01T13:00:00.000+0000``."""
    return f"{value.astimezone(UTC):%Y-%m-%dT%H:%M:%S}.000+0000"


def _parse_iso_instant(text: Any, name: str) -> datetime:
    try:
        return to_salesforce_instant(datetime.fromisoformat(text))
    except (TypeError, ValueError) as error:
        raise InvalidRequestBody(
            f"'{name}' must be an ISO 8601 instant with an offset, not {text!r}"
        ) from error


# SOQL ------------------------------------------------------------------------------------------------

_SOQL_TOKEN = re.compile(
    r"\s*(?:"
    r"(?P<string>'(?:[^'\\]|\\.)*')"
    r"|(?P<datetime>\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:Z|[+-]\d{2}:\d{2}))(?![\w.:])"
    r"|(?P<date>\d{4}-\d{2}-\d{2})(?![\w.:])"
    r"|(?P<number>-?\d+(?:\.\d+)?)(?![\w.:-])"
    r"|(?P<operator><=|>=|!=|<>|=|<|>)"
    r"|(?P<punctuation>[(),])"
    r"|(?P<word>[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)(?![\w.:])"
    r")"
)
_KEYWORDS = frozenset(
    {"select", "from", "where", "and", "in", "order", "by", "asc", "desc", "nulls", "limit"}
)
_UNSUPPORTED = frozenset(
    {"or", "not", "like", "includes", "excludes", "group", "having", "offset", "with", "for", "typeof"}
)
SUPPORTED_SOQL = (
    "the fake Salesforce knows SELECT fields FROM object [WHERE a AND b ...] [ORDER BY ...] [LIMIT n], "
    "with = != <> < <= > >= and IN"
)


@dataclass(frozen=True)
class Literal:
    kind: str  # string, datetime, date, number, boolean, null
    value: Any
    column: int


@dataclass(frozen=True)
class Condition:
    path: str
    operator: str
    values: tuple[Literal, ...]
    column: int


@dataclass(frozen=True)
class SoqlQuery:
    text: str
    fields: tuple[tuple[str, int], ...]  # (path as written, column)
    sobject: str
    sobject_column: int
    conditions: tuple[Condition, ...]
    order_by: tuple[tuple[str, bool, bool | None, int], ...]  # (path, descending, nulls last, column)
    limit: int | None


class SoqlError(Exception):
    def __init__(self, code: str, text: str, column: int, detail: str):
        super().__init__(f"\n{text}\n{' ' * max(0, column - 1)}^\nERROR at Row:1:Column:{column}\n{detail}")
        self.code = code


def parse_soql(text: str) -> SoqlQuery:
    """The supported SOQL subset; SoqlError (MALFORMED_QUERY) for anything else."""
    tokens: list[tuple[str, str, int]] = []
    position = 0
    stripped = text.rstrip()
    while position < len(stripped):
        found = _SOQL_TOKEN.match(stripped, position)
        if found is None or found.end() == position:
            rest = stripped[position:]
            column = position + len(rest) - len(rest.lstrip()) + 1
            raise SoqlError("MALFORMED_QUERY", text, column, f"unexpected token: '{rest.split()[0]}'")
        kind = found.lastgroup or ""
        tokens.append((kind, found.group(kind), found.start(kind) + 1))
        position = found.end()
    index = 0

    def fail(detail: str | None = None, at: int | None = None) -> SoqlError:
        if index < len(tokens):
            value, column = tokens[index][1], tokens[index][2]
        else:
            value, column = "<EOF>", len(stripped) + 1
        return SoqlError("MALFORMED_QUERY", text, at or column, detail or f"unexpected token: '{value}'")

    def peek_keyword() -> str | None:
        if index < len(tokens) and tokens[index][0] == "word":
            return tokens[index][1].lower()
        return None

    def take(kind: str | None = None, keyword: str | None = None) -> tuple[str, str, int]:
        nonlocal index
        if index >= len(tokens):
            raise fail()
        token = tokens[index]
        if kind is not None and token[0] != kind:
            raise fail()
        if keyword is not None and token[1].lower() != keyword:
            raise fail()
        if token[0] == "word" and token[1].lower() in _UNSUPPORTED:
            raise fail(f"unexpected token: '{token[1]}' ({SUPPORTED_SOQL})")
        index += 1
        return token

    def take_field() -> tuple[str, int]:
        _, value, column = take("word")
        if value.lower() in _KEYWORDS:
            index_before = index - 1
            raise SoqlError("MALFORMED_QUERY", text, tokens[index_before][2], f"unexpected token: '{value}'")
        return value, column

    take("word", "select")
    fields = [take_field()]
    while index < len(tokens) and tokens[index][:2] == ("punctuation", ","):
        take()
        fields.append(take_field())
    take("word", "from")
    sobject, sobject_column = take_field()

    conditions: list[Condition] = []
    if peek_keyword() == "where":
        take()
        depth = 0
        while True:
            while index < len(tokens) and tokens[index][:2] == ("punctuation", "("):
                take()
                depth += 1
            path, column = take_field()
            if index < len(tokens) and tokens[index][0] == "word" and tokens[index][1].lower() == "in":
                take()
                take("punctuation")
                values = [_literal(take(), text)]
                while (separator := take("punctuation"))[1] == ",":
                    values.append(_literal(take(), text))
                if separator[1] != ")":
                    raise fail()
                conditions.append(Condition(path, "in", tuple(values), column))
            else:
                operator = take("operator")[1]
                conditions.append(
                    Condition(path, "!=" if operator == "<>" else operator, (_literal(take(), text),), column)
                )
            while depth and index < len(tokens) and tokens[index][:2] == ("punctuation", ")"):
                take()
                depth -= 1
            if peek_keyword() != "and":
                break
            take()
        if depth:
            raise fail("expecting a right parentheses, found 'EOF'" if index >= len(tokens) else None)

    order_by: list[tuple[str, bool, bool | None, int]] = []
    if peek_keyword() == "order":
        take()
        take("word", "by")
        while True:
            path, column = take_field()
            descending = False
            if peek_keyword() in {"asc", "desc"}:
                descending = take()[1].lower() == "desc"
            nulls_last: bool | None = None
            if peek_keyword() == "nulls":
                take()
                which = take("word")[1].lower()
                if which not in {"first", "last"}:
                    index -= 1
                    raise fail()
                nulls_last = which == "last"
            order_by.append((path, descending, nulls_last, column))
            if index < len(tokens) and tokens[index][:2] == ("punctuation", ","):
                take()
                continue
            break

    limit = None
    if peek_keyword() == "limit":
        take()
        kind, value, column = take("number")
        if not value.isdigit():
            raise SoqlError("MALFORMED_QUERY", text, column, f"unexpected token: '{value}'")
        limit = int(value)
    if index < len(tokens):
        raise fail()
    return SoqlQuery(text, tuple(fields), sobject, sobject_column, tuple(conditions), tuple(order_by), limit)


def _literal(token: tuple[str, str, int], text: str) -> Literal:
    kind, value, column = token
    if kind == "string":
        return Literal("string", re.sub(r"\\(.)", r"\1", value[1:-1]), column)
    if kind == "datetime":
        return Literal("datetime", datetime.fromisoformat(value.replace("Z", "+00:00")), column)
    if kind == "date":
        try:
            return Literal("date", date.fromisoformat(value), column)
        except ValueError:
            raise SoqlError(
                "MALFORMED_QUERY", text, column, f"line 1:{column} no viable alternative"
            ) from None
    if kind == "number":
        return Literal("number", float(value), column)
    if kind == "word" and value.lower() in {"true", "false"}:
        return Literal("boolean", value.lower() == "true", column)
    if kind == "word" and value.lower() == "null":
        return Literal("null", None, column)
    raise SoqlError("MALFORMED_QUERY", text, column, f"unexpected token: '{value}'")


_KIND_LITERALS = {
    "datetime": ("datetime", "dateTime", "should not be enclosed in quotes"),
    "date": ("date", "date", "should not be enclosed in quotes"),
    "boolean": ("boolean", "boolean", "should not be enclosed in quotes"),
    "currency": ("number", "double", "should not be enclosed in quotes"),
    "double": ("number", "double", "should not be enclosed in quotes"),
}


# The fake --------------------------------------------------------------------------------------------


class FakeSalesforce(FakeApp):
    """An in-memory Salesforce org (see the module docstring)."""

    def __init__(
        self,
        now: Callable[[], datetime] | None = None,
        request_object: str = DEFAULT_REQUEST_OBJECT,
        batch_cap: int = DEFAULT_BATCH,
        daily_limit: int = DEFAULT_DAILY_LIMIT,
        session_seconds: int = DEFAULT_SESSION_SECONDS,
    ) -> None:
        super().__init__(now)
        self.request_object, self.batch_cap = request_object, batch_cap
        self.daily_limit, self.session_seconds = daily_limit, session_seconds
        control = self.control.add
        control("POST", rf"{CONTROL_PREFIX}/accounts", self._control_add_account, "accounts")
        control("POST", rf"{CONTROL_PREFIX}/opportunities", self._control_add_opportunity, "opportunities")
        control("POST", rf"{CONTROL_PREFIX}/requests", self._control_add_request, "requests")
        control("POST", rf"{CONTROL_PREFIX}/cases", self._control_add_case, "cases")
        control("POST", rf"{CONTROL_PREFIX}/records/(?P<key>[^/]+)/status", self._control_status, "status")
        control("POST", rf"{CONTROL_PREFIX}/records/(?P<key>[^/]+)/edit", self._control_edit, "edit")
        control("POST", rf"{CONTROL_PREFIX}/tokens/expire", self._control_expire, "expire")
        self.reset()

    @locked
    def reset(
        self,
        request_object: str | None = None,
        batch_cap: int | None = None,
        daily_limit: int | None = None,
        session_seconds: int | None = None,
    ) -> None:
        """An empty org with the demo integration user; options left out keep their current values."""
        super().reset()
        request_object = request_object or self.request_object
        if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*__c", request_object):
            raise ValueError(f"a custom object's API name ends in __c, not {request_object!r}")
        self.request_object = request_object
        self.batch_cap = self.batch_cap if batch_cap is None else int(batch_cap)
        self.daily_limit = self.daily_limit if daily_limit is None else int(daily_limit)
        self.session_seconds = self.session_seconds if session_seconds is None else int(session_seconds)
        if self.batch_cap < 1 or self.daily_limit < 1 or self.session_seconds < 1:
            raise ValueError("batch_cap, daily_limit and session_seconds must be positive")
        self.types: dict[str, SObjectType] = {}
        self.records: dict[str, dict[str, Any]] = {}  # id -> fields (with "_type")
        self.by_type: dict[str, list[str]] = {}
        self.tokens: dict[str, Token] = {}
        self.cursors: dict[str, QueryCursor] = {}
        self.malformed_ids: set[str] = set()
        self.queries: list[str] = []
        self.token_requests = 0
        self.api_usage = 0
        self.unavailable_retry_after: int | None = None
        self._expire_countdown: int | None = None
        self._ids = itertools.count(1)
        self._define_schema()
        self.default_user = self.add_user(DEMO_USER, "integration@vsm-demo.example")
        self._build_routes()

    @property
    def label(self) -> str:
        return "Salesforce"

    def credentials(self) -> dict[str, str]:
        return {"client_id": DEMO_CLIENT_ID, "client_secret": DEMO_CLIENT_SECRET}

    def stats(self) -> dict[str, Any]:
        return {
            **super().stats(),
            "records": {name: len(ids) for name, ids in self.by_type.items()},
            "api_usage": self.api_usage,
            "token_requests": self.token_requests,
            "queries": len(self.queries),
            "malformed": sorted(self._key_of(self.records[i]) for i in self.malformed_ids),
            "unavailable_retry_after": self.unavailable_retry_after,
        }

    @property
    def history_object(self) -> str:
        return self.request_object[:-3] + "__History"

    def _define_schema(self) -> None:
        request, history = self.request_object, self.history_object
        self.types = {
            "User": SObjectType(
                "User",
                "005",
                {
                    "Id": "id",
                    "Name": "string",
                    "Username": "string",
                    "Email": "string",
                    "IsActive": "boolean",
                },
                read_only=frozenset({"Id"}),
            ),
            "Account": SObjectType(
                "Account",
                "001",
                {"Id": "id", "Name": "string", "Industry": "string", **AUDIT_FIELDS},
                references={"CreatedById": "User", "LastModifiedById": "User"},
            ),
            "Opportunity": SObjectType(
                "Opportunity",
                "006",
                {
                    "Id": "id",
                    "Name": "string",
                    "Amount": "currency",
                    "StageName": "picklist",
                    "CloseDate": "date",
                    "AccountId": "reference",
                    **AUDIT_FIELDS,
                },
                references={"AccountId": "Account", "CreatedById": "User", "LastModifiedById": "User"},
                picklists={"StageName": STAGES},
            ),
            request: SObjectType(
                request,
                "a0B",
                {
                    "Id": "id",
                    "Name": "autonumber",
                    "Title__c": "string",
                    "Description__c": "textarea",
                    "Status__c": "picklist",
                    "Priority__c": "picklist",
                    "Account__c": "reference",
                    "Opportunity__c": "reference",
                    "Deal_Breaker__c": "boolean",
                    "Linked_Item__c": "url",
                    "OwnerId": "reference",
                    **AUDIT_FIELDS,
                },
                references={
                    "Account__c": "Account",
                    "Opportunity__c": "Opportunity",
                    "OwnerId": "User",
                    "CreatedById": "User",
                    "LastModifiedById": "User",
                },
                picklists={"Status__c": REQUEST_STATUSES, "Priority__c": PRIORITIES},
                read_only=READ_ONLY | {"Name"},
                auto_number=("Name", "FR-{n:06d}"),
                history=history,
                tracked=frozenset({"Status__c"}),
            ),
            "Case": SObjectType(
                "Case",
                "500",
                {
                    "Id": "id",
                    "CaseNumber": "autonumber",
                    "Subject": "string",
                    "Description": "textarea",
                    "Status": "picklist",
                    "Priority": "picklist",
                    "Origin": "picklist",
                    "AccountId": "reference",
                    "IsClosed": "boolean",
                    "ClosedDate": "datetime",
                    "Feature_Request__c": "reference",
                    "OwnerId": "reference",
                    **AUDIT_FIELDS,
                },
                references={
                    "AccountId": "Account",
                    "Feature_Request__c": request,
                    "OwnerId": "User",
                    "CreatedById": "User",
                    "LastModifiedById": "User",
                },
                picklists={"Status": CASE_STATUSES, "Priority": PRIORITIES, "Origin": CASE_ORIGINS},
                read_only=READ_ONLY | {"CaseNumber", "IsClosed", "ClosedDate"},
                auto_number=("CaseNumber", "{n:08d}"),
                history="CaseHistory",
                tracked=frozenset({"Status"}),
                next_number=1001,
            ),
        }
        for name, parent_field, parent in ((history, "ParentId", request), ("CaseHistory", "CaseId", "Case")):
            self.types[name] = SObjectType(
                name,
                "017",
                {
                    "Id": "id",
                    parent_field: "reference",
                    "Field": "string",
                    "DataType": "string",
                    "OldValue": "anyType",
                    "NewValue": "anyType",
                    "CreatedDate": "datetime",
                    "CreatedById": "reference",
                    "IsDeleted": "boolean",
                },
                references={parent_field: parent, "CreatedById": "User"},
            )
        self.by_type = {name: [] for name in self.types}

    def _build_routes(self) -> None:
        self.router.routes.clear()
        add = self.router.add
        data = rf"/services/data/{VERSION}"
        add("POST", r"/services/oauth2/token", self._http_token, "oauth2/token", public=True, write=False)
        add("GET", r"/id/(?P<org>00D\w+)/(?P<user>005\w+)", self._http_identity, "identity")
        add("GET", r"/services/data/?", self._http_versions, "versions", public=True)
        add("GET", rf"{data}/limits/?", self._http_limits, "limits")
        add("GET", rf"{data}/(?P<endpoint>query|queryAll)/?", self._http_query, "query")
        add(
            "GET",
            rf"{data}/(?:query|queryAll)/(?P<locator>01g\w+)-(?P<offset>\d+)",
            self._http_more,
            "query/more",
        )
        add("POST", rf"{data}/sobjects/(?P<type>\w+)/?", self._http_create, "sobjects/create")
        add(
            "GET", rf"{data}/sobjects/(?P<type>\w+)/(?P<id>\w{{15}}|\w{{18}})", self._http_get, "sobjects/get"
        )
        add(
            "PATCH",
            rf"{data}/sobjects/(?P<type>\w+)/(?P<id>\w{{15}}|\w{{18}})",
            self._http_update,
            "sobjects/update",
        )

    # FakeApp hooks ---------------------------------------------------------------------------------

    def error_response(self, status: int, message: str, headers: Iterable[tuple[str, str]] = ()) -> Response:
        codes = {
            400: "JSON_PARSER_ERROR",
            404: "NOT_FOUND",
            405: "METHOD_NOT_ALLOWED",
            503: "SERVER_UNAVAILABLE",
        }
        headers = list(headers)
        if status == 503 and self.unavailable_retry_after is not None:
            headers.append(("Retry-After", str(self.unavailable_retry_after)))
        if status == 404 and message.startswith("No such resource"):
            message = NOT_FOUND_MESSAGE
        return json_response(
            [{"message": message, "errorCode": codes.get(status, "UNKNOWN_EXCEPTION")}], status, headers
        )

    def rate_limited_response(self, retry_after_seconds: int) -> Response:
        """Salesforce's API quota answer: a 403 with its code, and no Retry-After."""
        return json_response(
            [{"message": "TotalRequests Limit exceeded.", "errorCode": "REQUEST_LIMIT_EXCEEDED"}], 403
        )

    def _respond(self, request: Request) -> Response:
        try:
            response = super()._respond(request)
        except HttpError as error:
            response = error.response
        except InvalidRequestBody as error:
            response = self.error_response(400, str(error))
        if request.path.startswith("/services/data/v"):
            response.headers.append(("Sforce-Limit-Info", f"api-usage={self.api_usage}/{self.daily_limit}"))
        return response

    def authenticate(self, request: Request) -> Any:
        value = bearer_token(request)
        if self._expire_countdown is not None:
            if self._expire_countdown <= 0:
                self._expire_all()
            else:
                self._expire_countdown -= 1
        token = self.tokens.get(value or "")
        if token is not None and self.now() - token.issued > timedelta(seconds=self.session_seconds):
            token.expired = True
        if token is None or token.expired:
            raise SalesforceError(
                401, "INVALID_SESSION_ID", SESSION_EXPIRED, headers=[("WWW-Authenticate", "Token")]
            )
        if request.path.startswith("/services/data/"):
            self.api_usage += 1
            if self.api_usage > self.daily_limit:
                raise SalesforceError(403, "REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded.")
        return self.records[token.user_id]

    # Faults ----------------------------------------------------------------------------------------

    @locked
    def unavailable(self, count: int, retry_after: int = 2) -> None:
        """The next `count` requests answer 503 with Retry-After (maintenance, instance refresh)."""
        self.fail(count, 503)
        self.unavailable_retry_after = retry_after

    @locked
    def expire_tokens(self, after: int = 0) -> None:
        """The tokens issued so far stop working after `after` more authenticated requests (0: now)."""
        if after <= 0:
            self._expire_all()
            self._expire_countdown = None
        else:
            self._expire_countdown = after

    def _expire_all(self) -> None:
        for token in self.tokens.values():
            token.expired = True
        self._expire_countdown = None

    @locked
    def malformed(self, key_or_id: str) -> None:
        """The record's dates come back unreadable in queries (a fault a reader must survive)."""
        self.malformed_ids.add(self._find(key_or_id)["Id"])

    @locked
    def clear_faults(self) -> None:
        super().clear_faults()
        self.malformed_ids.clear()
        self.unavailable_retry_after = None
        self._expire_countdown = None

    def configure_faults(self, settings: dict[str, Any]) -> None:
        super().configure_faults(settings)
        if "unavailable" in settings:
            self.unavailable(
                int(settings["unavailable"]["count"]), int(settings["unavailable"].get("retry_after", 2))
            )
        for key in settings.get("malformed", ()):
            self.malformed(key)
        if "expire_tokens" in settings:
            self.expire_tokens(int((settings["expire_tokens"] or {}).get("after", 0)))

    # Programmatic API ------------------------------------------------------------------------------

    def _clock(self) -> datetime:
        return to_salesforce_instant(self.now())

    def _make_id(self, prefix: str) -> str:
        return salesforce_id(prefix, next(self._ids))

    @locked
    def add_user(self, name: str, username: str | None = None) -> str:
        user_id = self._make_id("005")
        username = username or f"{re.sub(r'[^a-z0-9]+', '.', name.lower()).strip('.')}@vsm-demo.example"
        self._store(
            "User", {"Id": user_id, "Name": name, "Username": username, "Email": username, "IsActive": True}
        )
        return user_id

    @locked
    def add_field(self, sobject: str, name: str, kind: str = "string", values: Sequence[str] = ()) -> None:
        """A custom field (``Product__c``) on `sobject`; `values` make a restricted picklist."""
        if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*__c", name):
            raise ValueError(f"custom field names end in __c, not {name!r}")
        schema = self._type(sobject)
        schema.fields[name] = "picklist" if values else kind
        if values:
            schema.picklists[name] = tuple(values)

    @locked
    def add_account(self, name: str, created: datetime | None = None) -> str:
        return self._create("Account", {"Name": name}, at=created)["Id"]

    @locked
    def add_opportunity(
        self,
        name: str,
        amount: float | None,
        account: str | None = None,
        stage: str = "Prospecting",
        created: datetime | None = None,
    ) -> str:
        values = {
            "Name": name,
            "Amount": None if amount is None else float(amount),
            "StageName": stage,
            "CloseDate": (created or self._clock()).date(),
        }
        if account:
            values["AccountId"] = self._account_id(account, created)
        return self._create("Opportunity", values, at=created)["Id"]

    @locked
    def add_request(
        self,
        title: str,
        *,
        status: str | None = None,
        created: datetime | None = None,
        updated: datetime | None = None,
        account: str | None = None,
        amount: float | None = None,
        opportunity: str | None = None,
        deal_breaker: bool = False,
        linked_item: str | None = None,
        fields: dict[str, Any] | None = None,
        history: Iterable[Sequence[Any]] = (),
        author: str | None = None,
    ) -> str:
        """A feature request (backdated when `created` is given); returns its Name, e.g. ``FR-000001``.

        `amount` creates an Opportunity for it (on `account`, a name or an id, created when new);
        `history` holds status changes ``(at, from_status, to_status[, author])`` in time order.
        """
        values: dict[str, Any] = {"Title__c": title, "Deal_Breaker__c": deal_breaker}
        if linked_item is not None:
            values["Linked_Item__c"] = linked_item
        if account:
            values["Account__c"] = self._account_id(account, created)
        if amount is not None:
            opportunity = self.add_opportunity(
                f"{account or title} - {title}", amount, values.get("Account__c"), created=created
            )
        if opportunity:
            values["Opportunity__c"] = self._find(opportunity)["Id"]
        values.update(self._register(self.request_object, fields or {}))
        record = self._seed(
            self.request_object, "Status__c", values, status, created, updated, history, author
        )
        return record["Name"]

    @locked
    def add_case(
        self,
        subject: str,
        *,
        status: str | None = None,
        created: datetime | None = None,
        updated: datetime | None = None,
        account: str | None = None,
        request: str | None = None,
        fields: dict[str, Any] | None = None,
        history: Iterable[Sequence[Any]] = (),
        author: str | None = None,
    ) -> str:
        """A case (backdated when `created` is given), possibly naming a feature request; returns its
        CaseNumber, e.g. ``00001001``."""
        values: dict[str, Any] = {"Subject": subject, "Origin": "Web", "Priority": "Medium"}
        if account:
            values["AccountId"] = self._account_id(account, created)
        if request:
            values["Feature_Request__c"] = self._find(request)["Id"]
        values.update(self._register("Case", fields or {}))
        record = self._seed("Case", "Status", values, status, created, updated, history, author)
        return record["CaseNumber"]

    @locked
    def set_status(
        self, key_or_id: str, status: str, at: datetime | None = None, author: str | None = None
    ) -> None:
        record = self._find(key_or_id)
        schema = self.types[record["_type"]]
        status_field = next(iter(schema.tracked))
        self._update(record, {status_field: status}, at=at, user=self._user_id(author))

    @locked
    def edit(
        self, key_or_id: str, fields: dict[str, Any], at: datetime | None = None, author: str | None = None
    ) -> None:
        record = self._find(key_or_id)
        self._update(record, self._register(record["_type"], fields), at=at, user=self._user_id(author))

    @locked
    def touch(self, key_or_id: str, at: datetime | None = None) -> None:
        """A system change (a recalculated formula, a sharing update): only SystemModstamp moves."""
        record = self._find(key_or_id)
        record["SystemModstamp"] = to_salesforce_instant(at) if at else self._clock()

    @locked
    def record(self, key_or_id: str) -> dict[str, Any]:
        """A copy of the stored record (Python values, with ``_type``)."""
        return dict(self._find(key_or_id))

    @locked
    def find_id(self, key_or_id: str) -> str:
        return self._find(key_or_id)["Id"]

    @locked
    def history_of(self, key_or_id: str) -> list[dict[str, Any]]:
        record = self._find(key_or_id)
        schema = self.types[record["_type"]]
        if schema.history is None:
            return []
        parent_field = "CaseId" if schema.history == "CaseHistory" else "ParentId"
        return [
            dict(self.records[row_id])
            for row_id in self.by_type[schema.history]
            if self.records[row_id][parent_field] == record["Id"]
        ]

    # State internals -------------------------------------------------------------------------------

    def _type(self, name: str) -> SObjectType:
        lowered = name.lower()
        for known, schema in self.types.items():
            if known.lower() == lowered:
                return schema
        raise SalesforceError(
            404, "NOT_FOUND", f"The requested resource does not exist: sObject type '{name}'"
        )

    def _store(self, type_name: str, values: dict[str, Any]) -> dict[str, Any]:
        record = {**values, "_type": type_name}
        self.records[values["Id"]] = record
        self.by_type[type_name].append(values["Id"])
        return record

    def _find(self, key_or_id: str) -> dict[str, Any]:
        record = self.records.get(key_or_id) or next(
            (
                r
                for r in self.records.values()
                if r["Id"][:15] == key_or_id[:15] and len(key_or_id) in (15, 18)
            ),
            None,
        )
        if record is None:
            record = next(
                (
                    r
                    for r in self.records.values()
                    if key_or_id in (r.get("Name"), r.get("CaseNumber"))
                    and r["_type"] in (self.request_object, "Case", "Account", "Opportunity")
                ),
                None,
            )
        if record is None:
            raise SalesforceError(404, "NOT_FOUND", NOT_FOUND_MESSAGE)
        return record

    def _key_of(self, record: dict[str, Any]) -> str:
        return record.get("Name") or record.get("CaseNumber") or record["Id"]

    def _user_id(self, author: str | None) -> str:
        if not author:
            return self.default_user
        for user_id in self.by_type["User"]:
            if author in (self.records[user_id]["Name"], self.records[user_id]["Username"], user_id):
                return user_id
        return self.add_user(author)

    def _account_id(self, account: str, created: datetime | None) -> str:
        if account in self.records:
            return account
        for account_id in self.by_type["Account"]:
            if self.records[account_id]["Name"] == account:
                return account_id
        return self.add_account(account, created)

    def _register(self, type_name: str, fields: dict[str, Any]) -> dict[str, Any]:
        """Canonical names for `fields`; unknown custom fields of the programmatic API join the schema."""
        schema = self.types[type_name]
        named = {}
        for name, value in fields.items():
            canonical = schema.field_named(name)
            if canonical is None:
                kind = (
                    "boolean"
                    if isinstance(value, bool)
                    else "double"
                    if isinstance(value, int | float)
                    else "string"
                )
                self.add_field(type_name, name, kind)
                canonical = name
            named[canonical] = value
        return named

    def _seed(
        self,
        type_name: str,
        status_field: str,
        values: dict[str, Any],
        status: str | None,
        created: datetime | None,
        updated: datetime | None,
        history: Iterable[Sequence[Any]],
        author: str | None,
    ) -> dict[str, Any]:
        schema = self.types[type_name]
        created_at = to_salesforce_instant(created) if created else self._clock()
        changes = [
            (to_salesforce_instant(at), before, after, self._user_id(who[0] if who else author))
            for at, before, after, *who in history
        ]
        instants = [created_at, *(change[0] for change in changes)]
        if any(later < earlier for earlier, later in itertools.pairwise(instants)):
            raise ValueError("history must be in time order, none before the record's creation")
        for name in {status, *(n for change in changes for n in change[1:3])} - {None}:
            if name not in schema.picklists[status_field]:
                raise ValueError(
                    f"{name!r} is not a {status_field} value of {type_name}: {schema.picklists[status_field]}"
                )
        start = changes[0][1] if changes else status or schema.picklists[status_field][0]
        record = self._create(
            type_name, {**values, status_field: start}, at=created_at, user=self._user_id(author)
        )
        for at, _, after, who in changes:
            self._update(record, {status_field: after}, at=at, user=who)
        if status is not None and record[status_field] != status:
            self._update(record, {status_field: status}, at=instants[-1], user=self._user_id(author))
        if updated is not None:
            updated_at = to_salesforce_instant(updated)
            if updated_at < created_at:
                raise ValueError("updated is before the record's creation")
            record["LastModifiedDate"] = record["SystemModstamp"] = updated_at
        return record

    def _create(
        self, type_name: str, values: dict[str, Any], at: datetime | None = None, user: str | None = None
    ) -> dict[str, Any]:
        schema = self.types[type_name]
        instant = to_salesforce_instant(at) if at else self._clock()
        user = user or self.default_user
        record_id = self._make_id(schema.key_prefix)
        record: dict[str, Any] = {"_type": type_name, **{name: None for name in schema.fields}}
        record.update(
            {
                "Id": record_id,
                "CreatedDate": instant,
                "LastModifiedDate": instant,
                "SystemModstamp": instant,
                "CreatedById": user,
                "LastModifiedById": user,
                "IsDeleted": False,
            }
        )
        if "OwnerId" in schema.fields:
            record["OwnerId"] = user
        if schema.auto_number:
            field_name, pattern = schema.auto_number
            record[field_name] = pattern.format(n=schema.next_number)
            schema.next_number += 1
        for name, kind in schema.fields.items():
            if kind == "boolean" and record[name] is None:
                record[name] = False
        if type_name == "Case":
            values = {"Status": "New", **values}
        if type_name == self.request_object:
            values = {"Status__c": "New", **values}
        record.update(values)
        self._derive(record, instant)
        stored = self._store(type_name, record)
        if schema.history:
            self._history(record, "created", None, None, instant, user)
        return stored

    def _update(self, record: dict[str, Any], values: dict[str, Any], at: datetime | None, user: str) -> None:
        schema = self.types[record["_type"]]
        instant = to_salesforce_instant(at) if at else self._clock()
        changes = {name: value for name, value in values.items() if record.get(name) != value}
        for name in sorted(schema.tracked & set(changes)):
            self._history(record, name, record.get(name), changes[name], instant, user)
        record.update(values)
        self._derive(record, instant if changes else None)
        if "LastModifiedDate" in record:
            record["LastModifiedDate"] = record["SystemModstamp"] = instant
            record["LastModifiedById"] = user

    def _derive(self, record: dict[str, Any], instant: datetime | None) -> None:
        if record["_type"] == "Case" and instant is not None:
            closed = record.get("Status") == "Closed"
            if closed and not record.get("IsClosed"):
                record["ClosedDate"] = instant
            elif not closed:
                record["ClosedDate"] = None
            record["IsClosed"] = closed

    def _history(
        self, record: dict[str, Any], field_name: str, old: Any, new: Any, at: datetime, user: str
    ) -> None:
        schema = self.types[record["_type"]]
        assert schema.history is not None
        parent_field = "CaseId" if schema.history == "CaseHistory" else "ParentId"
        self._store(
            schema.history,
            {
                "Id": self._make_id("017"),
                parent_field: record["Id"],
                "Field": field_name,
                "DataType": "EntityId" if field_name == "created" else "DynamicEnum",
                "OldValue": old,
                "NewValue": new,
                "CreatedDate": at,
                "CreatedById": user,
                "IsDeleted": False,
            },
        )

    # Rendering -------------------------------------------------------------------------------------

    def _attributes(self, record: dict[str, Any], version: str) -> dict[str, str]:
        return {
            "type": record["_type"],
            "url": f"/services/data/v{version}/sobjects/{record['_type']}/{record['Id']}",
        }

    def _value_json(self, value: Any) -> Any:
        if isinstance(value, datetime):
            return format_instant(value)
        if isinstance(value, date):
            return value.isoformat()
        return value

    def _render(
        self, record: dict[str, Any], selection: list[tuple[str, ...]], version: str
    ) -> dict[str, Any]:
        rendered: dict[str, Any] = {"attributes": self._attributes(record, version)}
        for path in selection:
            self._put(rendered, record, path, version)
        if record["Id"] in self.malformed_ids:
            for name in ("CreatedDate", "SystemModstamp"):
                if name in rendered:
                    rendered[name] = "yesterday-ish"
        return rendered

    def _put(self, out: dict[str, Any], record: dict[str, Any], path: tuple[str, ...], version: str) -> None:
        head = path[0]
        if len(path) == 1:
            out[head] = self._value_json(record.get(head))
            return
        schema = self.types[record["_type"]]
        lookup = schema.relationships()[head]
        target = self.records.get(record.get(lookup) or "")
        if target is None:
            out[head] = None
            return
        nested = out.get(head) or {"attributes": self._attributes(target, version)}
        out[head] = nested
        self._put(nested, target, path[1:], version)

    def _value_at(self, record: dict[str, Any] | None, path: tuple[str, ...]) -> Any:
        for index, name in enumerate(path):
            if record is None:
                return None
            if index == len(path) - 1:
                return record.get(name)
            lookup = self.types[record["_type"]].relationships()[name]
            record = self.records.get(record.get(lookup) or "")
        return None

    # SOQL evaluation -------------------------------------------------------------------------------

    def _resolve(
        self, query: SoqlQuery, schema: SObjectType, dotted: str, column: int
    ) -> tuple[tuple[str, ...], str]:
        """The canonical path of a field reference and the kind of the field it ends on."""
        parts = dotted.split(".")
        if len(parts) > 1 and parts[0].lower() == schema.name.lower():
            parts = parts[1:]  # SELECT Case.Subject FROM Case is allowed
        canonical: list[str] = []
        current = schema
        for index, part in enumerate(parts):
            if index == len(parts) - 1:
                name = current.field_named(part)
                if name is None:
                    raise SoqlError(
                        "INVALID_FIELD",
                        query.text,
                        column,
                        f"No such column '{part}' on entity '{current.name}'. If you are attempting to use a "
                        "custom field, be sure to append the '__c' after the custom field name. Please "
                        "reference your WSDL or the describe call for the appropriate names.",
                    )
                canonical.append(name)
                return tuple(canonical), current.fields[name]
            relationship = current.relationship_named(part)
            if relationship is None:
                raise SoqlError(
                    "INVALID_FIELD",
                    query.text,
                    column,
                    f"Didn't understand relationship '{part}' in field path. If you are attempting to use a "
                    "custom relationship, be sure to append the '__r' after the custom relationship name. "
                    "Please reference your WSDL or the describe call for the appropriate names.",
                )
            canonical.append(relationship[0])
            current = self.types[current.references[relationship[1]]]
        raise AssertionError("unreachable")

    def _check_literal(self, query: SoqlQuery, condition: Condition, kind: str, literal: Literal) -> Any:
        if literal.kind == "null":
            return None
        expected, label, hint = _KIND_LITERALS.get(kind, ("string", "string", "should be enclosed in quotes"))
        if literal.kind != expected:
            raise SoqlError(
                "INVALID_FIELD",
                query.text,
                literal.column,
                f"value of filter criterion for field '{condition.path}' must be of type {label} and {hint}",
            )
        return literal.value

    def _matches(self, value: Any, kind: str, operator: str, wanted: list[Any]) -> bool:
        def normal(item: Any) -> Any:
            if item is None:
                return None
            if kind in {"id", "reference"}:
                return str(item)[:15]
            if isinstance(item, str):
                return item.casefold()
            if isinstance(item, bool):
                return item
            if kind in {"currency", "double"}:
                return float(item)
            return item

        left, rights = normal(value), [normal(item) for item in wanted]
        if operator == "in":
            return left in rights
        right = rights[0]
        if operator == "=":
            return left == right
        if operator == "!=":
            return left != right
        if left is None or right is None:
            return False
        return {"<": left < right, "<=": left <= right, ">": left > right, ">=": left >= right}[operator]

    def _run(self, text: str) -> tuple[SObjectType, list[str], list[tuple[str, ...]]]:
        query = parse_soql(text)
        schema = next((s for s in self.types.values() if s.name.lower() == query.sobject.lower()), None)
        if schema is None:
            raise SoqlError(
                "INVALID_TYPE",
                text,
                query.sobject_column,
                f"sObject type '{query.sobject}' is not supported. If you are attempting to use a custom "
                "object, be sure to append the '__c' after the entity name. Please reference your WSDL or "
                "the describe call for the appropriate names.",
            )
        selection = []
        for dotted, column in query.fields:
            path, _ = self._resolve(query, schema, dotted, column)
            if path not in selection:
                selection.append(path)
        filters = []
        for condition in query.conditions:
            path, kind = self._resolve(query, schema, condition.path, condition.column)
            wanted = [self._check_literal(query, condition, kind, literal) for literal in condition.values]
            filters.append((path, kind, condition.operator, wanted))
        ids = [
            record_id
            for record_id in self.by_type[schema.name]
            if all(
                self._matches(self._value_at(self.records[record_id], path), kind, operator, wanted)
                for path, kind, operator, wanted in filters
            )
        ]
        ids.sort(key=lambda record_id: record_id)  # a stable base order: by id
        for dotted, descending, nulls_last, column in reversed(query.order_by):
            path, kind = self._resolve(query, schema, dotted, column)
            nulls_last = descending if nulls_last is None else nulls_last

            def sort_key(record_id: str, path=path, kind=kind) -> tuple:
                value = self._value_at(self.records[record_id], path)
                if isinstance(value, str):
                    value = value.casefold() if kind not in {"id", "reference"} else value
                return (value is None, value if value is not None else 0)

            ids.sort(key=sort_key, reverse=descending)
            nulls = [i for i in ids if self._value_at(self.records[i], path) is None]
            rest = [i for i in ids if self._value_at(self.records[i], path) is not None]
            ids = rest + nulls if nulls_last else nulls + rest
        if query.limit is not None:
            ids = ids[: query.limit]
        return schema, ids, selection

    # HTTP handlers ---------------------------------------------------------------------------------

    def _mount_prefix(self, request: Request) -> str:
        return urlsplit(request.base_url).path.rstrip("/")

    def _http_token(self, request: Request) -> Response:
        self.token_requests += 1
        form = {name: values[0] for name, values in parse_qs(request.body.decode("utf-8", "replace")).items()}
        basic = request.headers.get("authorization", "")
        if basic.lower().startswith("basic "):
            try:
                client_id, _, client_secret = (
                    base64.b64decode(basic[6:].strip(), validate=True).decode().partition(":")
                )
            except (binascii.Error, UnicodeDecodeError):
                raise OAuthError("invalid_client", "invalid client credentials") from None
            form.setdefault("client_id", client_id)
            form.setdefault("client_secret", client_secret)
        grant = form.get("grant_type", "")
        if grant != "client_credentials":
            raise OAuthError("unsupported_grant_type", "grant type not supported")
        if form.get("client_id") != DEMO_CLIENT_ID:
            raise OAuthError("invalid_client_id", "client identifier invalid")
        if form.get("client_secret") != DEMO_CLIENT_SECRET:
            raise OAuthError("invalid_client", "invalid client credentials")
        issued = self.now()
        number = len(self.tokens) + 1
        value = (
            f"{ORG_ID[:15]}!AR{hashlib.sha256(f'{number}:{issued.isoformat()}'.encode()).hexdigest()[:60]}"
        )
        self.tokens[value] = Token(value, self.default_user, issued)
        base = request.base_url
        return json_response(
            {
                "access_token": value,
                "signature": base64.b64encode(hashlib.sha256(value.encode()).digest()).decode(),
                "scope": "api",
                "instance_url": base,
                "id": f"{base}/id/{ORG_ID}/{self.default_user}",
                "token_type": "Bearer",
                "issued_at": str(int(issued.timestamp() * 1000)),
            }
        )

    def _http_identity(self, request: Request) -> Response:
        user = request.user
        if request.params["user"][:15] != user["Id"][:15] or request.params["org"][:15] != ORG_ID[:15]:
            raise SalesforceError(403, "FORBIDDEN", "Bad_Id")
        base = request.base_url
        return json_response(
            {
                "id": f"{base}/id/{ORG_ID}/{user['Id']}",
                "asserted_user": True,
                "user_id": user["Id"],
                "organization_id": ORG_ID,
                "username": user["Username"],
                "nick_name": user["Username"].split("@")[0],
                "display_name": user["Name"],
                "email": user["Email"],
                "active": True,
                "user_type": "STANDARD",
                "urls": {
                    "rest": f"{base}/services/data/v{{version}}/",
                    "query": f"{base}/services/data/v{{version}}/query/",
                    "sobjects": f"{base}/services/data/v{{version}}/sobjects/",
                },
                "utcOffset": 0,
            }
        )

    def _http_versions(self, request: Request) -> Response:
        return json_response(
            [{"label": f"v{v}", "url": f"/services/data/v{v}", "version": v} for v in API_VERSIONS]
        )

    def _http_limits(self, request: Request) -> Response:
        remaining = max(0, self.daily_limit - self.api_usage)
        return json_response(
            {
                "DailyApiRequests": {"Max": self.daily_limit, "Remaining": remaining},
                "ConcurrentSyncLongRunningRequests": {"Max": 25, "Remaining": 25},
            }
        )

    def _batch_size(self, request: Request) -> int:
        options = request.headers.get("sforce-query-options", "")
        found = re.search(r"batchSize\s*=\s*(\d+)", options)
        size = min(max(int(found.group(1)), MIN_BATCH), DEFAULT_BATCH) if found else DEFAULT_BATCH
        return max(1, min(size, self.batch_cap))

    def _http_query(self, request: Request) -> Response:
        text = request.arg("q")
        if not text:
            raise SalesforceError(400, "MALFORMED_QUERY", "A query string has to be specified")
        self.queries.append(text)
        try:
            schema, ids, selection = self._run(text)
        except SoqlError as error:
            raise SalesforceError(400, error.code, str(error)) from None
        cursor = QueryCursor(schema.name, ids, selection, self._batch_size(request))
        locator = self._make_id("01g")
        self.cursors[locator] = cursor
        return self._query_page(request, locator, cursor, 0)

    def _http_more(self, request: Request) -> Response:
        cursor = self.cursors.get(request.params["locator"])
        offset = int(request.params["offset"])
        if cursor is None or offset > len(cursor.ids):
            raise SalesforceError(400, "INVALID_QUERY_LOCATOR", "invalid query locator")
        return self._query_page(request, request.params["locator"], cursor, offset)

    def _query_page(self, request: Request, locator: str, cursor: QueryCursor, offset: int) -> Response:
        version = request.params["version"]
        batch = cursor.ids[offset : offset + cursor.batch]
        done = offset + len(batch) >= len(cursor.ids)
        body: dict[str, Any] = {"totalSize": len(cursor.ids), "done": done}
        if not done:
            prefix = self._mount_prefix(request)
            body["nextRecordsUrl"] = (
                f"{prefix}/services/data/v{version}/query/{locator}-{offset + len(batch)}"
            )
        body["records"] = [
            self._render(self.records[record_id], cursor.selection, version)
            for record_id in batch
            if record_id in self.records
        ]
        return json_response(body)

    def _http_get(self, request: Request) -> Response:
        schema = self._type(request.params["type"])
        record = self.records.get(request.params["id"]) or self._find(request.params["id"])
        if record["_type"] != schema.name:
            raise SalesforceError(404, "NOT_FOUND", NOT_FOUND_MESSAGE)
        return json_response(
            self._render(record, [(name,) for name in schema.fields], request.params["version"])
        )

    def _writable_values(self, schema: SObjectType, body: dict[str, Any]) -> dict[str, Any]:
        values: dict[str, Any] = {}
        read_only = []
        for name, value in body.items():
            canonical = schema.field_named(name)
            if canonical is None:
                raise SalesforceError(
                    400, "INVALID_FIELD", f"No such column '{name}' on sobject of type {schema.name}", []
                )
            if canonical in schema.read_only or schema.fields[canonical] == "autonumber":
                read_only.append(canonical)
                continue
            values[canonical] = self._checked_value(schema, canonical, value)
        if read_only:
            raise SalesforceError(
                400,
                "INVALID_FIELD_FOR_INSERT_UPDATE",
                f"Unable to create/update fields: {', '.join(read_only)}. Please check the security settings "
                "of this field and verify that it is read/write for your profile or permission set.",
                read_only,
            )
        return values

    def _checked_value(self, schema: SObjectType, name: str, value: Any) -> Any:
        kind = schema.fields[name]
        if value is None:
            return None
        if kind == "picklist" and name in schema.picklists and value not in schema.picklists[name]:
            raise SalesforceError(
                400,
                "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
                f"{name.removesuffix('__c').replace('_', ' ')}: "
                f"bad value for restricted picklist field: {value}",
                [name],
            )
        if kind == "boolean" and not isinstance(value, bool):
            raise SalesforceError(
                400,
                "JSON_PARSER_ERROR",
                f"Cannot deserialize instance of boolean from VALUE_STRING value {value}",
            )
        if kind in {"currency", "double"} and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise SalesforceError(
                400,
                "JSON_PARSER_ERROR",
                f"Cannot deserialize instance of double from VALUE_STRING value {value}",
            )
        if kind == "reference":
            target = self.records.get(str(value)) or next(
                (r for r in self.records.values() if r["Id"][:15] == str(value)[:15]), None
            )
            if target is None or target["_type"] != schema.references[name]:
                raise SalesforceError(
                    400, "FIELD_INTEGRITY_EXCEPTION", f"{name}: id value of incorrect type: {value}", [name]
                )
            return target["Id"]
        if kind == "datetime":
            try:
                return to_salesforce_instant(datetime.fromisoformat(str(value).replace("Z", "+00:00")))
            except ValueError:
                raise SalesforceError(
                    400,
                    "JSON_PARSER_ERROR",
                    f"Cannot deserialize instance of datetime from VALUE_STRING value {value}",
                ) from None
        if kind in {"string", "textarea", "url", "picklist"}:
            return str(value)
        if kind in {"currency", "double"}:
            return float(value)
        return value

    def _http_create(self, request: Request) -> Response:
        schema = self._type(request.params["type"])
        if schema.name not in (self.request_object, "Case", "Account", "Opportunity"):
            raise SalesforceError(
                400, "CANNOT_INSERT_UPDATE_ACTIVATE_ENTITY", f"entity type cannot be inserted: {schema.name}"
            )
        body = request.json_object()
        values = self._writable_values(schema, body)
        record = self._create(schema.name, values, user=request.user["Id"])
        return json_response({"id": record["Id"], "success": True, "errors": []}, 201)

    def _http_update(self, request: Request) -> Response:
        schema = self._type(request.params["type"])
        record = self.records.get(request.params["id"]) or self._find(request.params["id"])
        if record["_type"] != schema.name or schema.name.endswith("History") or schema.name == "User":
            raise SalesforceError(404, "NOT_FOUND", NOT_FOUND_MESSAGE)
        values = self._writable_values(schema, request.json_object())
        self._update(record, values, at=None, user=request.user["Id"])
        return empty_response(204)

    # Control endpoints (fake-only) -----------------------------------------------------------------

    def _history_body(self, body: dict[str, Any]) -> list[tuple[Any, ...]]:
        return [
            (
                _parse_iso_instant(_required(change, "at"), "at"),
                _required(change, "from"),
                _required(change, "to"),
                change.get("author"),
            )
            for change in body.get("history", ())
        ]

    def _instant(self, body: dict[str, Any], name: str) -> datetime | None:
        return _parse_iso_instant(body[name], name) if body.get(name) else None

    def _control_add_account(self, request: Request) -> Response:
        body = request.json_object()
        return json_response(
            {"id": self.add_account(_required(body, "name"), self._instant(body, "created"))}, 201
        )

    def _control_add_opportunity(self, request: Request) -> Response:
        body = request.json_object()
        opportunity = self.add_opportunity(
            _required(body, "name"),
            body.get("amount"),
            body.get("account"),
            body.get("stage", "Prospecting"),
            self._instant(body, "created"),
        )
        return json_response({"id": opportunity}, 201)

    def _control_add_request(self, request: Request) -> Response:
        body = request.json_object()
        try:
            key = self.add_request(
                _required(body, "title"),
                status=body.get("status"),
                created=self._instant(body, "created"),
                updated=self._instant(body, "updated"),
                account=body.get("account"),
                amount=body.get("amount"),
                opportunity=body.get("opportunity"),
                deal_breaker=bool(body.get("deal_breaker", False)),
                linked_item=body.get("linked_item"),
                fields=body.get("fields"),
                history=[
                    (at, before, after, *([who] if who else []))
                    for at, before, after, who in self._history_body(body)
                ],
            )
        except ValueError as error:
            raise InvalidRequestBody(str(error)) from error
        return json_response({"id": self.find_id(key), "key": key}, 201)

    def _control_add_case(self, request: Request) -> Response:
        body = request.json_object()
        try:
            key = self.add_case(
                _required(body, "subject"),
                status=body.get("status"),
                created=self._instant(body, "created"),
                updated=self._instant(body, "updated"),
                account=body.get("account"),
                request=body.get("request"),
                fields=body.get("fields"),
                history=[
                    (at, before, after, *([who] if who else []))
                    for at, before, after, who in self._history_body(body)
                ],
            )
        except ValueError as error:
            raise InvalidRequestBody(str(error)) from error
        return json_response({"id": self.find_id(key), "key": key}, 201)

    def _control_status(self, request: Request) -> Response:
        body = request.json_object()
        self.set_status(
            request.params["key"], _required(body, "to"), self._instant(body, "at"), body.get("author")
        )
        return empty_response(204)

    def _control_edit(self, request: Request) -> Response:
        body = request.json_object()
        self.edit(
            request.params["key"], _required(body, "fields"), self._instant(body, "at"), body.get("author")
        )
        return empty_response(204)

    def _control_expire(self, request: Request) -> Response:
        self.expire_tokens(int(request.json_object().get("after", 0)))
        return empty_response(204)


def _required(body: Any, name: str) -> Any:
    if not isinstance(body, dict) or body.get(name) in (None, ""):
        raise InvalidRequestBody(f"'{name}' is required.")
    return body[name]
