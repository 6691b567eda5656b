"""Tool items -> normalised artifacts, through type, field and status mappings. Pure functions, no ORM.

`load_mapping_set` (in connectors.selectors) turns the admin-edited mappings of a connection into a
`MappingSet`; `normalise` applies it to one `ToolItem`.

Conventions:
- A field mapping's tool path is dotted and resolved in the item's native field bag (`ToolItem.fields`),
  e.g. `priority.name` or `customfield_10014`; list indexes are numbers (`fixVersions.0.name`).
- The normalised field `revenue` also fills the artifact's `value` column (revenue at stake).
- Rich text (the `rich_text` transform) is kept as canonical Markdown, read from the tool's own form
  (`MappingSet.rich_text_format`: HTML, Jira wiki markup or ADF, Markdown) by connectors.richtext, so
  two tools compare and exchange it paragraph for paragraph, list for list, link for link.
- A status without a mapping keeps its tool status with the flow state `unknown`, and is reported.
- When each model value last changed (`field_change_times`, what integrations settle "latest wins" on,
  field by field): the flow state at its last transition (the item's creation before any); a mapped
  field or the title at the time the tool's own history names for it; else, while the value stays as
  stored, the time stored before; else, at the first read of an item whose tool keeps a history naming
  no change of it, its creation; else the item's `updated` at the read that saw the new value (bounded
  by the reads: two edits between two reads share a time).
"""

import hashlib
import json
import re
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from connectors import richtext
from connectors.base import StatusChange, ToolItem, ToolLink, is_number_text
from vsm.choices import FlowState
from vsm.flow import derive_flow_dates

VALUE_FIELD = "revenue"
RICH_TEXT = "rich_text"  # the transform keeping a tool's rich text as Markdown (connectors.richtext)
# The model-level names of an item's title and flow state, beside its mapped fields.
TITLE, STATUS = "title", "status"


class MappingError(Exception):
    """The item cannot be mapped (no type mapping, a value that cannot be converted)."""


@dataclass(frozen=True)
class FieldRule:
    tool_path: str
    model_field: str
    transform: str = "none"
    value_map: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class TypeRule:
    tool_type: str
    artifact_model_id: int
    flow_item_type_id: int | None
    condition_path: str = ""
    condition_value: str = ""
    priority: int = 100
    fields: tuple[FieldRule, ...] = ()
    statuses: dict[str, str] = field(default_factory=dict)
    label: str = ""

    def matches(self, item: ToolItem) -> bool:
        if not self.condition_path:
            return True
        value = resolve_path(item.fields, self.condition_path)
        if isinstance(value, list):
            return any(_as_text(element) == self.condition_value for element in value)
        return _as_text(value) == self.condition_value


@dataclass(frozen=True)
class MappingSet:
    connection_name: str
    rules: tuple[TypeRule, ...]
    rich_text_format: str = "markdown"  # the tool's (Connector.rich_text_format)

    @property
    def fingerprint(self) -> str:
        """Changes whenever any mapping changes, so stored items are re-normalised."""
        text = json.dumps(
            [rule.__dict__ for rule in self.rules], default=lambda o: o.__dict__, sort_keys=True
        )
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def tool_fields(self) -> tuple[str, ...]:
        """The top-level native fields the mappings read, for providers that must name fields."""
        names = {rule.condition_path.split(".")[0] for rule in self.rules if rule.condition_path}
        names |= {field_rule.tool_path.split(".")[0] for rule in self.rules for field_rule in rule.fields}
        return tuple(sorted(names))

    def rule_for(self, item: ToolItem) -> TypeRule:
        candidates = sorted(
            (rule for rule in self.rules if rule.tool_type == item.item_type and rule.matches(item)),
            key=lambda rule: (rule.priority, not rule.condition_path),
        )
        if not candidates:
            raise MappingError(f"no type mapping for type “{item.item_type}” in {self.connection_name}")
        return candidates[0]


@dataclass(frozen=True)
class NormalisedTransition:
    at: datetime
    from_status: str
    to_status: str
    from_state: str
    to_state: str
    author: str


@dataclass
class NormalisedItem:
    external_id: str
    key: str
    title: str
    url: str
    tool_status: str
    flow_state: str
    artifact_model_id: int
    flow_item_type_id: int | None
    created_at: datetime
    updated_at: datetime
    first_started_at: datetime | None
    done_at: datetime | None
    fields: dict[str, Any]
    value: Decimal | None
    transitions: list[NormalisedTransition]
    links: list[ToolLink]
    unmapped_statuses: set[str]
    rule_label: str
    # When the tool's own history says model values last changed (those it names); None when the tool
    # keeps no history of its fields.
    history_times: dict[str, datetime] | None = None

    def model_values(self) -> dict[str, Any]:
        """The item's values as integrations compare them: mapped fields, title and flow state."""
        return {**self.fields, TITLE: self.title, STATUS: self.flow_state}


def without_nul(value: Any) -> Any:
    """Strings without NUL characters, recursively: PostgreSQL text and JSON cannot store them."""
    if isinstance(value, str):
        return value.replace("\x00", "") if "\x00" in value else value
    if isinstance(value, dict):
        return {without_nul(key): without_nul(element) for key, element in value.items()}
    if isinstance(value, list):
        return [without_nul(element) for element in value]
    return value


def normalise(item: ToolItem, mappings: MappingSet) -> NormalisedItem:
    rule = mappings.rule_for(item)
    unmapped: set[str] = set()

    def state_of(status: str) -> str:
        if not status:
            return ""
        state = rule.statuses.get(status)
        if state is None:
            unmapped.add(status)
            return FlowState.UNKNOWN
        return state

    fields = {
        field_rule.model_field: _field_value(item, field_rule, mappings.rich_text_format)
        for field_rule in rule.fields
    }
    fields = without_nul({name: value for name, value in fields.items() if value is not None})
    transitions = _transitions(item.changelog, state_of)
    history_times = None
    if item.field_times is not None:
        roots = {field_rule.model_field: field_rule.tool_path.split(".")[0] for field_rule in rule.fields}
        history_times = {
            name: item.field_times[root] for name, root in roots.items() if root in item.field_times
        }
        if TITLE in item.field_times:
            history_times[TITLE] = item.field_times[TITLE]
    flow_state = state_of(item.status) or FlowState.UNKNOWN
    dates = derive_flow_dates(((t.at, t.to_state) for t in transitions), flow_state)
    return NormalisedItem(
        external_id=item.native_id,
        key=item.key,
        title=without_nul(item.title)[:1000],
        url=item.url,
        tool_status=without_nul(item.status),
        flow_state=flow_state,
        artifact_model_id=rule.artifact_model_id,
        flow_item_type_id=rule.flow_item_type_id,
        created_at=item.created,
        updated_at=item.updated,
        first_started_at=dates.first_started_at,
        done_at=dates.done_at,
        fields=fields,
        value=_money(fields.get(VALUE_FIELD)),
        transitions=transitions,
        links=list(item.links),
        unmapped_statuses=unmapped,
        rule_label=rule.label or rule.tool_type,
        history_times=history_times,
    )


def field_change_times(
    item: NormalisedItem, before_values: dict[str, Any] | None, before_times: dict[str, str]
) -> dict[str, str]:
    """When each of the item's model values last changed, as ISO instants (see the module docstring);
    `before_values`/`before_times`: what the store held of the item (None: nothing)."""
    history = item.history_times
    times = {}
    for name, value in item.model_values().items():
        if name == STATUS:
            at = item.transitions[-1].at if item.transitions else item.created_at
        elif history is not None and name in history:
            at = history[name]
        elif before_values is not None and before_values.get(name) == value and name in before_times:
            times[name] = before_times[name]
            continue
        elif before_values is None and history is not None:
            at = item.created_at  # first read: a history that names no change says none since creation
        else:
            at = item.updated_at
        times[name] = at.isoformat()
    return times


def _transitions(changelog: list[StatusChange], state_of) -> list[NormalisedTransition]:
    seen = set()
    transitions = []
    for change in sorted(changelog, key=lambda change: change.at):
        identity = (change.at, change.from_status, change.to_status)
        if identity in seen:
            continue
        seen.add(identity)
        transitions.append(
            NormalisedTransition(
                at=change.at,
                from_status=change.from_status,
                to_status=change.to_status,
                from_state=state_of(change.from_status),
                to_state=state_of(change.to_status),
                author=change.author[:200],
            )
        )
    return transitions


def resolve_path(data: Any, path: str) -> Any:
    """Follow a dotted path through dicts and lists; None where it leads nowhere.

    A `*` step fans out over a list: `changeSets.*.items.*.commitId` gives the list of every commit
    id found (flattened, Nones dropped).
    """
    if not path:
        return data
    part, _, rest = path.partition(".")
    if part == "*":
        if not isinstance(data, list):
            return None
        found = []
        for element in data:
            value = resolve_path(element, rest)
            if isinstance(value, list) and "*" in rest:
                found.extend(value)
            elif value is not None:
                found.append(value)
        return found
    if isinstance(data, dict):
        current = data.get(part)
    elif isinstance(data, list) and is_number_text(part) and int(part) < len(data):
        current = data[int(part)]
    else:
        return None
    return None if current is None else resolve_path(current, rest)


def _field_value(item: ToolItem, rule: FieldRule, rich_text_format: str) -> Any:
    value = resolve_path(item.fields, rule.tool_path)
    if rule.transform == RICH_TEXT:
        value = None if value is None else richtext.to_markdown(value, rich_text_format)
    else:
        value = apply_transform(value, rule.transform, rule.tool_path)
    if rule.value_map and value is not None:
        if isinstance(value, list):
            return [rule.value_map.get(str(element), element) for element in value]
        return rule.value_map.get(str(value), value)
    return value


def apply_transform(value: Any, transform: str, path: str = "") -> Any:
    if value is None or transform == "none":
        return value
    try:
        return TRANSFORMS[transform](value)
    except (TypeError, ValueError, InvalidOperation, KeyError) as error:
        raise MappingError(f"cannot read {path or 'value'} as {transform}: {value!r:.80} ({error})") from None


def _as_text(value: Any) -> str:
    if isinstance(value, dict):
        for key in ("name", "value", "displayName", "key", "title"):
            if key in value:
                return str(value[key])
        return json.dumps(value, sort_keys=True)
    return "" if value is None else str(value)


def _person(value: Any) -> str:
    if isinstance(value, dict):
        for key in ("displayName", "name", "login", "email", "emailAddress", "username"):
            if value.get(key):
                return str(value[key])
    return _as_text(value)


def _names(value: Any) -> list[str]:
    return [_as_text(element) for element in value] if isinstance(value, list) else [_as_text(value)]


def _number(value: Any) -> float | int:
    number = Decimal(str(value))
    return int(number) if number == number.to_integral_value() else float(number)


def _datetime(value: Any) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    return _parse_datetime(str(value)).isoformat()


def _date(value: Any) -> str:
    if isinstance(value, date | datetime):
        return value.isoformat()[:10]
    return date.fromisoformat(str(value)[:10]).isoformat()


JIRA_OFFSET = re.compile(r"([+-]\d{2})(\d{2})$")


def _parse_datetime(text: str) -> datetime:
    normalised = JIRA_OFFSET.sub(r"\1:\2", text.replace("Z", "+00:00"))
    parsed = datetime.fromisoformat(normalised)
    if parsed.tzinfo is None:
        raise ValueError("no time zone")
    return parsed


def _money(value: Any) -> Decimal | None:
    if value is None or value == "":
        return None
    try:
        return Decimal(str(value)).quantize(Decimal("0.01"))
    except InvalidOperation:
        raise MappingError(f"revenue {value!r:.40} is not a number") from None


TRANSFORMS = {
    "text": _as_text,
    "number": _number,
    "datetime": _datetime,
    "date": _date,
    "person": _person,
    "names": _names,
}
