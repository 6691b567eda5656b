"""Jira issue JSON -> ToolItem (pure). Works for Cloud v2/v3, Data Center and the agile API's shape."""

import re
from datetime import datetime
from typing import Any

from connectors.base import StatusChange, ToolItem, ToolLink

# Jira writes offsets without a colon and with milliseconds: 2021-01-25T11:33:16.108+0800.
# Python 3.11's fromisoformat reads that form, forty times faster than strptime.
JIRA_TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?[+-]\d{4}")
DEFAULT_EPIC_LINK_FIELD = "customfield_10014"


def parse_jira_time(text: str) -> datetime:
    if not isinstance(text, str) or not JIRA_TIMESTAMP.fullmatch(text):
        raise ValueError(f"{text!r:.40} is not a Jira timestamp")
    return datetime.fromisoformat(text)


def link_kind(link_type_name: str) -> str:
    """A Jira issue link type as a trace link kind; anything without a clear meaning relates."""
    name = link_type_name.lower()
    if "implement" in name:
        return "implements"
    if "fix" in name:
        return "fixes"
    if "derive" in name or "clone" in name:
        return "derived_from"
    return "relates_to"


def status_changes(histories: list[dict[str, Any]]) -> list[StatusChange]:
    changes = []
    for history in histories:
        at = parse_jira_time(history["created"])
        author = history.get("author") or {}
        author_name = author.get("displayName") or author.get("name") or author.get("accountId") or ""
        for change in history.get("items", []):
            if change.get("field") == "status" or change.get("fieldId") == "status":
                changes.append(
                    StatusChange(
                        at=at,
                        from_status=change.get("fromString") or "",
                        to_status=change.get("toString") or "",
                        author=author_name,
                    )
                )
    return changes


def field_change_times(histories: list[dict[str, Any]]) -> dict[str, datetime]:
    """When each field last changed, by the id `fields` holds it under, the summary also as "title".

    Cloud names the field in `fieldId`; older Data Center changelogs only in `field`, the id of most
    system fields (summary, labels) but a display name for others ("Fix Version", custom fields), kept
    as it is: no mapping path reads it, so those fields' times come from the reads (connectors.mappings).
    """
    times: dict[str, datetime] = {}
    for history in histories:
        at = parse_jira_time(history["created"])
        for change in history.get("items", []):
            name = change.get("fieldId") or change.get("field")
            if isinstance(name, str) and name and (name not in times or times[name] < at):
                times[name] = at
    if "summary" in times:
        times["title"] = times["summary"]
    return times


def issue_links(fields: dict[str, Any], epic_link_field: str) -> list[ToolLink]:
    links = []
    parent = fields.get("parent")
    if isinstance(parent, dict) and parent.get("key"):
        links.append(ToolLink(kind="child_of", target_key=parent["key"], description="parent"))
    epic_key = fields.get(epic_link_field)
    if isinstance(epic_key, str) and epic_key:
        links.append(ToolLink(kind="child_of", target_key=epic_key, description="epic link"))
    agile_epic = fields.get("epic")  # the agile API's shape of the epic link
    if isinstance(agile_epic, dict) and agile_epic.get("key"):
        links.append(ToolLink(kind="child_of", target_key=agile_epic["key"], description="epic"))
    for link in fields.get("issuelinks") or []:
        # Each link shows on both issues; record it once, from the issue on its outward side.
        outward = link.get("outwardIssue")
        if outward and outward.get("key"):
            link_type = link.get("type") or {}
            links.append(
                ToolLink(
                    kind=link_kind(link_type.get("name", "")),
                    target_key=outward["key"],
                    description=link_type.get("outward", ""),
                )
            )
    # A parent that is also the epic (next-gen projects) is one link, not two.
    unique = {}
    for link in links:
        unique.setdefault((link.kind, link.target_key), link)
    return list(unique.values())


def issue_to_item(
    issue: dict[str, Any],
    base_url: str,
    histories: list[dict[str, Any]] | None = None,
    epic_link_field: str = DEFAULT_EPIC_LINK_FIELD,
) -> ToolItem:
    """Raises KeyError, TypeError or ValueError when the issue lacks what every issue has."""
    fields = issue["fields"]
    if histories is None:
        histories = (issue.get("changelog") or {}).get("histories") or []
    key = issue["key"]
    return ToolItem(
        native_id=str(issue["id"]),
        key=key,
        item_type=fields["issuetype"]["name"],
        url=f"{base_url.rstrip('/')}/browse/{key}",
        title=fields.get("summary") or "",
        status=fields["status"]["name"],
        created=parse_jira_time(fields["created"]),
        updated=parse_jira_time(fields["updated"]),
        fields=fields,
        changelog=status_changes(histories),
        links=issue_links(fields, epic_link_field),
        raw=issue,
        field_times=field_change_times(histories),
    )


PROJECT_KEY = re.compile(r"[A-Z][A-Z0-9_]{0,49}")


def scope_jql(query: str) -> str:
    """A scope's query is a project key or a JQL filter (without ORDER BY, which the reader adds)."""
    query = query.strip()
    if PROJECT_KEY.fullmatch(query):
        return f"project = {query}"
    if re.search(r"\border\s+by\b", query, re.IGNORECASE):
        raise ValueError("a scope's JQL must not contain ORDER BY: the reader orders by update time")
    return f"({query})"
