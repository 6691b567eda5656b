"""Targetprocess REST v1 JSON -> ToolItem (pure): Microsoft JSON dates, simple history, relations.

Keys: an item's key is ``TP-<Id>`` (its native id is the bare ``Id``). Targetprocess numbers every
entity (features, stories, requests, bugs...) from one sequence, so the id alone names an item across
types, and the ``TP-`` prefix keeps it apart from other tools' keys in traces and linking rules.
"""

import re
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from connectors.base import StatusChange, ToolItem, ToolLink, is_number_text

# The entity types read, with their v1 collection names.
RESOURCES = {
    "Epic": "Epics",
    "Feature": "Features",
    "UserStory": "UserStories",
    "Request": "Requests",
    "Bug": "Bugs",
}
DEFAULT_TYPES = ("Feature", "UserStory", "Request", "Bug")
KEY_PREFIX = "TP-"
# Parent references an entity carries, in the order they are tried; a bug names a story or a feature.
PARENT_FIELDS = {
    "UserStory": ("Feature",),
    "Feature": ("Epic",),
    "Bug": ("UserStory", "Feature"),
}

# "/Date(1717000000000+0200)/": epoch milliseconds (UTC), then the server's offset at that instant.
TP_DATE = re.compile(r"/Date\((-?\d+)(?:([+-])(\d{2})(\d{2}))?\)/")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def parse_tp_date(text: Any) -> datetime:
    """A Microsoft JSON date as an aware datetime in the offset it names (UTC when it names none)."""
    found = TP_DATE.fullmatch(text) if isinstance(text, str) else None
    if found is None:
        raise ValueError(f"{text!r:.40} is not a Targetprocess date")
    milliseconds, sign, hours, minutes = found.groups()
    offset = timedelta(0)
    if sign:
        offset = timedelta(hours=int(hours), minutes=int(minutes)) * (-1 if sign == "-" else 1)
    return (_EPOCH + timedelta(milliseconds=int(milliseconds))).astimezone(timezone(offset))


def tp_key(entity_id: Any) -> str:
    return f"{KEY_PREFIX}{int(entity_id)}"


def id_from_key(key: str) -> int:
    """``TP-123`` or ``123`` -> 123; ValueError for anything else."""
    text = key.strip()
    if text.upper().startswith(KEY_PREFIX):
        text = text[len(KEY_PREFIX) :]
    if not is_number_text(text):
        raise ValueError(f"{key!r} is not a Targetprocess key (TP-123) or id")
    return int(text)


def user_name(user: Any) -> str:
    if not isinstance(user, dict):
        return ""
    full = " ".join(part for part in (user.get("FirstName"), user.get("LastName")) if part)
    return full or user.get("Login") or (str(user["Id"]) if user.get("Id") is not None else "")


def status_changes(histories: list[dict[str, Any]]) -> list[StatusChange]:
    """EntityState changes between consecutive simple-history records, at the later record's Date.

    A record is written whenever the state, effort, release or iteration changes, so records with the
    state of the one before are skipped; the first record is the state the item was created in.
    """
    records = sorted(
        ((parse_tp_date(record["Date"]), record["Id"], record) for record in histories),
        key=lambda entry: (entry[0], entry[1]),
    )
    changes = []
    previous = None
    for at, _, record in records:
        state = record["EntityState"]["Name"]
        if previous is not None and state != previous:
            changes.append(
                StatusChange(
                    at=at, from_status=previous, to_status=state, author=user_name(record.get("Modifier"))
                )
            )
        previous = state
    return changes


def parent_links(entity: dict[str, Any], entity_type: str) -> list[ToolLink]:
    for name in PARENT_FIELDS.get(entity_type, ()):
        parent = entity.get(name)
        if isinstance(parent, dict) and parent.get("Id") is not None:
            return [ToolLink(kind="child_of", target_key=tp_key(parent["Id"]), description=name.lower())]
    return []


def _type_name(reference: dict[str, Any]) -> str:
    entity_type = reference.get("EntityType")
    if isinstance(entity_type, dict) and entity_type.get("Name"):
        return entity_type["Name"]
    return reference.get("ResourceType", "")


def relation_links(entity_id: int, relations: list[dict[str, Any]]) -> list[ToolLink]:
    """Relations (Master -> Slave) touching this entity as links.

    A relation between a request and anything else is read as that other item `derived_from` the
    request, whichever end is the master; any other relation is the master `relates_to` the slave.
    Each relation is declared on both ends: outgoing on its source, `incoming` on its target.
    """
    links = []
    for relation in relations:
        master, slave = relation["Master"], relation["Slave"]
        relation_type = (relation.get("RelationType") or {}).get("Name") or ""
        master_is_request = _type_name(master) == "Request"
        slave_is_request = _type_name(slave) == "Request"
        if master_is_request and not slave_is_request:
            source, target, kind = slave, master, "derived_from"
        elif slave_is_request and not master_is_request:
            source, target, kind = master, slave, "derived_from"
        else:
            source, target, kind = master, slave, "relates_to"
        if int(source["Id"]) == entity_id:
            links.append(ToolLink(kind=kind, target_key=tp_key(target["Id"]), description=relation_type))
        elif int(target["Id"]) == entity_id:
            links.append(
                ToolLink(kind=kind, target_key=tp_key(source["Id"]), description=relation_type, incoming=True)
            )
    unique = {}
    for link in links:
        unique.setdefault((link.kind, link.target_key, link.incoming), link)
    return list(unique.values())


def custom_field_values(entity: dict[str, Any]) -> dict[str, Any]:
    return {
        field["Name"]: field.get("Value")
        for field in entity.get("CustomFields") or []
        if isinstance(field, dict) and field.get("Name")
    }


def entity_to_item(
    entity: dict[str, Any],
    entity_type: str,
    base_url: str,
    histories: list[dict[str, Any]] | None = None,
    relations: list[dict[str, Any]] | None = None,
) -> ToolItem:
    """Raises KeyError, TypeError or ValueError when the entity lacks what every entity has.

    `fields` is the entity as received plus ``CustomFieldValues`` ({name: value} of its custom
    fields, so a mapping path reads ``CustomFieldValues.Jira Key``).
    """
    entity_id = int(entity["Id"])
    fields = dict(entity)
    fields["CustomFieldValues"] = custom_field_values(entity)
    return ToolItem(
        native_id=str(entity_id),
        key=tp_key(entity_id),
        item_type=entity_type,
        url=f"{base_url.rstrip('/')}/entity/{entity_id}",
        title=entity.get("Name") or "",
        status=entity["EntityState"]["Name"],
        created=parse_tp_date(entity["CreateDate"]),
        updated=parse_tp_date(entity["ModifyDate"]),
        fields=fields,
        changelog=status_changes(histories or []),
        links=parent_links(entity, entity_type) + relation_links(entity_id, relations or []),
        raw=entity,
    )


def scope_project_ids(query: str) -> list[int]:
    """A scope's query: project ids separated by commas, or ``*`` (every project: an empty list)."""
    text = query.strip()
    if text in ("", "*"):
        return []
    parts = [part.strip() for part in text.split(",")]
    if not all(is_number_text(part) for part in parts):
        raise ValueError(
            f"a Targetprocess scope is project ids separated by commas (12, 15) or *, not {query!r}"
        )
    return sorted({int(part) for part in parts})
