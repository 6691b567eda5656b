from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from connectors.base import StatusChange, ToolItem
from connectors.mappings import (
    FieldRule,
    MappingError,
    MappingSet,
    TypeRule,
    field_change_times,
    normalise,
    resolve_path,
)
from vsm.choices import FlowState

T0 = datetime(2026, 2, 2, 9, 0, tzinfo=UTC)
STATUSES = {
    "To Do": FlowState.NEW,
    "In Progress": FlowState.ACTIVE,
    "Blocked": FlowState.WAITING,
    "Done": FlowState.DONE,
}


def item(**overrides) -> ToolItem:
    values = {
        "native_id": "10001",
        "key": "ABC-1",
        "item_type": "Story",
        "url": "https://jira.example.test/browse/ABC-1",
        "title": "A story",
        "status": "Done",
        "created": T0,
        "updated": T0 + timedelta(days=3),
        "fields": {"priority": {"name": "P1"}, "labels": ["debt", "ui"], "assignee": {"displayName": "Ada"}},
        "changelog": [
            StatusChange(T0 + timedelta(hours=2), "To Do", "In Progress", "ada"),
            StatusChange(T0 + timedelta(hours=5), "In Progress", "Blocked", "ada"),
            StatusChange(T0 + timedelta(hours=9), "Blocked", "Done", "bob"),
        ],
    }
    values.update(overrides)
    return ToolItem(**values)


def mapping_set(*rules: TypeRule) -> MappingSet:
    return MappingSet(connection_name="Jira", rules=rules)


STORY = TypeRule(tool_type="Story", artifact_model_id=1, flow_item_type_id=10, statuses=STATUSES)


def test_normalise_replays_the_changelog_into_states_and_flow_dates():
    normalised = normalise(item(), mapping_set(STORY))
    assert [(t.from_state, t.to_state) for t in normalised.transitions] == [
        (FlowState.NEW, FlowState.ACTIVE),
        (FlowState.ACTIVE, FlowState.WAITING),
        (FlowState.WAITING, FlowState.DONE),
    ]
    assert normalised.flow_state == FlowState.DONE
    assert normalised.first_started_at == T0 + timedelta(hours=2)
    assert normalised.done_at == T0 + timedelta(hours=9)
    assert normalised.unmapped_statuses == set()


def test_an_unmapped_status_is_kept_as_unknown_and_reported():
    normalised = normalise(item(status="Reviewing"), mapping_set(STORY))
    assert normalised.tool_status == "Reviewing"
    assert normalised.flow_state == FlowState.UNKNOWN
    assert normalised.unmapped_statuses == {"Reviewing"}


def test_no_type_mapping_is_an_error_naming_the_type():
    with pytest.raises(MappingError, match="no type mapping for type “Bug”"):
        normalise(item(item_type="Bug"), mapping_set(STORY))


def test_conditional_mapping_wins_over_the_plain_one_and_priority_orders():
    debt = TypeRule(
        tool_type="Story",
        artifact_model_id=2,
        flow_item_type_id=40,
        condition_path="labels",
        condition_value="debt",
        statuses=STATUSES,
    )
    assert normalise(item(), mapping_set(STORY, debt)).artifact_model_id == 2
    no_label = item(fields={"labels": ["ui"]})
    assert normalise(no_label, mapping_set(STORY, debt)).artifact_model_id == 1


def test_field_rules_resolve_paths_transform_and_translate_values():
    rules = (
        FieldRule("priority.name", "priority", "text", {"P1": "Highest"}),
        FieldRule("assignee", "assignee", "person"),
        FieldRule("labels", "tags", "names"),
        FieldRule("customfield_404", "missing"),
        FieldRule("amount", "revenue", "number"),
    )
    rule = TypeRule(
        tool_type="Story", artifact_model_id=1, flow_item_type_id=None, fields=rules, statuses=STATUSES
    )
    normalised = normalise(item(fields={**item().fields, "amount": "125000.5"}), mapping_set(rule))
    assert normalised.fields == {
        "priority": "Highest",
        "assignee": "Ada",
        "tags": ["debt", "ui"],
        "revenue": 125000.5,
    }
    assert normalised.value == Decimal("125000.50")


def test_a_value_that_cannot_be_converted_is_a_mapping_error():
    rule = TypeRule(
        tool_type="Story",
        artifact_model_id=1,
        flow_item_type_id=None,
        fields=(FieldRule("priority.name", "points", "number"),),
        statuses=STATUSES,
    )
    with pytest.raises(MappingError, match=r"cannot read priority\.name as number"):
        normalise(item(), mapping_set(rule))


def test_rich_text_reads_atlassian_document_format():
    rule = TypeRule(
        tool_type="Story",
        artifact_model_id=1,
        flow_item_type_id=None,
        fields=(FieldRule("description", "description", "rich_text"),),
        statuses=STATUSES,
    )
    adf = {
        "type": "doc",
        "version": 1,
        "content": [{"type": "paragraph", "content": [{"type": "text", "text": "Hi"}]}],
    }
    assert normalise(item(fields={"description": adf}), mapping_set(rule)).fields["description"] == "Hi"


def test_resolve_path_through_lists_and_missing_keys():
    data = {"fixVersions": [{"name": "1.2"}], "a": {"b": None}}
    assert resolve_path(data, "fixVersions.0.name") == "1.2"
    assert resolve_path(data, "fixVersions.5.name") is None
    assert resolve_path(data, "a.b.c") is None


def test_the_fingerprint_changes_with_any_mapping_change():
    changed = TypeRule(
        tool_type="Story", artifact_model_id=1, flow_item_type_id=10, statuses={**STATUSES, "QA": "waiting"}
    )
    assert mapping_set(STORY).fingerprint != mapping_set(changed).fingerprint
    assert mapping_set(STORY).fingerprint == mapping_set(STORY).fingerprint


def test_duplicate_changelog_entries_become_one_transition():
    twice = item(changelog=[*item().changelog, item().changelog[0]])
    assert len(normalise(twice, mapping_set(STORY)).transitions) == 3


def test_resolve_path_fans_out_over_lists_with_a_star():
    build = {
        "changeSets": [{"items": [{"commitId": "a1"}, {"commitId": "b2"}]}, {"items": [{"commitId": "c3"}]}]
    }
    assert resolve_path(build, "changeSets.*.items.*.commitId") == ["a1", "b2", "c3"]
    assert resolve_path({"changeSets": []}, "changeSets.*.items.*.commitId") == []
    assert resolve_path({"labels": ["a", None]}, "labels.*") == ["a"]


def _priority_rule() -> TypeRule:
    return TypeRule(
        tool_type="Story",
        artifact_model_id=1,
        flow_item_type_id=None,
        fields=(FieldRule("priority.name", "priority", "text"),),
        statuses=STATUSES,
    )


def test_field_change_times_come_from_the_tools_history_where_it_names_the_field():
    edited = T0 + timedelta(hours=7)
    normalised = normalise(item(field_times={"priority": edited}), mapping_set(_priority_rule()))
    times = field_change_times(normalised, None, {})
    assert times == {
        "priority": edited.isoformat(),
        "title": T0.isoformat(),  # a history naming no change of the title: unchanged since creation
        "status": (T0 + timedelta(hours=9)).isoformat(),  # the last transition
    }


def test_without_a_history_a_field_changes_when_a_read_first_sees_its_new_value():
    rule = mapping_set(_priority_rule())
    first = normalise(item(), rule)
    before = field_change_times(first, None, {})
    assert before["priority"] == before["title"] == first.updated_at.isoformat()
    later = T0 + timedelta(days=5)
    again = normalise(item(updated=later, fields={"priority": {"name": "P2"}}), rule)
    times = field_change_times(again, first.model_values(), before)
    assert times["priority"] == later.isoformat()  # changed since the last read
    assert times["title"] == before["title"]  # the same value: its time stays
