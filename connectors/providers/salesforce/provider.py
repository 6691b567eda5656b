"""Salesforce: SOQL reads on SystemModstamp with status history, and writes of the request object.

Auth is the OAuth 2.0 client credentials flow of a connected app (``POST {base}/services/oauth2/token``
with ``grant_type=client_credentials``, against the org's My Domain); API calls go to the token's
``instance_url``. A ``401 INVALID_SESSION_ID`` (an expired or revoked session) logs in again once and
repeats the request. The JWT bearer and username-password flows are not implemented.

Reading: one object per scope, the feature-request custom object (item type "FeatureRequest") or Case
(item type "Case"), with ``SELECT ... WHERE SystemModstamp >= <since, floored to the second> ORDER BY
SystemModstamp, Id``, following ``nextRecordsUrl``; then, per page, the status rows of the object's
field history (``<Object>__History`` / ``CaseHistory``) become the changelog. `updated` is the
SystemModstamp, the watermark the query filters on, so the engine's cursor matches it exactly.
"""

from __future__ import annotations

import re
import threading
from collections import defaultdict
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any, ClassVar
from urllib.parse import urlencode

import httpx

from connectors.base import (
    Connector,
    CredentialField,
    Feature,
    ItemFailure,
    ItemRef,
    OptionField,
    Page,
    ScopeSpec,
    ToolItem,
    register_connector,
)
from connectors.client import HttpClient
from connectors.exceptions import AuthError, BadPayload, BadRequest, NotFound
from connectors.providers.salesforce.records import (
    CASE_TYPE,
    FIELD_PATH,
    OBJECT_NAME,
    REQUEST_TYPE,
    ObjectSpec,
    record_to_item,
    relationship_of,
    soql_datetime,
    soql_string,
)

DEFAULT_API_VERSION = "62.0"
HISTORY_CHUNK = 200  # record ids per history query: keeps the GET well under Salesforce's URI limit
CASE_KEY_PREFIX = "500"
ON, OFF = "on", "off"
OPTION_DEFAULTS = {
    "api_version": DEFAULT_API_VERSION,
    "request_object": "Feature_Request__c",
    "request_title_field": "Title__c",
    "request_status_field": "Status__c",
    "revenue_field": "Opportunity__r.Amount",
    "account_field": "Account__r.Name",
    "deal_breaker_field": "Deal_Breaker__c",
    "linked_item_field": "Linked_Item__c",
    "request_extra_fields": "",
    "case_request_field": "",
    "case_extra_fields": "",
    "status_history": ON,
}
OPTIONAL_FIELDS = frozenset({"revenue_field", "account_field", "deal_breaker_field", "linked_item_field"})
SCOPE_QUERY = re.compile(
    r"\s*(?P<object>[A-Za-z][A-Za-z0-9_]*)?\s*(?:\bwhere\b\s*(?P<condition>.*\S))?\s*", re.I | re.S
)
REQUEST_ALIASES = {"", "request", "requests", "featurerequest", "featurerequests"}
CASE_ALIASES = {"case", "cases"}


@register_connector
class SalesforceConnector(Connector):
    slug = "salesforce"
    name = "Salesforce"
    credential_fields: ClassVar = (
        CredentialField(
            "client_id",
            "Consumer key (client id)",
            secret=False,
            help_text="Of a connected app with the client credentials flow enabled and a run-as user.",
        ),
        CredentialField("client_secret", "Consumer secret"),
    )
    option_fields: ClassVar = (
        OptionField("api_version", "REST API version", default=DEFAULT_API_VERSION),
        OptionField(
            "request_object",
            "Feature request object",
            default=OPTION_DEFAULTS["request_object"],
            help_text="API name of the custom object holding feature requests (its Name is the key).",
        ),
        OptionField(
            "request_title_field", "Request title field", default=OPTION_DEFAULTS["request_title_field"]
        ),
        OptionField(
            "request_status_field",
            "Request status field",
            default=OPTION_DEFAULTS["request_status_field"],
            help_text="A picklist with field history tracking on; transitions write it.",
        ),
        OptionField(
            "revenue_field",
            "Revenue field",
            default=OPTION_DEFAULTS["revenue_field"],
            help_text="Field or relationship path read into fields['revenue'], e.g. Opportunity__r.Amount; "
            "blank: none.",
        ),
        OptionField(
            "account_field",
            "Customer account field",
            default=OPTION_DEFAULTS["account_field"],
            help_text="Field or relationship path read into fields['customer_account'].",
        ),
        OptionField(
            "deal_breaker_field",
            "Deal-breaker checkbox",
            default=OPTION_DEFAULTS["deal_breaker_field"],
            help_text="Read into fields['deal_breaker'].",
        ),
        OptionField(
            "linked_item_field",
            "Linked item field",
            default=OPTION_DEFAULTS["linked_item_field"],
            help_text="Holds the Targetprocess or Jira item (id, key or URL); read into "
            "fields['linked_item'] for the link rules.",
        ),
        OptionField(
            "request_extra_fields",
            "More request fields",
            help_text="Comma-separated fields or paths to read as well (Salesforce rejects unknown ones).",
        ),
        OptionField(
            "case_request_field",
            "Case's request lookup",
            help_text="A lookup on Case to the request object (e.g. Feature_Request__c): the request is "
            "linked as derived from the case. Empty: no such link.",
        ),
        OptionField("case_extra_fields", "More case fields", help_text="Comma-separated fields or paths."),
        OptionField(
            "status_history",
            "Status history",
            choices=(ON, OFF),
            default=ON,
            help_text="Read status changes from field history (needs history tracking on the status field).",
        ),
    )
    artifact_types = (REQUEST_TYPE, CASE_TYPE)
    features = frozenset({Feature.READ, Feature.WRITE})
    query_help = (
        "Which object to read: 'requests' (the feature request object) or 'cases', optionally followed by "
        "a SOQL condition, e.g. \"cases WHERE Origin = 'Web'\" (no ORDER BY or LIMIT). One object per scope."
    )
    rich_text_format = "html"  # rich text area fields

    def __init__(self, installation):
        super().__init__(installation)
        # A blank optional field (revenue, account, deal-breaker, linked item) switches it off, for orgs
        # without it; the others fall back to their defaults.
        options = {
            name: str(installation.options.get(name, default) or "")
            if name in OPTIONAL_FIELDS
            else str(installation.options.get(name) or default)
            for name, default in OPTION_DEFAULTS.items()
        }
        if not re.fullmatch(r"\d{2,3}\.\d", options["api_version"]):
            raise BadRequest(f"the API version looks like 62.0, not {options['api_version']!r}")
        if options["status_history"] not in (ON, OFF):
            raise BadRequest(f"status_history is {ON} or {OFF}")
        self.options = options
        self.request_spec = ObjectSpec(
            api_name=_object_name(options["request_object"]),
            item_type=REQUEST_TYPE,
            key_field="Name",
            title_field=_path(options["request_title_field"]),
            status_field=_path(options["request_status_field"]),
            revenue_path=_path(options["revenue_field"]),
            account_path=_path(options["account_field"]),
            deal_breaker_field=_path(options["deal_breaker_field"]),
            linked_item_field=_path(options["linked_item_field"]),
            extra_fields=_paths(options["request_extra_fields"]),
        )
        case_lookup = _path(options["case_request_field"])
        try:
            request_link = f"{relationship_of(case_lookup)}.Name" if case_lookup else ""
        except ValueError as error:
            raise BadRequest(f"case_request_field: {error}") from None
        self.case_spec = ObjectSpec(
            api_name="Case",
            item_type=CASE_TYPE,
            key_field="CaseNumber",
            title_field="Subject",
            status_field="Status",
            account_path="Account.Name",
            request_link_path=request_link,
            extra_fields=_paths(options["case_extra_fields"]),
        )
        credentials = installation.credentials
        if not credentials.get("client_id") or not credentials.get("client_secret"):
            raise AuthError("Salesforce needs the connected app's consumer key and secret")
        common = installation.http_options()
        base = installation.base_url.rstrip("/") + "/"
        self.session = SalesforceSession(self._log_in)
        self.instance_url = ""
        self.identity_url = ""
        self.login_http = HttpClient(base, **common)
        self.http = HttpClient(base, auth=self.session, **common)

    def close(self) -> None:
        self.http.close()
        self.login_http.close()

    # Auth

    def _log_in(self) -> str:
        credentials = self.installation.credentials
        form = urlencode(
            {
                "grant_type": "client_credentials",
                "client_id": credentials["client_id"],
                "client_secret": credentials["client_secret"],
            }
        )
        try:
            response = self.login_http.request(
                "POST",
                "services/oauth2/token",
                content=form,
                headers={"Content-Type": "application/x-www-form-urlencoded"},
                idempotent=True,  # asking for a token creates nothing
            )
        except (BadRequest, AuthError) as error:
            raise AuthError(
                f"Salesforce refused the client credentials ({error})", status=error.status
            ) from None
        try:
            body = response.json()
            token, instance_url = body["access_token"], body["instance_url"]
        except (ValueError, KeyError, TypeError):
            raise BadPayload(
                "POST /services/oauth2/token: no access_token and instance_url in the answer"
            ) from None
        if not isinstance(token, str) or not token or not isinstance(instance_url, str):
            raise BadPayload("POST /services/oauth2/token: no access_token and instance_url in the answer")
        self.instance_url = instance_url.rstrip("/")
        self.identity_url = body.get("id") or ""
        return token

    def _data_url(self, path: str) -> str:
        self.session.token()  # logs in on first use, which tells us the instance
        return f"{self.instance_url}/services/data/v{self.options['api_version']}/{path}"

    # Reading

    def check_connection(self) -> str:
        self.session.token()
        if self.identity_url:
            identity = self.http.get_json(self.identity_url)
            return identity.get("display_name") or identity.get("username") or "an unnamed user"
        self.http.get_json(self._data_url("limits"))
        return "the connected app's run-as user"

    def spec_for(self, scope: ScopeSpec) -> tuple[ObjectSpec, str]:
        """The object a scope reads and its SOQL condition (empty for all records)."""
        found = SCOPE_QUERY.fullmatch(scope.query or "")
        if found is None:
            raise BadRequest(f"cannot read the scope query {scope.query!r}: {self.query_help}")
        name, condition = (found.group("object") or "").lower(), found.group("condition") or ""
        if re.search(r"\b(order\s+by|limit|offset)\b", condition, re.I):
            raise BadRequest(
                "a scope's condition must not contain ORDER BY, LIMIT or OFFSET: the reader adds them"
            )
        if name in REQUEST_ALIASES or name == self.request_spec.api_name.lower():
            return self.request_spec, condition
        if name in CASE_ALIASES:
            return self.case_spec, condition
        raise BadRequest(f"unknown object {found.group('object')!r} in the scope query: {self.query_help}")

    def read_changes(self, scope: ScopeSpec, since: datetime | None) -> Iterator[Page]:
        spec, condition = self.spec_for(scope)
        clauses = []
        if since is not None:
            clauses.append(f"SystemModstamp >= {soql_datetime(since)}")
        if condition:
            clauses.append(f"({condition})")
        for records in self._query(spec.select(" AND ".join(clauses))):
            yield self._page(spec, records)

    def read_item(self, key: str, scope: ScopeSpec) -> ToolItem:
        spec, _ = self.spec_for(scope)
        return self._read_one(spec, f"{spec.key_field} = {soql_string(key)}", key)

    def list_ids(self, scope: ScopeSpec) -> Iterator[str]:
        spec, condition = self.spec_for(scope)
        # Names come from validated options; the condition is the admin's own SOQL.
        where = f" WHERE {condition}" if condition else ""
        soql = f"SELECT Id FROM {spec.api_name}{where} ORDER BY Id"  # noqa: S608
        for records in self._query(soql):
            for record in records:
                yield str(record["Id"])

    def _query(self, soql: str) -> Iterator[list[dict[str, Any]]]:
        yield from self.http.paginate_next_url(self._data_url("query"), params={"q": soql})

    def _read_one(self, spec: ObjectSpec, condition: str, what: str) -> ToolItem:
        records = [record for page in self._query(spec.select(condition)) for record in page]
        if not records:
            raise NotFound(f"no {spec.api_name} {what} in Salesforce")
        page = self._page(spec, records[:1])
        if page.failures:
            raise BadPayload(page.failures[0].message)
        return page.items[0]

    def _page(self, spec: ObjectSpec, records: list[Any]) -> Page:
        ids = [
            record["Id"]
            for record in records
            if isinstance(record, dict) and isinstance(record.get("Id"), str)
        ]
        histories = self._histories(spec, ids)
        page = Page(items=[])
        for record in records:
            try:
                page.items.append(
                    record_to_item(record, spec, self.installation.base_url, histories.get(record["Id"], []))
                )
            except (KeyError, TypeError, ValueError, AttributeError) as error:
                native_id = str(record.get("Id") or "") if isinstance(record, dict) else ""
                key = str(record.get(spec.key_field) or "") if isinstance(record, dict) else ""
                page.failures.append(
                    ItemFailure(
                        native_id,
                        key,
                        f"cannot read {spec.api_name} {key or native_id}: {error!r:.200}",
                        record,
                    )
                )
        return page

    def _histories(self, spec: ObjectSpec, record_ids: list[str]) -> dict[str, list[dict[str, Any]]]:
        """Status rows of the records' field history, by record id, oldest first."""
        by_record: dict[str, list[dict[str, Any]]] = defaultdict(list)
        if self.options["status_history"] == OFF:
            return by_record
        _, parent_field = spec.history
        for start in range(0, len(record_ids), HISTORY_CHUNK):
            for rows in self._query(spec.history_query(record_ids[start : start + HISTORY_CHUNK])):
                for row in rows:
                    if isinstance(row, dict) and isinstance(row.get(parent_field), str):
                        by_record[row[parent_field]].append(row)
        return by_record

    # Writing

    def _spec_for_type(self, item_type: str) -> ObjectSpec:
        for spec in (self.request_spec, self.case_spec):
            if item_type in (spec.item_type, spec.api_name):
                return spec
        raise BadRequest(f"Salesforce creates {REQUEST_TYPE} and {CASE_TYPE} items, not {item_type!r}")

    def _spec_for_ref(self, ref: ItemRef) -> ObjectSpec:
        return self.case_spec if ref.native_id.startswith(CASE_KEY_PREFIX) else self.request_spec

    def title_path(self, item_type: str) -> str:
        return self._spec_for_type(item_type).title_field

    def person_value(self, path: str, account_id: str) -> tuple[str, Any]:
        # A relationship path (Owner.Name) is set through its id field (OwnerId).
        relationship, _, _ = path.partition(".")
        return f"{relationship}Id" if relationship != path else path, account_id

    def create_item(
        self, scope: ScopeSpec, item_type: str, fields: dict[str, Any], *, marker: str = ""
    ) -> ToolItem:
        spec = self._spec_for_type(item_type)
        created = self.http.post_json(self._data_url(f"sobjects/{spec.api_name}/"), fields)
        if not isinstance(created, dict) or not created.get("success") or not created.get("id"):
            raise BadRequest(f"Salesforce did not create the {spec.api_name}: {created!r:.200}")
        return self._read_one(spec, f"Id = {soql_string(created['id'])}", created["id"])

    def update_item(self, ref: ItemRef, fields: dict[str, Any]) -> None:
        spec = self._spec_for_ref(ref)
        self.http.request("PATCH", self._data_url(f"sobjects/{spec.api_name}/{ref.native_id}"), json=fields)

    def transition_item(self, ref: ItemRef, to_status: str) -> None:
        self.update_item(ref, {self._spec_for_ref(ref).status_field: to_status})


class SalesforceSession(httpx.Auth):
    """Bearer auth that logs in on first use, and once more when Salesforce calls the session invalid."""

    requires_response_body = True

    def __init__(self, log_in: Callable[[], str]):
        self._log_in = log_in
        self._token: str | None = None
        self._lock = threading.Lock()
        self.logins = 0

    def token(self, stale: str | None = None) -> str:
        """The current token; a new one when there is none yet or when `stale` is still the current one."""
        with self._lock:
            if self._token is None or self._token == stale:
                self._token = self._log_in()
                self.logins += 1
            return self._token

    def auth_flow(self, request: httpx.Request):
        token = self.token()
        request.headers["Authorization"] = f"Bearer {token}"
        response = yield request
        if response.status_code == 401 and _is_invalid_session(response):
            request.headers["Authorization"] = f"Bearer {self.token(stale=token)}"
            yield request


def _is_invalid_session(response: httpx.Response) -> bool:
    try:
        body = response.json()
    except ValueError:
        return False
    return isinstance(body, list) and any(
        isinstance(error, dict) and error.get("errorCode") == "INVALID_SESSION_ID" for error in body
    )


def _path(value: str) -> str:
    value = value.strip()
    if value and not FIELD_PATH.fullmatch(value):
        raise BadRequest(f"{value!r} is not a Salesforce field name or relationship path")
    return value


def _paths(value: str) -> tuple[str, ...]:
    return tuple(_path(part) for part in value.split(",") if part.strip())


def _object_name(value: str) -> str:
    value = value.strip()
    if not OBJECT_NAME.fullmatch(value):
        raise BadRequest(f"{value!r} is not a Salesforce object API name")
    return value
