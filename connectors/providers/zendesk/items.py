"""Zendesk ticket JSON (+ side-loads and audits) -> ToolItem (pure). Also the scope filter."""

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from connectors.base import StatusChange, ToolItem, ToolLink, is_number_text

ITEM_TYPE = "Ticket"
STATUSES = ("new", "open", "pending", "hold", "solved", "closed")
DELETED = "deleted"
SYSTEM_AUTHOR_ID = -1
# Zendesk writes UTC with whole seconds: 2017-04-19T11:14:21Z (some endpoints add milliseconds).
ZENDESK_TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})")


def parse_zendesk_time(text: Any) -> datetime:
    if not isinstance(text, str) or not ZENDESK_TIMESTAMP.fullmatch(text):
        raise ValueError(f"{text!r:.40} is not a Zendesk timestamp")
    return datetime.fromisoformat(text)


def ticket_key(ticket_id: Any) -> str:
    return f"#{ticket_id}"


def ticket_id_from_key(key: str) -> str:
    """ "#123", "123" -> "123"; anything else is a ValueError."""
    text = str(key).strip().lstrip("#")
    if not is_number_text(text):
        raise ValueError(f"{key!r} is not a Zendesk ticket key (#123)")
    return text


def ticket_url(base_url: str, ticket_id: Any) -> str:
    return f"{base_url.rstrip('/')}/agent/tickets/{ticket_id}"


@dataclass
class SideLoads:
    """What the export (or a show) side-loaded, by id."""

    users: Mapping[int, dict[str, Any]]
    organizations: Mapping[int, dict[str, Any]]
    metric_sets: Mapping[int, dict[str, Any]]  # by ticket id

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> "SideLoads":
        def by(records: Any, key: str) -> dict[int, dict[str, Any]]:
            if not isinstance(records, list):
                return {}
            return {record[key]: record for record in records if isinstance(record, dict) and key in record}

        return cls(
            users=by(body.get("users"), "id"),
            organizations=by(body.get("organizations"), "id"),
            metric_sets=by(body.get("metric_sets"), "ticket_id"),
        )

    def person(self, user_id: Any) -> dict[str, Any] | None:
        if user_id is None:
            return None
        user = self.users.get(user_id) or {}
        return {"id": user_id, "name": user.get("name"), "email": user.get("email")}

    def author_name(self, user_id: Any) -> str:
        if user_id == SYSTEM_AUTHOR_ID:
            return "Zendesk"
        user = self.users.get(user_id) or {}
        return user.get("name") or user.get("email") or ("" if user_id is None else str(user_id))


def status_changes(audits: list[dict[str, Any]], sideloads: SideLoads) -> list[StatusChange]:
    """Status ``Change`` events of the audits, at their audit's time, in time order."""
    changes = []
    for audit in audits:
        at = parse_zendesk_time(audit["created_at"])
        author = sideloads.author_name(audit.get("author_id"))
        for event in audit.get("events") or []:
            if event.get("type") == "Change" and event.get("field_name") == "status":
                changes.append(
                    StatusChange(
                        at=at,
                        from_status=event.get("previous_value") or "",
                        to_status=event.get("value") or "",
                        author=author,
                    )
                )
    changes.sort(key=lambda change: change.at)  # stable: events of one audit keep their order
    return changes


def status_never_changed(ticket: Mapping[str, Any], sideloads: SideLoads) -> bool:
    """True when the side-loaded metric set shows the status untouched since creation.

    Then the ticket's audits hold no status change and need not be fetched. Unsure means False.
    """
    metric_set = sideloads.metric_sets.get(ticket.get("id"))
    if not metric_set:
        return False
    try:
        status_updated = parse_zendesk_time(metric_set.get("status_updated_at"))
        return status_updated <= parse_zendesk_time(ticket.get("created_at"))
    except ValueError:
        return False


def ticket_links(ticket: Mapping[str, Any]) -> list[ToolLink]:
    links = []
    problem_id = ticket.get("problem_id")
    if problem_id:  # an incident belongs to its problem
        links.append(ToolLink(kind="child_of", target_key=ticket_key(problem_id), description="problem"))
    for followup_id in ticket.get("followup_ids") or []:  # a follow-up is derived from this ticket
        links.append(
            ToolLink(
                kind="derived_from",
                target_key=ticket_key(followup_id),
                description="follow-up",
                incoming=True,
            )
        )
    return links


def custom_field_values(ticket: Mapping[str, Any]) -> dict[str, Any]:
    values = {}
    for entry in ticket.get("custom_fields") or ticket.get("fields") or []:
        if isinstance(entry, dict) and "id" in entry:
            values[str(entry["id"])] = entry.get("value")
    return values


def ticket_fields(ticket: dict[str, Any], sideloads: SideLoads, jira_key_field_id: str) -> dict[str, Any]:
    """The native bag: the ticket JSON, plus resolved people, organisation and custom fields by id."""
    custom = custom_field_values(ticket)
    organization_id = ticket.get("organization_id")
    organization = sideloads.organizations.get(organization_id) or {}
    fields = dict(ticket)
    fields.update(
        {
            "requester": sideloads.person(ticket.get("requester_id")),
            "submitter": sideloads.person(ticket.get("submitter_id")),
            "assignee": sideloads.person(ticket.get("assignee_id")),
            "organization": None
            if organization_id is None
            else {"id": organization_id, "name": organization.get("name")},
            "custom": custom,
            "jira_key": (custom.get(jira_key_field_id) or None) if jira_key_field_id else None,
        }
    )
    metric_set = sideloads.metric_sets.get(ticket.get("id"))
    if metric_set:
        fields["metric_set"] = metric_set
    return fields


def ticket_updated(ticket: Mapping[str, Any]) -> datetime:
    """The later of ``updated_at`` and ``generated_timestamp`` (what the export matches on), so the
    engine's cursor moves past every ticket it has read."""
    updated = parse_zendesk_time(ticket["updated_at"])
    generated = ticket.get("generated_timestamp")
    if isinstance(generated, int) and not isinstance(generated, bool):
        updated = max(updated, datetime.fromtimestamp(generated, tz=UTC))
    return updated


def ticket_to_item(
    ticket: dict[str, Any],
    base_url: str,
    sideloads: SideLoads,
    audits: list[dict[str, Any]] | None,
    jira_key_field_id: str = "",
) -> ToolItem:
    """Raises KeyError, TypeError or ValueError when the ticket lacks what every ticket has."""
    ticket_id = ticket["id"]
    if not isinstance(ticket_id, int) or isinstance(ticket_id, bool):
        raise TypeError(f"ticket id {ticket_id!r} is not a number")
    status = ticket["status"]
    if not isinstance(status, str) or not status:
        raise ValueError(f"ticket {ticket_id} has no status")
    deleted = status == DELETED
    return ToolItem(
        native_id=str(ticket_id),
        key=ticket_key(ticket_id),
        item_type=ITEM_TYPE,
        url=ticket_url(base_url, ticket_id),
        title=ticket.get("subject") or ticket.get("raw_subject") or "",
        status=status,
        created=parse_zendesk_time(ticket["created_at"]),
        updated=ticket_updated(ticket),
        fields=ticket_fields(ticket, sideloads, jira_key_field_id),
        changelog=[] if deleted else status_changes(audits or [], sideloads),
        links=[] if deleted else ticket_links(ticket),
        raw=ticket,
        deleted=deleted,
    )


# Scope queries -----------------------------------------------------------------------------------

SCOPE_FILTERS = {
    "organization": "organization_id",
    "group": "group_id",
    "brand": "brand_id",
    "form": "ticket_form_id",
    "type": "type",
    "tag": "tags",
}


@dataclass(frozen=True)
class ScopeFilter:
    """A scope's query: empty, ``*`` or ``all`` for every ticket, else ``name:value`` terms, all of which
    must match: organization (id or name), group, brand, form (ids), type, tag."""

    terms: tuple[tuple[str, str], ...] = ()

    @classmethod
    def parse(cls, query: str) -> "ScopeFilter":
        text = (query or "").strip()
        if text in ("", "*", "all"):
            return cls()
        terms = []
        for token in text.split():
            name, separator, value = token.partition(":")
            name = name.lower()
            if not separator or not value or name not in SCOPE_FILTERS:
                known = ", ".join(f"{known}:" for known in SCOPE_FILTERS)
                raise ValueError(f"cannot read the scope term {token!r}: use * or terms like {known}")
            terms.append((name, value))
        return cls(tuple(terms))

    @property
    def needs_organizations(self) -> bool:
        return any(name == "organization" for name, _ in self.terms)

    def matches(self, ticket: Mapping[str, Any], sideloads: SideLoads) -> bool:
        return all(self._matches(name, value, ticket, sideloads) for name, value in self.terms)

    @staticmethod
    def _matches(name: str, value: str, ticket: Mapping[str, Any], sideloads: SideLoads) -> bool:
        actual = ticket.get(SCOPE_FILTERS[name])
        if name == "tag":
            return isinstance(actual, list) and value.lower() in (str(tag).lower() for tag in actual)
        if name == "organization" and actual is not None:
            organization = sideloads.organizations.get(actual) or {}
            if str(organization.get("name", "")).lower() == value.lower():
                return True
        return actual is not None and str(actual).lower() == value.lower()
