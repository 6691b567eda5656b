"""CSV import: the items and status history of a tool without an API, uploaded in admin.

Reads only: the file becomes `ToolItem`s that go through the real ingest (`PageStore.save_page`), so
type, field and status mappings, idempotence, links and sync errors behave exactly as for any other
tool. Nothing is written straight into the store. `parse_csv` is pure (no ORM); `csv_import` runs it
for a scope of a CSV connection under a sync run (trigger "manual") and stores the items in pages of
500.

The file
--------
One row per status change, grouped by item (the key). Encoding UTF-8, with or without a BOM (Excel's
"CSV UTF-8"); comma or semicolon as the delimiter, detected from the header line (an Excel `sep=;`
first line is understood too); the first line names the columns, in any order and any case. At most
20 MB.

Columns (required ones first):

- key (required): the item's key in the tool, e.g. ABC-12; unique within the connection.
- type (required): the tool's item type, e.g. Story or Bug; a type mapping of the connection must match it.
- at (required): when the change happened, ISO 8601 with an offset, e.g. 2026-03-01T10:30:00+01:00 or
  2026-03-01T09:30:00Z; a date or a time without an offset is refused.
- status: the status the change moved to; empty: the row changes no status (only a title or a field).
- from_status: the status it moved from; empty: the item's status on its previous row (none on its first).
- title: the item's title.
- created: when the item was created (ISO 8601 with an offset); empty: the item's first `at`.
- url: a link to the item in the tool (http:// or https://).
- parent: the key of the item's parent in the same connection, stored as a "child of" link (the parent may
  come in another file: the link waits for it).
- author: who made the change.
- field:<name>: any other field of the item, e.g. field:priority; a field mapping reads it as <name>
  (the prefix in any case, the name as written).

Example::

    key,type,title,status,at,parent,field:priority
    ABC-1,Epic,Checkout revamp,Open,2026-03-01T09:00:00+01:00,,High
    ABC-2,Story,Pay by card,To Do,2026-03-02T10:00:00+01:00,ABC-1,
    ABC-2,Story,Pay by card,In Progress,2026-03-03T09:15:00+01:00,ABC-1,
    ABC-2,Story,Pay by card,Done,2026-03-05T17:40:00+01:00,ABC-1,

Rules:
- The rows of an item may come in any order: they are sorted by `at` (file order breaks ties). The
  item's status is the status of its latest row that has one, its updated time is its latest `at`, and
  title, type, url, parent and each field take the value of its latest row that has one. A row whose
  status equals the previous one records no transition. The first row with a status records the
  item's first status (a transition from nothing, unless `from_status` says otherwise).
- `created` may be repeated on several rows of an item, but with one value.
- An import carries an item's whole history: an item in the file replaces what is stored for it (its
  transitions become exactly the file's rows); items not in the file are left alone. So keep all the
  rows of an item in one file. Re-importing the same file changes nothing.
- Errors are reported per row with its line in the file (the header is line 1): a missing key, type or
  at; a date that cannot be read or has no offset; a row dated before its item's created; a created
  that differs between rows; a from_status without a status; a url that is not http(s); a value too
  long for the store; more values than the header has columns. Identical rows are ignored, not errors.
- An item with any bad row is not imported at all (each of its bad rows is reported), so no item ever
  lands with a partial history. Good items of the same file still import.
- Problems with the file itself refuse it whole, reported at their line: not UTF-8 text, a NUL
  character, broken quoting, an empty file, and in the header an unknown column (not one of the above
  nor field:<name>), a repeated column, or a missing required column.
- Items the mappings refuse (no type mapping for their type, a field value that cannot be converted)
  are reported at their first line; a status without a status mapping is stored with the flow state
  "unknown" and reported once, as for any tool. Bad rows are also recorded as sync errors (stage
  "read", fingerprint "csv-line:<line>:<hash of the row>"), so re-importing the same file updates them
  rather than adding more.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import io
import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from connectors.base import Page, StatusChange, ToolItem, ToolLink
from connectors.exceptions import ConnectorError
from connectors.ingest import PageStore, ScopeLease, connection_record_health
from connectors.models import Scope, SyncError, SyncOutcome, SyncRun, SyncStage, SyncTrigger
from connectors.selectors import load_mapping_set
from vsm.choices import LinkKind

CSV_KIND = "csv"  # the slug of connectors.providers.csv
MAX_BYTES = 20 * 1024 * 1024
PAGE_SIZE = 500
MAX_RECORDED_ERRORS = 1000  # bad rows recorded as sync errors; the report lists them all

FIELD_PREFIX = "field:"
REQUIRED_COLUMNS = ("key", "type", "at")
COLUMNS = ("key", "type", "at", "status", "from_status", "title", "created", "url", "parent", "author")
DATE_EXAMPLE = "2026-03-01T10:30:00+01:00"
MAX_LENGTHS = {"key": 255, "parent": 255, "type": 200, "status": 200, "from_status": 200, "url": 1000}
HTTP_URL = re.compile(r"https?://\S+", re.IGNORECASE)

# What the admin page shows; the module docstring says the same for developers.
COLUMN_HELP = (
    ("key", True, "the item's key in the tool, e.g. ABC-12 (unique within the connection)"),
    ("type", True, "the tool's item type, e.g. Story or Bug: a type mapping of the connection must match it"),
    ("at", True, f"when the change happened: ISO 8601 with an offset, e.g. {DATE_EXAMPLE} or …Z"),
    ("status", False, "the status the change moved to; empty: the row changes no status"),
    ("from_status", False, "the status it moved from; empty: the item's status on its previous row"),
    ("title", False, "the item's title"),
    ("created", False, "when the item was created (ISO 8601 with an offset); empty: its first row's at"),
    ("url", False, "a link to the item in the tool (http:// or https://)"),
    ("parent", False, "the key of the item's parent in the same connection (a “child of” link)"),
    ("author", False, "who made the change"),
    ("field:<name>", False, "any other field, e.g. field:priority; a field mapping reads it as <name>"),
)
EXAMPLE = """\
key,type,title,status,at,parent,field:priority
ABC-1,Epic,Checkout revamp,Open,2026-03-01T09:00:00+01:00,,High
ABC-2,Story,Pay by card,To Do,2026-03-02T10:00:00+01:00,ABC-1,
ABC-2,Story,Pay by card,In Progress,2026-03-03T09:15:00+01:00,ABC-1,
ABC-2,Story,Pay by card,Done,2026-03-05T17:40:00+01:00,ABC-1,
"""


class CsvImportError(Exception):
    """The upload cannot be imported at all: too large, not a CSV scope, or the scope is busy."""


@dataclass(frozen=True)
class RowError:
    line: int  # the physical line in the file where the row starts; the header is line 1
    message: str
    key: str = ""
    cells: dict[str, str] | None = field(default=None, compare=False, repr=False)


@dataclass
class ParsedFile:
    items: list[ToolItem]
    errors: list[RowError]
    rows: int = 0  # data rows read (blank lines not counted)
    duplicates: int = 0  # identical rows ignored
    lines: dict[str, list[int]] = field(default_factory=dict)  # key -> its lines, for imported items
    refused: bool = False  # the file itself is unreadable: nothing in it imports


@dataclass
class ImportReport:
    run_id: int
    imported: int  # items stored: created, updated or already up to date
    failed: int  # bad rows, and items the mappings refused
    errors: list[RowError]
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    rows: int = 0
    duplicates: int = 0
    warnings: list[str] = field(default_factory=list)


# --- Parsing (pure) ----------------------------------------------------------------------------------


@dataclass
class _Row:
    line: int
    cells: dict[str, str]  # column -> value, non-empty values only
    problems: list[str]
    at: datetime | None = None
    created: datetime | None = None

    @property
    def key(self) -> str:
        return self.cells.get("key", "")


def parse_csv(data: str | bytes) -> ParsedFile:
    """Rows of status changes -> one ToolItem per key with its changelog, and the rows that are wrong."""
    text, problem = _decode(data)
    if problem is not None:
        return _refused(problem)
    lines = io.StringIO(text, newline="")
    first_line, offset = lines.readline(), 1
    if first_line.strip().lower().startswith("sep=") and len(first_line.strip()) == 5:
        delimiter = first_line.strip()[-1]
        offset = 2
    else:
        delimiter = ";" if first_line.count(";") > first_line.count(",") else ","
        lines.seek(0)
    reader = csv.reader(lines, delimiter=delimiter, strict=True)
    end = 0  # the last line of the record read last, counted from the header
    try:
        header = next(reader, None)
        if header is None or not any(cell.strip() for cell in header):
            return _refused(
                RowError(offset, f"the file is empty: its first line must name the columns ({_names()})")
            )
        end = reader.line_num
        columns, header_errors = _columns(header, offset)
        if header_errors:
            return _refused(*header_errors)
        parsed = ParsedFile(items=[], errors=[])
        rows: list[_Row] = []
        seen: set[tuple[str, ...]] = set()
        for record in reader:
            line, end = end + 1, reader.line_num
            values = [cell.strip() for cell in record]
            while values and not values[-1]:
                values.pop()
            if not values:
                continue  # a blank line, or only delimiters
            parsed.rows += 1
            if tuple(values) in seen:
                parsed.duplicates += 1
                continue
            seen.add(tuple(values))
            rows.append(_row(line + offset - 1, values, columns))
    except csv.Error as error:
        line = end + offset  # where the record that could not be read starts
        return _refused(
            RowError(line, f"the CSV cannot be read from this line on: {error} (check its quotes)")
        )
    _group(rows, parsed)
    parsed.errors.sort(key=lambda error: error.line)
    return parsed


def _refused(*errors: RowError) -> ParsedFile:
    return ParsedFile(items=[], errors=list(errors), refused=True)


def _names() -> str:
    return ", ".join(COLUMNS) + f" and {FIELD_PREFIX}<name>"


def _decode(data: str | bytes) -> tuple[str, RowError | None]:
    if isinstance(data, str):
        text = data.removeprefix("\ufeff")
    elif data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "", RowError(1, "the file is UTF-16 text: save it as CSV in UTF-8 (Excel: “CSV UTF-8”)")
    else:
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError as error:
            line = data.count(b"\n", 0, error.start) + 1
            return "", RowError(
                line,
                f"the file is not UTF-8 text (byte 0x{data[error.start]:02x} on line {line}): "
                "upload a CSV file saved in UTF-8",
            )
    nul = text.find("\x00")
    if nul >= 0:
        line = text.count("\n", 0, nul) + 1
        return "", RowError(line, "the file holds a NUL character: it is not a text CSV file")
    return text, None


def _columns(header: list[str], line: int) -> tuple[list[str | None], list[RowError]]:
    """The column of each position (None: an unnamed one), and what is wrong with the header."""
    columns: list[str | None] = []
    errors: list[RowError] = []
    position_of: dict[str, int] = {}
    for position, cell in enumerate(header, start=1):
        name = cell.strip()
        lowered = name.lower()
        if not name:
            columns.append(None)
            continue
        if lowered in COLUMNS:
            column = lowered
        elif lowered.startswith(FIELD_PREFIX) and name[len(FIELD_PREFIX) :].strip():
            column = FIELD_PREFIX + name[len(FIELD_PREFIX) :].strip()
        else:
            errors.append(RowError(line, f"unknown column “{name}”: the columns are {_names()}"))
            columns.append(None)
            continue
        if column in position_of:
            errors.append(
                RowError(
                    line, f"column “{name}” appears twice (columns {position_of[column]} and {position})"
                )
            )
        position_of.setdefault(column, position)
        columns.append(column)
    for required in REQUIRED_COLUMNS:
        if required not in position_of:
            errors.append(RowError(line, f"the header has no “{required}” column (required: key, type, at)"))
    return columns, errors


def _row(line: int, values: list[str], columns: list[str | None]) -> _Row:
    cells: dict[str, str] = {}
    problems: list[str] = []
    for position, value in enumerate(values, start=1):
        if not value:
            continue
        if position > len(columns):
            problems.append(f"the row has {len(values)} values but the header names {len(columns)} columns")
            break
        column = columns[position - 1]
        if column is None:
            problems.append(f"value “{_short(value)}” in column {position}, which the header does not name")
        else:
            cells[column] = value
    row = _Row(line, cells, problems)
    for column in REQUIRED_COLUMNS:
        if not cells.get(column):
            hint = f" (ISO 8601 with an offset, e.g. {DATE_EXAMPLE})" if column == "at" else ""
            problems.append(f"{column} is required{hint}")
    for column, limit in MAX_LENGTHS.items():
        if len(cells.get(column, "")) > limit:
            problems.append(f"{column} is longer than {limit} characters")
    if cells.get("at"):
        row.at = _instant(cells["at"])
        if row.at is None:
            problems.append(
                f"at must be ISO 8601 with an offset, e.g. {DATE_EXAMPLE} (got “{_short(cells['at'])}”)"
            )
    if cells.get("created"):
        row.created = _instant(cells["created"])
        if row.created is None:
            problems.append(
                f"created must be ISO 8601 with an offset, e.g. {DATE_EXAMPLE} "
                f"(got “{_short(cells['created'])}”)"
            )
    if cells.get("url") and not HTTP_URL.fullmatch(cells["url"]):
        problems.append(f"url must be an http:// or https:// address (got “{_short(cells['url'])}”)")
    if cells.get("from_status") and not cells.get("status"):
        problems.append("from_status needs a status (the status the change moved to)")
    if cells.get("parent") and cells.get("parent") == cells.get("key"):
        problems.append("parent names the item itself")
    return row


def _instant(text: str) -> datetime | None:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment.astimezone(UTC) if moment.tzinfo is not None else None


def _short(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _group(rows: list[_Row], parsed: ParsedFile) -> None:
    """Rows -> items; an item with any bad row is reported and left out whole."""
    by_key: dict[str, list[_Row]] = {}
    for row in rows:
        if row.key:
            by_key.setdefault(row.key, []).append(row)
        else:
            parsed.errors.append(RowError(row.line, "; ".join(row.problems), "", row.cells))
    for key, item_rows in by_key.items():
        item_rows.sort(key=lambda row: row.line)
        with_created = [row for row in item_rows if row.created is not None]
        dated = sorted((row for row in item_rows if row.at is not None), key=lambda row: (row.at, row.line))
        created = with_created[0].created if with_created else (dated[0].at if dated else None)
        for row in with_created[1:]:
            if row.created != created:
                first = with_created[0]
                row.problems.append(
                    f"created {row.cells['created']} differs from {first.cells['created']} "
                    f"on line {first.line}"
                )
        for row in dated:
            if created is not None and row.at < created:
                row.problems.append(
                    f"at {row.cells['at']} is before the item's created {created.isoformat()}"
                )
        bad = [row for row in item_rows if row.problems]
        if bad:
            for row in bad:
                message = f"{'; '.join(row.problems)}; item “{key}” is not imported"
                parsed.errors.append(RowError(row.line, message, key, row.cells))
            continue
        parsed.items.append(_item(key, dated, created))
        parsed.lines[key] = [row.line for row in item_rows]


def _item(key: str, rows: list[_Row], created: datetime) -> ToolItem:
    status = title = url = parent = item_type = ""
    fields: dict[str, Any] = {}
    changelog: list[StatusChange] = []
    for row in rows:
        cells = row.cells
        item_type = cells["type"]
        title = cells.get("title", title)
        url = cells.get("url", url)
        parent = cells.get("parent", parent)
        fields.update(
            {
                name[len(FIELD_PREFIX) :]: value
                for name, value in cells.items()
                if name.startswith(FIELD_PREFIX)
            }
        )
        to_status = cells.get("status", "")
        if to_status:
            from_status = cells.get("from_status", status)
            if from_status != to_status:
                changelog.append(StatusChange(row.at, from_status, to_status, cells.get("author", "")))
            status = to_status
    updated = rows[-1].at
    raw = {
        "key": key,
        "type": item_type,
        "title": title,
        "status": status,
        "created": created.isoformat(),
        "updated": updated.isoformat(),
        "url": url,
        "parent": parent,
        "fields": fields,
        "rows": [row.cells for row in rows],
    }
    return ToolItem(
        native_id=key,
        key=key,
        item_type=item_type,
        url=url,
        title=title,
        status=status,
        created=created,
        updated=updated,
        fields=fields,
        changelog=changelog,
        links=[ToolLink(kind=LinkKind.CHILD_OF.value, target_key=parent)] if parent else [],
        raw=raw,
    )


# --- The import (through the ingest engine) ---------------------------------------------------------


def csv_import(scope: Scope, uploaded_file) -> ImportReport:
    """Store the items of an uploaded CSV file in the scope, through the ingest, under a manual run.

    Raises CsvImportError when the file cannot be taken at all (not a CSV scope, too large, the scope
    busy with another sync); a file that is unreadable as CSV gives a failed run with its errors.
    """
    connection = scope.connection
    if connection.kind != CSV_KIND:
        raise CsvImportError(
            f"“{scope}” reads from a {connection.kind} connection: only scopes of CSV connections take "
            "file imports"
        )
    name = getattr(uploaded_file, "name", "") or "the file"
    size = getattr(uploaded_file, "size", None) or 0
    data = uploaded_file.read(MAX_BYTES + 1) if size <= MAX_BYTES else b""
    if max(size, len(data)) > MAX_BYTES:
        raise CsvImportError(
            f"“{name}” is {max(size, len(data)) / 1024 / 1024:.1f} MB; the limit is "
            f"{MAX_BYTES // 1024 // 1024} MB: split it into several files, each with all the rows of its "
            "items"
        )
    parsed = parse_csv(data)
    lease = ScopeLease(scope.pk)
    if not lease.acquire():
        raise CsvImportError(f"another sync or import of “{scope}” is running: import the file when it ends")
    run = SyncRun.objects.create(
        scope=scope, trigger=SyncTrigger.MANUAL, started_at=timezone.now(), cursor_before=scope.cursor
    )
    try:
        store = PageStore(scope, load_mapping_set(connection), run)
        for start in range(0, len(parsed.items), PAGE_SIZE):
            store.save_page(Page(items=parsed.items[start : start + PAGE_SIZE]))
            lease.renew()
        _record_row_errors(store, run, parsed.errors)
        mapping_errors, warnings = _mapping_problems(run, parsed)
    except ConnectorError as error:  # the lease was lost to another worker
        _finish(run, SyncOutcome.FAILED, str(error))
        raise CsvImportError(str(error)) from None
    except Exception as error:
        _finish(run, SyncOutcome.FAILED, f"unexpected error: {error.__class__.__name__}: {error}")
        raise
    finally:
        lease.release()

    run.refresh_from_db()
    errors = sorted([*parsed.errors, *mapping_errors], key=lambda error: error.line)
    summary = (
        f"CSV import of “{name}”: {parsed.rows} rows, {len(parsed.items)} items handed to the store, "
        f"{len(errors)} failed"
    )
    if parsed.refused:
        _finish(run, SyncOutcome.FAILED, f"{summary}: line {errors[0].line}: {errors[0].message}")
    else:
        _finish(run, SyncOutcome.PARTIAL if run.failed else SyncOutcome.SUCCESS, summary)
        connection_record_health(connection, error="")
    return ImportReport(
        run_id=run.pk,
        imported=run.created + run.updated + run.unchanged,
        failed=len(errors),
        errors=errors,
        created=run.created,
        updated=run.updated,
        unchanged=run.unchanged,
        rows=parsed.rows,
        duplicates=parsed.duplicates,
        warnings=warnings,
    )


def _record_row_errors(store: PageStore, run: SyncRun, errors: list[RowError]) -> None:
    """Each bad row becomes a sync error (the same row again updates its open error), up to a cap."""
    if not errors:
        return
    now = timezone.now()
    with transaction.atomic():
        for error in errors[:MAX_RECORDED_ERRORS]:
            basis = error.cells if error.cells is not None else error.message
            digest = hashlib.sha256(json.dumps(basis, sort_keys=True).encode()).hexdigest()[:16]
            payload = {"line": error.line, "cells": error.cells} if error.cells is not None else None
            store._upsert_error(
                SyncStage.READ,
                f"csv-line:{error.line}:{digest}",
                error.key,
                "",
                f"line {error.line}: {error.message}",
                payload,
                now,
            )
        if len(errors) > MAX_RECORDED_ERRORS:
            more = errors[MAX_RECORDED_ERRORS:]
            store._upsert_error(
                SyncStage.READ,
                f"csv-more:{more[0].line}:{len(more)}",
                "",
                "",
                f"line {more[0].line} and {len(more) - 1} more bad rows after it, not listed one by one: "
                "fix the rows listed and import the file again",
                None,
                now,
            )
        SyncRun.objects.filter(pk=run.pk).update(failed=F("failed") + len(errors))


def _mapping_problems(run: SyncRun, parsed: ParsedFile) -> tuple[list[RowError], list[str]]:
    """What the ingest reported for this run: items the mappings refused (at their lines), and
    statuses without a status mapping."""
    errors, warnings = [], []
    for fingerprint, key, message in SyncError.objects.filter(run=run, stage=SyncStage.MAPPING).values_list(
        "fingerprint", "item_key", "message"
    ):
        if fingerprint.startswith("item:") and key in parsed.lines:
            lines = parsed.lines[key]
            where = f"line {lines[0]}" if len(lines) == 1 else f"lines {', '.join(map(str, lines))}"
            errors.append(RowError(lines[0], f"{message}; item “{key}” ({where}) is not imported", key))
        elif fingerprint.startswith("unmapped-status:"):
            warnings.append(f"{message}: stored with the flow state “unknown”; add a status mapping")
    return errors, sorted(warnings)


def _finish(run: SyncRun, outcome: str, message: str) -> None:
    cursor = Scope.objects.filter(pk=run.scope_id).values_list("cursor", flat=True).first()
    SyncRun.objects.filter(pk=run.pk).update(
        outcome=outcome, finished_at=timezone.now(), cursor_after=cursor, message=message[:4000]
    )
