"""Zendesk Support: tickets through the cursor-based incremental export, history from audits, writes.

Reading
    ``GET /api/v2/incremental/tickets/cursor.json?start_time=<epoch seconds>`` first, then
    ``cursor=<after_cursor>`` until ``end_of_stream``; one Page per export page, side-loading users,
    organizations and metric sets. The export matches on ``generated_timestamp`` (seconds), so
    ``start_time`` is `since` floored to the second: every ticket changed at or after `since` comes.
    Zendesk refuses a ``start_time`` less than a minute old ("Too recent start_time") and leaves out
    changes of the last minute anyway, so that answer reads as "nothing to export yet".
    Deleted tickets come with ``status: "deleted"`` and are yielded with ``deleted=True``.

History
    The status history is the ``Change`` events on ``status`` in the ticket's audits
    (``GET /api/v2/tickets/{id}/audits.json``, cursor paging). Cost: one request per ticket read
    (more for tickets with over 100 audits), except tickets whose side-loaded metric set shows the
    status untouched since creation, which have no status change to fetch; plus one
    ``users/show_many.json`` per page for audit authors not side-loaded yet (remembered per run).
    Audits are needed even for tickets whose status did not change since `since`: the engine
    replaces an item's whole transition ledger with the changelog it is given.

Items
    item_type "Ticket" (Zendesk's ``type`` question/incident/problem/task is in `fields["type"]`);
    key "#<id>"; url ``<base>/agent/tickets/<id>``; status the ticket's status (new, open, pending,
    hold, solved, closed). `fields` is the ticket JSON plus ``requester``/``submitter``/``assignee``
    ({id, name, email}), ``organization`` ({id, name}), ``custom`` (custom field values by id),
    ``jira_key`` (the custom field named by the ``jira_key_field_id`` option) and ``metric_set``.
    Links in the tool: an incident is ``child_of`` its problem; a follow-up is ``derived_from`` the
    ticket it follows.
"""

import itertools
from collections.abc import Iterator, Mapping
from dataclasses import replace
from datetime import datetime
from typing import Any, ClassVar

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
    is_number_text,
    nest_paths,
    register_connector,
)
from connectors.client import DEFAULT_MAX_PAGES, HttpClient
from connectors.exceptions import (
    AuthError,
    BadPayload,
    BadRequest,
    ConnectorError,
    NotFound,
    PageLimitExceeded,
)
from connectors.providers.zendesk import webhooks
from connectors.providers.zendesk.items import (
    ITEM_TYPE,
    STATUSES,
    SYSTEM_AUTHOR_ID,
    ScopeFilter,
    SideLoads,
    status_never_changed,
    ticket_id_from_key,
    ticket_to_item,
)

EXPORT_PAGE_CAP = 1000
SUB_PAGE_SIZE = 100  # audits and comments
SHOW_MANY_LIMIT = 100
TOO_RECENT = "too recent start_time"
TICKET_TYPES = ("question", "incident", "problem", "task")


@register_connector
class ZendeskConnector(Connector):
    slug = "zendesk"
    name = "Zendesk Support"
    credential_fields: ClassVar = (
        CredentialField("email", "Agent email", secret=False),
        CredentialField("api_token", "API token"),
        WEBHOOK_SECRET_FIELD,
    )
    option_fields: ClassVar = (
        OptionField(
            "jira_key_field_id",
            "Jira key custom field id",
            help_text="The id of the ticket field holding a linked Jira issue key, if the account has one.",
        ),
    )
    artifact_types = (ITEM_TYPE,)
    features = frozenset({Feature.READ, Feature.WRITE, Feature.LINKS, Feature.WEBHOOKS})
    webhook_module = webhooks
    query_help = (
        "* for every ticket, or terms that must all match: organization:<id or name>, group:<id>, "
        "brand:<id>, form:<id>, type:<question|incident|problem|task>, tag:<tag>."
    )

    def __init__(self, installation):
        super().__init__(installation)
        self.jira_key_field_id = str(installation.options.get("jira_key_field_id") or "").strip()
        self._users: dict[int, dict[str, Any]] = {}  # audit authors looked up so far
        self.http = HttpClient(
            installation.base_url.rstrip("/") + "/api/v2/",
            auth=self._auth(),
            **installation.http_options(),
        )

    def _auth(self) -> httpx.Auth:
        credentials = self.installation.credentials
        if not credentials.get("email") or not credentials.get("api_token"):
            raise AuthError("Zendesk needs the agent's email and an API token")
        return httpx.BasicAuth(f"{credentials['email']}/token", credentials["api_token"])

    def close(self) -> None:
        self.http.close()

    # Reading

    def check_connection(self) -> str:
        user = (self.http.get_json("users/me.json") or {}).get("user") or {}
        if user.get("id") is None:  # Zendesk answers an anonymous "me" rather than a 401 at times
            raise AuthError("Zendesk did not accept the credentials (signed in as an anonymous user)")
        return user.get("name") or user.get("email") or "an unnamed user"

    def read_changes(self, scope: ScopeSpec, since: datetime | None) -> Iterator[Page]:
        scope_filter = self._scope_filter(scope)
        start_time = 0 if since is None else int(since.timestamp() // 1)
        per_page = max(1, min(scope.page_size, EXPORT_PAGE_CAP))
        include = "users,organizations,metric_sets"
        for body in self._export(start_time, {"per_page": per_page, "include": include}):
            yield self._page(body, scope_filter)

    def read_item(self, key: str, scope: ScopeSpec) -> ToolItem:
        try:
            ticket_id = ticket_id_from_key(key)
        except ValueError as error:
            raise BadRequest(str(error)) from None
        body = self.http.get_json(
            f"tickets/{ticket_id}.json", params={"include": "users,organizations,metric_sets"}
        )
        if not isinstance(body, dict) or not isinstance(body.get("ticket"), dict):
            raise BadPayload(f"GET tickets/{ticket_id}.json: no ticket in the answer")
        audits = self._audits(ticket_id)
        sideloads = self._with_audit_authors(SideLoads.from_body(body), [audits])
        try:
            return ticket_to_item(
                body["ticket"], self.installation.base_url, sideloads, audits, self.jira_key_field_id
            )
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            raise BadPayload(f"cannot read ticket #{ticket_id}: {error!r:.200}") from None

    def list_ids(self, scope: ScopeSpec) -> Iterator[str]:
        """Every live ticket of the scope: the whole export from the epoch, without deleted tickets."""
        scope_filter = self._scope_filter(scope)
        params: dict[str, Any] = {"per_page": EXPORT_PAGE_CAP, "exclude_deleted": "true"}
        if scope_filter.needs_organizations:
            params["include"] = "organizations"
        for body in self._export(0, params):
            sideloads = SideLoads.from_body(body)
            for ticket in body["tickets"]:
                if isinstance(ticket, dict) and "id" in ticket and scope_filter.matches(ticket, sideloads):
                    yield str(ticket["id"])

    @staticmethod
    def _scope_filter(scope: ScopeSpec) -> ScopeFilter:
        try:
            return ScopeFilter.parse(scope.query)
        except ValueError as error:
            raise BadRequest(str(error)) from None

    def _export(self, start_time: int, params: dict[str, Any]) -> Iterator[dict[str, Any]]:
        """The export's pages from `start_time`, following after_cursor until end_of_stream."""
        path = "incremental/tickets/cursor.json"
        try:
            body = self.http.get_json(path, params={**params, "start_time": start_time})
        except BadRequest as error:
            if TOO_RECENT in str(error).lower():
                return  # changes of the last minute are not exported yet: nothing to read
            raise
        for page_number in itertools.count(1):
            if not isinstance(body, dict) or not isinstance(body.get("tickets"), list):
                raise BadPayload(f"GET {path}: expected a list in 'tickets'")
            yield body
            if body.get("end_of_stream") is True:
                return
            cursor = body.get("after_cursor")
            if not cursor:
                raise BadPayload(f"GET {path}: end_of_stream is false but after_cursor is missing")
            if page_number >= DEFAULT_MAX_PAGES:
                raise PageLimitExceeded(f"GET {path}: more than {DEFAULT_MAX_PAGES} pages")
            body = self.http.get_json(path, params={**params, "cursor": cursor})

    def _page(self, body: dict[str, Any], scope_filter: ScopeFilter) -> Page:
        sideloads = SideLoads.from_body(body)
        page = Page(items=[])
        read: list[tuple[dict[str, Any], list[dict[str, Any]] | None]] = []
        for ticket in body["tickets"]:
            try:
                if not scope_filter.matches(ticket, sideloads):
                    continue
                audits = None
                if ticket.get("status") not in (None, "deleted") and not status_never_changed(
                    ticket, sideloads
                ):
                    audits = self._audits(str(ticket["id"]))
                read.append((ticket, audits))
            except (KeyError, TypeError, ValueError, AttributeError, NotFound, BadPayload) as error:
                page.failures.append(self._failure(ticket, error))
        sideloads = self._with_audit_authors(sideloads, [audits for _, audits in read if audits])
        for ticket, audits in read:
            try:
                page.items.append(
                    ticket_to_item(
                        ticket, self.installation.base_url, sideloads, audits, self.jira_key_field_id
                    )
                )
            except (KeyError, TypeError, ValueError, AttributeError) as error:
                page.failures.append(self._failure(ticket, error))
        return page

    @staticmethod
    def _failure(ticket: Any, error: Exception) -> ItemFailure:
        ticket_id = str(ticket.get("id", "")) if isinstance(ticket, dict) else ""
        key = f"#{ticket_id}" if ticket_id else ""
        return ItemFailure(ticket_id, key, f"cannot read ticket {key or '?'}: {error!r:.200}", ticket)

    def _with_audit_authors(self, sideloads: SideLoads, audit_lists: list[list[dict[str, Any]]]) -> SideLoads:
        """The side-loads plus the audits' authors, looked up (and remembered) with users/show_many."""
        wanted = {
            audit.get("author_id")
            for audits in audit_lists
            for audit in audits
            if isinstance(audit, dict) and isinstance(audit.get("author_id"), int)
        }
        unknown = sorted(wanted - set(sideloads.users) - set(self._users) - {SYSTEM_AUTHOR_ID})
        for start in range(0, len(unknown), SHOW_MANY_LIMIT):
            chunk = unknown[start : start + SHOW_MANY_LIMIT]
            try:
                body = self.http.get_json("users/show_many.json", params={"ids": ",".join(map(str, chunk))})
            except (NotFound, BadRequest):
                break  # authors then show as ids: not worth failing the page
            for user in (body or {}).get("users") or []:
                if isinstance(user, dict) and isinstance(user.get("id"), int):
                    self._users[user["id"]] = user
        if not self._users:
            return sideloads
        return replace(sideloads, users={**self._users, **sideloads.users})

    def _audits(self, ticket_id: str) -> list[dict[str, Any]]:
        return self._cursor_pages(f"tickets/{ticket_id}/audits.json", "audits")

    def _cursor_pages(self, path: str, items_field: str) -> list[dict[str, Any]]:
        """Every record of a cursor-paged list (``page[size]``, ``meta.has_more``, ``page[after]``)."""
        records: list[dict[str, Any]] = []
        params: dict[str, Any] = {"page[size]": SUB_PAGE_SIZE}
        for page_number in itertools.count(1):
            body = self.http.get_json(path, params=params)
            items = body.get(items_field) if isinstance(body, dict) else None
            if not isinstance(items, list):
                raise BadPayload(f"GET {path}: expected a list in {items_field!r}")
            records.extend(items)
            meta = body.get("meta") or {}
            if not meta.get("has_more"):
                return records
            if not meta.get("after_cursor"):
                raise BadPayload(f"GET {path}: has_more is true but after_cursor is missing")
            if page_number >= DEFAULT_MAX_PAGES:
                raise PageLimitExceeded(f"GET {path}: more than {DEFAULT_MAX_PAGES} pages")
            params = {"page[size]": SUB_PAGE_SIZE, "page[after]": meta["after_cursor"]}
        return records  # pragma: no cover (the loop only ends by returning or raising)

    # Writing

    def title_path(self, item_type: str) -> str:
        return "subject"

    def write_fields(self, item_type: str, values: Mapping[str, Any]) -> dict[str, Any]:
        """Custom fields, read as ``custom.<id>``, are written as the ticket's custom_fields list."""
        custom = {
            path.removeprefix("custom."): value
            for path, value in values.items()
            if path.startswith("custom.")
        }
        fields = nest_paths({path: value for path, value in values.items() if not path.startswith("custom.")})
        if custom:
            fields["custom_fields"] = [
                {"id": int(field_id) if is_number_text(field_id) else field_id, "value": value}
                for field_id, value in custom.items()
            ]
        return fields

    def person_value(self, path: str, account_id: str) -> tuple[str, Any]:
        # People are read resolved (assignee.name) and set by id (assignee_id).
        return f"{path.split('.')[0]}_id", int(account_id) if is_number_text(account_id) else account_id

    def condition_value(self, path: str, value: str) -> Any:
        return [value] if path == "tags" else value

    def create_item(
        self, scope: ScopeSpec, item_type: str, fields: dict[str, Any], *, marker: str = ""
    ) -> ToolItem:
        ticket = self._ticket_payload(fields)
        description = ticket.pop("description", None) or ticket.get("subject") or ""
        ticket.setdefault("comment", {"body": description})
        if item_type.lower() in TICKET_TYPES:
            ticket.setdefault("type", item_type.lower())
        created = self.http.post_json("tickets.json", {"ticket": ticket})
        try:
            ticket_id = created["ticket"]["id"]
        except (KeyError, TypeError):
            raise BadPayload("POST tickets.json: no ticket id in the answer") from None
        return self.read_item(f"#{ticket_id}", scope)

    def update_item(self, ref: ItemRef, fields: dict[str, Any]) -> None:
        ticket = self._ticket_payload(fields)
        # A comment in the update must not be repeated after a 5xx: Zendesk may have added it already.
        self.http.request(
            "PUT",
            f"tickets/{self._id(ref)}.json",
            json={"ticket": ticket},
            idempotent="comment" not in ticket,
        )

    def transition_item(self, ref: ItemRef, to_status: str) -> None:
        status = to_status.strip().lower()
        if status not in STATUSES:
            raise BadRequest(f"Zendesk has no ticket status “{to_status}”; use one of {', '.join(STATUSES)}")
        self.http.put_json(f"tickets/{self._id(ref)}.json", {"ticket": {"status": status}})

    def add_link(self, ref: ItemRef, link: ToolLink | None = None, *, url: str = "", title: str = "") -> None:
        """A private note with the link, once: a note already holding the URL is left as the link."""
        if link is not None:
            raise ConnectorError("Zendesk links tickets only through problems and follow-ups; pass a url")
        if not url:
            raise BadRequest("a link to add needs a url")
        ticket_id = self._id(ref)
        for comment in self._cursor_pages(f"tickets/{ticket_id}/comments.json", "comments"):
            texts = (comment.get(name) for name in ("body", "plain_body", "html_body"))
            if any(isinstance(text, str) and url in text for text in texts):
                return
        body = f"{title}: {url}" if title else url
        self.http.request(
            "PUT",
            f"tickets/{ticket_id}.json",
            json={"ticket": {"comment": {"body": body, "public": False}}},
            idempotent=False,  # after a 5xx the note may exist: the next call's look-up decides
        )

    def _ticket_payload(self, fields: dict[str, Any]) -> dict[str, Any]:
        """Ticket fields as Zendesk takes them; ``title`` is the subject, ``jira_key`` the custom field."""
        ticket = dict(fields)
        if "title" in ticket:
            ticket.setdefault("subject", ticket.pop("title"))
        if "jira_key" in ticket:
            jira_key = ticket.pop("jira_key")
            if not self.jira_key_field_id:
                raise BadRequest("set the connection's jira_key_field_id option to write a Jira key")
            custom = [
                entry
                for entry in ticket.get("custom_fields") or []
                if str(entry.get("id")) != self.jira_key_field_id
            ]
            field_id = (
                int(self.jira_key_field_id)
                if is_number_text(self.jira_key_field_id)
                else self.jira_key_field_id
            )
            ticket["custom_fields"] = [*custom, {"id": field_id, "value": jira_key}]
        return ticket

    @staticmethod
    def _id(ref: ItemRef) -> str:
        try:
            return ticket_id_from_key(ref.native_id or ref.key)
        except ValueError as error:
            raise BadRequest(str(error)) from None
