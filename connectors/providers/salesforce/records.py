"""Salesforce records -> ToolItems, and the SOQL the reader sends (pure functions, no HTTP)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from connectors.base import StatusChange, ToolItem, ToolLink

REQUEST_TYPE = "FeatureRequest"
CASE_TYPE = "Case"
# Salesforce writes UTC with milliseconds and an offset without a colon: 2024-05-01T13:00:00.000+0000.
SALESFORCE_TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?([+-]\d{4}|Z)")
# An API name or a relationship path (Opportunity__r.Amount): what may be spliced into SOQL from options.
FIELD_PATH = re.compile(r"[A-Za-z][A-Za-z0-9_]*(\.[A-Za-z][A-Za-z0-9_]*)*")
OBJECT_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
# Normalised names the reader adds to the field bag (next to the record's own fields).
DERIVED_FIELDS = ("revenue", "deal_breaker", "customer_account", "linked_item", "sobject_type")


def parse_salesforce_time(text: Any) -> datetime:
    if not isinstance(text, str) or not SALESFORCE_TIMESTAMP.fullmatch(text):
        raise ValueError(f"{text!r:.40} is not a Salesforce timestamp")
    return datetime.fromisoformat(text)


def soql_datetime(moment: datetime) -> str:
    """An unquoted SOQL datetime literal in UTC, floored to the second (SOQL literals carry no fraction;
    flooring a `>=` bound can only re-read, never skip)."""
    if moment.tzinfo is None:
        raise ValueError("a watermark needs a time zone")
    return f"{moment.astimezone(UTC):%Y-%m-%dT%H:%M:%S}Z"


def soql_string(value: str) -> str:
    """A quoted SOQL string literal, with backslashes and quotes escaped."""
    escaped = str(value).replace("\\", "\\\\").replace("'", "\\'")
    return f"'{escaped}'"


def history_object_for(api_name: str) -> tuple[str, str]:
    """The field history object and its parent field: Case -> (CaseHistory, CaseId), Feature_Request__c
    -> (Feature_Request__History, ParentId)."""
    if api_name.endswith("__c"):
        return api_name[:-3] + "__History", "ParentId"
    return f"{api_name}History", f"{api_name}Id"


def relationship_of(lookup_field: str) -> str:
    """The relationship name of a lookup: Feature_Request__c -> Feature_Request__r, AccountId -> Account."""
    if lookup_field.endswith("__c"):
        return lookup_field[:-3] + "__r"
    if lookup_field.endswith("Id"):
        return lookup_field[:-2]
    raise ValueError(f"{lookup_field!r} is not a lookup field name")


@dataclass(frozen=True)
class ObjectSpec:
    """One object the connector reads, and where its fields live."""

    api_name: str
    item_type: str
    key_field: str
    title_field: str
    status_field: str
    revenue_path: str = ""
    account_path: str = ""
    deal_breaker_field: str = ""
    linked_item_field: str = ""
    request_link_path: str = ""  # Case: the related request's Name, e.g. Feature_Request__r.Name
    extra_fields: tuple[str, ...] = ()

    @property
    def history(self) -> tuple[str, str]:
        return history_object_for(self.api_name)

    def select_fields(self) -> list[str]:
        wanted = [
            "Id",
            self.key_field,
            self.title_field,
            self.status_field,
            "CreatedDate",
            "LastModifiedDate",
            "SystemModstamp",
            self.revenue_path,
            self.account_path,
            self.deal_breaker_field,
            self.linked_item_field,
            self.request_link_path,
            *self.extra_fields,
        ]
        unique: dict[str, str] = {}
        for name in wanted:
            if name:
                unique.setdefault(name.lower(), name)
        return list(unique.values())

    def select(self, where: str = "", order_by: str = "SystemModstamp, Id") -> str:
        # Names come from validated options (FIELD_PATH, OBJECT_NAME); values are quoted by soql_string.
        soql = f"SELECT {', '.join(self.select_fields())} FROM {self.api_name}"  # noqa: S608
        if where:
            soql += f" WHERE {where}"
        return soql + f" ORDER BY {order_by}"

    def history_query(self, record_ids: list[str]) -> str:
        history_object, parent_field = self.history
        ids = ", ".join(soql_string(record_id) for record_id in record_ids)
        status = soql_string(self.status_field)
        return (
            f"SELECT Id, {parent_field}, Field, OldValue, NewValue, CreatedDate, CreatedBy.Name "  # noqa: S608
            f"FROM {history_object} WHERE Field = {status} AND {parent_field} IN ({ids}) "
            "ORDER BY CreatedDate, Id"
        )


def resolve(record: Any, path: str) -> Any:
    """A dotted path through nested relationship records; None where a lookup is empty."""
    current = record
    for part in path.split("."):
        if not isinstance(current, dict):
            return None
        current = current.get(part)
    return current


def without_attributes(value: Any) -> Any:
    """The record with Salesforce's `attributes` blocks removed at every level."""
    if isinstance(value, dict):
        return {name: without_attributes(item) for name, item in value.items() if name != "attributes"}
    if isinstance(value, list):
        return [without_attributes(item) for item in value]
    return value


def status_changes(rows: list[dict[str, Any]]) -> list[StatusChange]:
    changes = []
    for row in rows:
        changes.append(
            StatusChange(
                at=parse_salesforce_time(row["CreatedDate"]),
                from_status=_text(row.get("OldValue")),
                to_status=_text(row.get("NewValue")),
                author=_text(resolve(row, "CreatedBy.Name")),
            )
        )
    return sorted(changes, key=lambda change: change.at)  # stable: same-instant rows keep their order


def record_to_item(
    record: dict[str, Any], spec: ObjectSpec, base_url: str, history_rows: list[dict[str, Any]]
) -> ToolItem:
    """Raises KeyError, TypeError or ValueError when the record lacks what every record has."""
    record_id = record["Id"]
    if not isinstance(record_id, str) or not record_id:
        raise ValueError("the record has no Id")
    key = record[spec.key_field]
    if not isinstance(key, str) or not key:
        raise ValueError(f"the record has no {spec.key_field}")
    status = record[spec.status_field]
    if status is not None and not isinstance(status, str):
        raise TypeError(f"{spec.status_field} is not text")
    fields = without_attributes(record)
    fields["sobject_type"] = spec.api_name
    if spec.revenue_path:
        fields["revenue"] = resolve(record, spec.revenue_path)
    if spec.deal_breaker_field:
        fields["deal_breaker"] = bool(record.get(spec.deal_breaker_field))
    if spec.account_path:
        fields["customer_account"] = resolve(record, spec.account_path)
    if spec.linked_item_field:
        fields["linked_item"] = record.get(spec.linked_item_field)
    links = []
    if spec.request_link_path:
        request_key = resolve(record, spec.request_link_path)
        if isinstance(request_key, str) and request_key:
            # The request was raised from this case: the link runs from the request to the case.
            links.append(
                ToolLink(
                    kind="derived_from", target_key=request_key, description="raised from case", incoming=True
                )
            )
    return ToolItem(
        native_id=record_id,
        key=key,
        item_type=spec.item_type,
        url=f"{base_url.rstrip('/')}/{record_id}",
        title=_text(record.get(spec.title_field)) or key,
        status=status or "",
        created=parse_salesforce_time(record["CreatedDate"]),
        updated=parse_salesforce_time(record["SystemModstamp"]),
        fields=fields,
        changelog=status_changes(history_rows),
        links=links,
        raw={**record, "Histories": {"totalSize": len(history_rows), "done": True, "records": history_rows}},
    )


def _text(value: Any) -> str:
    return "" if value is None else str(value)
