"""Trace links derived by rules from what items say, across tools.

A commit message that names a Jira key, a pull request that says "fixes #12", a build whose change set
lists commit ids, a Salesforce request whose field holds a Targetprocess id: each `LinkRule` of a
connection reads a path in its items' raw payloads, finds keys with a pattern, and links the item with
the items of the target connection that carry those keys. Links are made with origin `rule`, at most
once (the database's unique constraints make re-running a no-op); a key whose item is not stored yet
waits as a pending link, resolved by the ingest when that item arrives, in either order, and visible in
admin until then (a typo'd key stays there).
"""

import re
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import transaction
from django.utils import timezone

from connectors.mappings import resolve_path
from connectors.models import LinkRule, PendingLink, RawRecord, ToolConnection
from vsm.choices import LinkOrigin
from vsm.db import bulk_insert
from vsm.models import Artifact, ArtifactLink

# Patterns an admin can start from (name: (pattern, key template)).
PATTERN_PRESETS = {
    "Jira key (ABC-123)": (r"(?<![A-Za-z0-9_])(?P<key>[A-Z][A-Z0-9_]+-\d+)(?![A-Za-z0-9])", "{key}"),
    "GitHub #12 in the same repository": (r"(?<![\w/#])#(?P<number>\d+)\b", "{scope}#{number}"),
    "GitHub owner/repo#12": (r"(?P<repo>[\w.-]+/[\w.-]+)#(?P<number>\d+)\b", "{repo}#{number}"),
    "GitHub closing keywords (fixes #12)": (
        r"(?i)\b(?:close[sd]?|fix(?:e[sd])?|resolve[sd]?)\s*:?\s+#(?P<number>\d+)\b",
        "{scope}#{number}",
    ),
    "The whole value (an id or SHA)": ("", ""),
}
LOOKUP_CHUNK = 5000
LINK_FIELDS = ("source_id", "target_id", "kind", "origin", "created_at")
PENDING_FIELDS = (
    "source_id",
    "target_connection_id",
    "target_key",
    "kind",
    "origin",
    "reverse",
    "first_seen_at",
)


@dataclass(frozen=True)
class CompiledRule:
    rule_id: int
    item_types: frozenset[str]
    source_path: str
    regex: re.Pattern | None
    key_template: str
    target_connection_id: int
    kind: str
    reverse: bool

    def applies_to(self, item_type: str) -> bool:
        return not self.item_types or item_type in self.item_types

    def keys_in(self, raw: Any, scope: str) -> set[str]:
        found = resolve_path(raw, self.source_path)
        values = found if isinstance(found, list) else [found]
        keys = set()
        for value in values:
            if value is None or isinstance(value, dict | list):
                continue
            text = str(value)
            if self.regex is None:
                keys.add(text.strip())
                continue
            for match in self.regex.finditer(text):
                if self.key_template:
                    keys.add(self.key_template.format(scope=scope, match=match.group(0), **match.groupdict()))
                else:
                    keys.add(match.group(0))
        keys.discard("")
        return keys


def compile_rule(rule: LinkRule) -> CompiledRule:
    """Raises re.error for a pattern that does not compile (the admin form checks it first)."""
    return CompiledRule(
        rule_id=rule.pk,
        item_types=frozenset(name.strip() for name in rule.item_types.split(",") if name.strip()),
        source_path=rule.source_path,
        regex=re.compile(rule.pattern) if rule.pattern else None,
        key_template=rule.key_template,
        target_connection_id=rule.target_connection_id,
        kind=rule.kind,
        reverse=rule.reverse,
    )


def rules_of(connection: ToolConnection) -> list[CompiledRule]:
    return [compile_rule(rule) for rule in LinkRule.objects.filter(connection=connection, enabled=True)]


@dataclass(frozen=True)
class LinkSource:
    artifact_id: int
    item_type: str
    raw: Any
    scope: str


@dataclass
class LinkStats:
    references: int = 0
    linked: int = 0
    pending: int = 0


def derive_links(
    rules: list[CompiledRule], sources: Iterable[LinkSource], now: datetime | None = None
) -> LinkStats:
    """Apply the rules to these items: link to what is stored, keep the rest pending."""
    stats = LinkStats()
    if not rules:
        return stats
    now = now or timezone.now()
    wanted = defaultdict(set)  # target connection -> {(artifact_id, key, kind, reverse)}
    for source in sources:
        for rule in rules:
            if rule.applies_to(source.item_type):
                for key in rule.keys_in(source.raw, source.scope):
                    wanted[rule.target_connection_id].add((source.artifact_id, key, rule.kind, rule.reverse))
    links, pending = [], []
    for target_connection_id, references in wanted.items():
        stats.references += len(references)
        stored = _artifact_ids_by_key(target_connection_id, {key for _, key, _, _ in references})
        for artifact_id, key, kind, reverse in references:
            target_id = stored.get(key)
            if target_id is None:
                pending.append((artifact_id, target_connection_id, key, kind, LinkOrigin.RULE, reverse, now))
            elif target_id != artifact_id:
                ends = (target_id, artifact_id) if reverse else (artifact_id, target_id)
                links.append((*ends, kind, LinkOrigin.RULE, now))
    bulk_insert(ArtifactLink, LINK_FIELDS, links, ignore_conflicts=True)
    bulk_insert(PendingLink, PENDING_FIELDS, pending, ignore_conflicts=True)
    stats.linked, stats.pending = len(links), len(pending)
    return stats


def _artifact_ids_by_key(connection_id: int, keys: set[str]) -> dict[str, int]:
    ordered = sorted(keys)
    found: dict[str, int] = {}
    for start in range(0, len(ordered), LOOKUP_CHUNK):
        found.update(
            Artifact.objects.filter(
                connection_id=connection_id, key__in=ordered[start : start + LOOKUP_CHUNK]
            )
            .values_list("key", "id")
            .iterator()
        )
    return found


def relink_connection(connection: ToolConnection, *, external_ids: Iterable[str] | None = None) -> LinkStats:
    """Apply the connection's rules to its stored items (all, or those with these external ids)."""
    rules = rules_of(connection)
    totals = LinkStats()
    if not rules:
        return totals
    records = RawRecord.objects.filter(connection=connection).order_by("pk")
    if external_ids is not None:
        records = records.filter(external_id__in=list(external_ids))
    artifact_ids = dict(
        Artifact.objects.filter(connection=connection).values_list("external_id", "id").iterator()
    )
    batch: list[LinkSource] = []
    rows = records.values_list("external_id", "item_type", "payload", "scope__query")
    for external_id, item_type, payload, scope in rows.iterator(chunk_size=LOOKUP_CHUNK):
        artifact_id = artifact_ids.get(external_id)
        if artifact_id is not None:
            batch.append(LinkSource(artifact_id, item_type, payload, scope or ""))
        if len(batch) >= LOOKUP_CHUNK:
            _add(totals, _derive_in_transaction(rules, batch))
            batch = []
    if batch:
        _add(totals, _derive_in_transaction(rules, batch))
    return totals


@transaction.atomic
def _derive_in_transaction(rules, batch) -> LinkStats:
    return derive_links(rules, batch)


def _add(totals: LinkStats, stats: LinkStats) -> None:
    totals.references += stats.references
    totals.linked += stats.linked
    totals.pending += stats.pending


@dataclass(frozen=True)
class RulePreviewRow:
    key: str
    found: list[tuple[str, bool]]  # (referenced key, stored already)


def rule_preview(rule: LinkRule, *, limit: int = 20) -> list[RulePreviewRow]:
    """What the rule finds in the connection's newest items, and whether those keys are stored yet."""
    compiled = compile_rule(rule)
    records = (
        RawRecord.objects.filter(connection=rule.connection_id)
        .select_related("scope")
        .order_by("-fetched_at")[: limit * 5]
    )
    rows = []
    for record in records:
        if not compiled.applies_to(record.item_type):
            continue
        keys = compiled.keys_in(record.payload, record.scope.query if record.scope else "")
        if keys:
            stored = _artifact_ids_by_key(rule.target_connection_id, keys)
            rows.append(RulePreviewRow(record.key, [(key, key in stored) for key in sorted(keys)]))
        if len(rows) >= limit:
            break
    return rows
