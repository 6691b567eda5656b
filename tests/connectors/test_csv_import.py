"""CSV import: a pure parser of rows of status changes, stored through the real ingest, and its admin page."""

from datetime import UTC, datetime, timedelta

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from connectors import csv_import as csv_module
from connectors.base import Feature, Installation, ScopeSpec, connector_for
from connectors.csv_import import CsvImportError, csv_import, parse_csv
from connectors.exceptions import ConnectorError
from connectors.ingest import scope_sync
from connectors.models import FieldMapping, PendingLink, RawRecord, SyncError, SyncRun, TypeMapping
from connectors.providers.csv import CsvConnector
from tests.factories import ScopeFactory, StaffFactory, ToolConnectionFactory, map_types
from vsm.choices import FlowState, LinkKind
from vsm.models import Artifact, ArtifactLink, StateTransition

STATUS_MAP = {
    "To Do": FlowState.NEW,
    "In Progress": FlowState.ACTIVE,
    "In Review": FlowState.WAITING,
    "Done": FlowState.DONE,
}
TYPE_MAP = {"Epic": "epic", "Story": "story", "Bug": "defect"}

# Lines as the file numbers them (header = 1); comments name what each one is about.
GOOD_AND_BAD = """\
key,type,title,status,at,from_status,created,url,parent,author,field:priority
ABC-2,Story,Pay by card,In Progress,2026-03-03T09:15:00+01:00,,,,ABC-1,ada,
ABC-1,Epic,Checkout revamp,To Do,2026-03-01T09:00:00+01:00,,,https://tool.example.test/ABC-1,,,High
ABC-2,Story,Pay by card,To Do,2026-03-02T10:00:00+01:00,,2026-03-02T08:00:00+01:00,,ABC-1,bob,Low
ABC-2,Story,Pay by card,Done,2026-03-05T17:40:00+01:00,In Review,,,ABC-1,ada,
ABC-3,Bug,No date zone,To Do,2026-03-01T09:00:00,,,,,,
ABC-3,Bug,No date zone,Done,2026-03-02T09:00:00Z,,,,,,
,Story,No key,To Do,2026-03-01T09:00:00Z,,,,,,
ABC-4,Story,Too early,To Do,2026-03-01T09:00:00Z,,2026-03-02T09:00:00Z,,,,
ABC-5,Story,No type or date,To Do,,,,,,,
ABC-5,,No type or date,Done,2026-03-04T09:00:00Z,,,,,,
ABC-6,Story,Not a date,To Do,yesterday,,,,,,
ABC-1,Epic,Checkout revamp,To Do,2026-03-01T09:00:00+01:00,,,https://tool.example.test/ABC-1,,,High
ABC-7,Story,Bad link,To Do,2026-03-01T09:00:00Z,,,javascript:alert(1),,,
"""
ZONE_HINT = "at must be ISO 8601 with an offset, e.g. 2026-03-01T10:30:00+01:00"
NOT_IMPORTED = "is not imported"


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


def upload(text: str | bytes, name: str = "items.csv") -> SimpleUploadedFile:
    return SimpleUploadedFile(name, text.encode() if isinstance(text, str) else text, "text/csv")


def snapshot(connection):
    artifacts = list(Artifact.objects.filter(connection=connection).order_by("pk").values())
    transitions = list(
        StateTransition.objects.filter(artifact__connection=connection).order_by("pk").values()
    )
    links = list(ArtifactLink.objects.filter(source__connection=connection).order_by("pk").values())
    raw = list(RawRecord.objects.filter(connection=connection).order_by("pk").values())
    return artifacts, transitions, links, raw


@pytest.fixture
def csv_scope(db):
    connection = ToolConnectionFactory(
        kind="csv", name="Spreadsheet tool", base_url="https://csv.example.test"
    )
    map_types(connection, TYPE_MAP, STATUS_MAP)
    return ScopeFactory(connection=connection, name="Uploads", query="spreadsheet")


# --- The parser (pure) ------------------------------------------------------------------------------


def test_rows_become_items_with_their_history_sorted_by_at():
    parsed = parse_csv(GOOD_AND_BAD)

    items = {item.key: item for item in parsed.items}
    assert sorted(items) == ["ABC-1", "ABC-2"]
    story = items["ABC-2"]
    assert (story.item_type, story.title, story.status) == ("Story", "Pay by card", "Done")
    assert story.created == at("2026-03-02T08:00:00+01:00")
    assert story.updated == at("2026-03-05T17:40:00+01:00")
    assert [(c.from_status, c.to_status, c.author) for c in story.changelog] == [
        ("", "To Do", "bob"),
        ("To Do", "In Progress", "ada"),
        ("In Review", "Done", "ada"),  # from_status given: the tool's record wins
    ]
    assert story.changelog[0].at == at("2026-03-02T10:00:00+01:00")
    assert story.fields == {"priority": "Low"}
    assert [(link.kind, link.target_key) for link in story.links] == [("child_of", "ABC-1")]
    epic = items["ABC-1"]
    assert epic.created == epic.updated == at("2026-03-01T09:00:00+01:00")  # no created: the first at
    assert (epic.url, epic.fields, epic.links) == (
        "https://tool.example.test/ABC-1",
        {"priority": "High"},
        [],
    )
    assert parsed.duplicates == 1  # line 13 repeats line 3
    assert parsed.lines == {"ABC-2": [2, 4, 5], "ABC-1": [3]}


def test_each_bad_row_is_reported_with_its_line_and_reason_and_its_item_is_left_out():
    parsed = parse_csv(GOOD_AND_BAD)

    errors = [(error.line, error.key, error.message) for error in parsed.errors]
    assert errors == [
        (6, "ABC-3", f"{ZONE_HINT} (got “2026-03-01T09:00:00”); item “ABC-3” {NOT_IMPORTED}"),
        (8, "", "key is required"),
        (
            9,
            "ABC-4",
            "at 2026-03-01T09:00:00Z is before the item's created 2026-03-02T09:00:00+00:00; "
            f"item “ABC-4” {NOT_IMPORTED}",
        ),
        (
            10,
            "ABC-5",
            f"at is required (ISO 8601 with an offset, e.g. 2026-03-01T10:30:00+01:00); "
            f"item “ABC-5” {NOT_IMPORTED}",
        ),
        (11, "ABC-5", f"type is required; item “ABC-5” {NOT_IMPORTED}"),
        (12, "ABC-6", f"{ZONE_HINT} (got “yesterday”); item “ABC-6” {NOT_IMPORTED}"),
        (
            14,
            "ABC-7",
            "url must be an http:// or https:// address (got “javascript:alert(1)”); "
            f"item “ABC-7” {NOT_IMPORTED}",
        ),
    ]
    # ABC-3's good row (line 7) is not imported either: no item lands with a partial history.
    assert "ABC-3" not in {item.key for item in parsed.items}


def test_semicolons_a_bom_any_header_case_and_multi_line_values_keep_physical_line_numbers():
    text = (
        "\ufeffKEY;Type;Title;STATUS;At;Field:Team\r\n"
        'ABC-1;Story;"Two\r\nlines";To Do;2026-03-01T09:00:00Z;Payments\r\n'
        "\r\n"
        "ABC-1;Story;;In Progress;2026-03-02T09:00:00Z;\r\n"
        "ABC-2;Story;x;To Do;1 March;\r\n"
    )

    parsed = parse_csv(text.encode())

    (item,) = parsed.items
    assert (item.title, item.status, item.fields) == ("Two\r\nlines", "In Progress", {"Team": "Payments"})
    assert parsed.lines == {"ABC-1": [2, 5]}
    assert [(error.line, error.key) for error in parsed.errors] == [(6, "ABC-2")]


def test_an_excel_sep_line_names_the_delimiter_and_moves_the_header_to_line_two():
    parsed = parse_csv("sep=;\nkey;type;at;status\nA-1;Story;2026-03-01T09:00:00Z;To Do\nA-2;Story;x;To Do\n")

    assert [item.key for item in parsed.items] == ["A-1"]
    assert [error.line for error in parsed.errors] == [4]


def test_rows_that_change_no_status_update_the_item_but_record_no_transition():
    parsed = parse_csv(
        "key,type,title,status,at,from_status\n"
        "A-1,Story,Old title,To Do,2026-03-01T09:00:00Z,\n"
        "A-1,Story,New title,,2026-03-02T09:00:00Z,\n"
        "A-1,Story,,To Do,2026-03-03T09:00:00Z,\n"
        "A-2,Story,,,2026-03-03T09:00:00Z,To Do\n"
    )

    (item,) = parsed.items
    assert (item.title, item.status, item.updated) == ("New title", "To Do", at("2026-03-03T09:00:00Z"))
    assert [(c.from_status, c.to_status) for c in item.changelog] == [("", "To Do")]
    assert [error.message for error in parsed.errors] == [
        f"from_status needs a status (the status the change moved to); item “A-2” {NOT_IMPORTED}"
    ]


def test_an_item_whose_rows_disagree_on_created_is_left_out():
    parsed = parse_csv(
        "key,type,status,at,created\n"
        "A-1,Story,To Do,2026-03-02T09:00:00Z,2026-03-01T09:00:00Z\n"
        "A-1,Story,Done,2026-03-03T09:00:00Z,2026-03-01T10:00:00+01:00\n"  # the same instant: fine
        "A-2,Story,To Do,2026-03-02T09:00:00Z,2026-03-01T09:00:00Z\n"
        "A-2,Story,Done,2026-03-03T09:00:00Z,2026-03-01T11:00:00Z\n"
    )

    assert [item.key for item in parsed.items] == ["A-1"]
    assert [(e.line, e.message) for e in parsed.errors] == [
        (
            5,
            "created 2026-03-01T11:00:00Z differs from 2026-03-01T09:00:00Z on line 4; "
            f"item “A-2” {NOT_IMPORTED}",
        )
    ]


@pytest.mark.parametrize(
    ("header", "messages"),
    [
        (
            "key,type,at,titel",
            [
                "unknown column “titel”: the columns are key, type, at, status, from_status, title, created, "
                "url, parent, author and field:<name>"
            ],
        ),
        ("key,type,at,Key", ["column “Key” appears twice (columns 1 and 4)"]),
        ("key,type,status", ["the header has no “at” column (required: key, type, at)"]),
    ],
)
def test_a_header_problem_refuses_the_whole_file_at_line_one(header, messages):
    parsed = parse_csv(f"{header}\nA-1,Story,2026-03-01T09:00:00Z,x\n")

    assert parsed.refused and parsed.items == []
    assert [(error.line, error.message) for error in parsed.errors] == [(1, m) for m in messages]


@pytest.mark.parametrize(
    ("data", "line", "message"),
    [
        (b"", 1, "the file is empty"),
        (b"key,type,at\nA,B,\xe9t\xe9\n", 2, "the file is not UTF-8 text (byte 0xe9 on line 2)"),
        ("key,type,at\n".encode("utf-16"), 1, "the file is UTF-16 text"),
        (b"key,type,at\nA,B,C\x00\n", 2, "the file holds a NUL character"),
        (b'key,type,at\nA,"B,2026-03-01T09:00:00Z\nC,D,E\n', 2, "the CSV cannot be read from this line on"),
        (bytes(range(256)) * 40, 2, "the file is not UTF-8 text (byte 0x80 on line 2)"),
    ],
)
def test_a_file_that_is_not_csv_text_is_refused_with_where_and_why(data, line, message):
    parsed = parse_csv(data)

    assert parsed.refused and parsed.items == []
    (error,) = parsed.errors
    assert error.line == line and error.message.startswith(message)


def test_more_values_than_columns_and_values_under_an_unnamed_column_are_row_errors():
    parsed = parse_csv(
        "key,type,at,\nA-1,Story,2026-03-01T09:00:00Z,,\nA-2,Story,2026-03-01T09:00:00Z,x\nA-3,Story,2026-03-01T09:00:00Z,,y\n"
    )

    assert [item.key for item in parsed.items] == ["A-1"]
    assert [error.message.split(";")[0] for error in parsed.errors] == [
        "value “x” in column 4, which the header does not name",
        "the row has 5 values but the header names 4 columns",
    ]


# --- The import, through the real ingest ------------------------------------------------------------


def test_an_import_stores_the_good_items_and_reports_and_records_each_bad_row(csv_scope):
    report = csv_import(csv_scope, upload(GOOD_AND_BAD))

    assert (report.imported, report.created, report.failed) == (2, 2, 7)
    assert [(error.line, error.key) for error in report.errors] == [
        (6, "ABC-3"),
        (8, ""),
        (9, "ABC-4"),
        (10, "ABC-5"),
        (11, "ABC-5"),
        (12, "ABC-6"),
        (14, "ABC-7"),
    ]
    assert sorted(Artifact.objects.values_list("key", flat=True)) == ["ABC-1", "ABC-2"]
    run = SyncRun.objects.get(pk=report.run_id)
    assert (run.trigger, run.outcome, run.read, run.created, run.failed) == ("manual", "partial", 2, 2, 7)
    assert "CSV import of “items.csv”: 13 rows" in run.message
    errors = SyncError.objects.filter(scope=csv_scope).order_by("id")
    assert errors.count() == 7
    first = errors.first()
    assert (first.stage, first.item_key, first.run_id) == ("read", "ABC-3", run.pk)
    assert first.fingerprint.startswith("csv-line:6:")
    assert first.message.startswith(f"line 6: {ZONE_HINT}")
    assert first.payload["cells"]["at"] == "2026-03-01T09:00:00"
    assert errors.filter(item_key="").get().message == "line 8: key is required"


def test_transitions_and_flow_states_follow_the_status_mappings(csv_scope):
    csv_import(csv_scope, upload(GOOD_AND_BAD))

    story = Artifact.objects.get(key="ABC-2")
    assert (story.tool_status, story.flow_state) == ("Done", FlowState.DONE)
    assert story.artifact_model.slug == "story" and story.flow_item_type.slug == "feature"
    assert list(story.transitions.values_list("from_status", "to_status", "from_state", "to_state")) == [
        ("", "To Do", "", FlowState.NEW),
        ("To Do", "In Progress", FlowState.NEW, FlowState.ACTIVE),
        ("In Review", "Done", FlowState.WAITING, FlowState.DONE),
    ]
    assert story.created_at == at("2026-03-02T08:00:00+01:00")
    assert story.first_started_at == at("2026-03-03T09:15:00+01:00")
    assert story.done_at == story.updated_at == at("2026-03-05T17:40:00+01:00")
    assert story.url == "" and story.title == "Pay by card"
    epic = Artifact.objects.get(key="ABC-1")
    assert (epic.flow_state, epic.external_id, epic.url) == (
        FlowState.NEW,
        "ABC-1",
        "https://tool.example.test/ABC-1",
    )


def test_re_importing_the_same_file_changes_nothing(csv_scope):
    csv_import(csv_scope, upload(GOOD_AND_BAD))
    before = snapshot(csv_scope.connection)
    errors_before = list(SyncError.objects.order_by("pk").values_list("pk", "fingerprint", "message"))

    again = csv_import(csv_scope, upload(GOOD_AND_BAD))

    assert snapshot(csv_scope.connection) == before
    run = SyncRun.objects.get(pk=again.run_id)
    assert (run.read, run.created, run.updated, run.unchanged) == (2, 0, 0, 2)
    assert (again.imported, again.created, again.failed) == (2, 0, 7)
    # The same bad rows update their open errors rather than adding new ones.
    assert list(SyncError.objects.order_by("pk").values_list("pk", "fingerprint", "message")) == errors_before
    assert set(SyncError.objects.values_list("attempts", flat=True)) == {2}


def test_an_item_imported_again_with_a_changed_history_gets_exactly_the_new_history(csv_scope):
    header = "key,type,status,at\n"
    csv_import(
        csv_scope,
        upload(header + "A-1,Story,To Do,2026-03-01T09:00:00Z\nA-1,Story,Done,2026-03-02T09:00:00Z\n"),
    )
    csv_import(
        csv_scope,
        upload(header + "A-1,Story,To Do,2026-03-01T09:00:00Z\nA-1,Story,In Progress,2026-03-03T09:00:00Z\n"),
    )

    artifact = Artifact.objects.get(key="A-1")
    assert (artifact.tool_status, artifact.flow_state, artifact.done_at) == (
        "In Progress",
        FlowState.ACTIVE,
        None,
    )
    assert list(artifact.transitions.values_list("to_status", flat=True)) == ["To Do", "In Progress"]


def test_parents_are_linked_in_the_file_and_across_pages_and_files(csv_scope, monkeypatch):
    monkeypatch.setattr(csv_module, "PAGE_SIZE", 1)  # the child's page is stored before its parent's
    header = "key,type,status,at,parent\n"
    csv_import(
        csv_scope,
        upload(
            header + "S-1,Story,To Do,2026-03-02T09:00:00Z,E-1\n"
            "E-1,Epic,To Do,2026-03-01T09:00:00Z,\n"
            "S-2,Story,To Do,2026-03-02T09:00:00Z,E-2\n"
        ),
    )
    assert list(ArtifactLink.objects.values_list("source__key", "target__key", "kind", "origin")) == [
        ("S-1", "E-1", LinkKind.CHILD_OF, "tool")
    ]
    assert list(PendingLink.objects.values_list("source__key", "target_key")) == [("S-2", "E-2")]

    csv_import(csv_scope, upload(header + "E-2,Epic,To Do,2026-03-01T09:00:00Z,\n"))

    assert sorted(ArtifactLink.objects.values_list("source__key", "target__key")) == [
        ("S-1", "E-1"),
        ("S-2", "E-2"),
    ]
    assert not PendingLink.objects.exists()


def test_fields_are_read_by_field_mappings_and_mapping_problems_name_the_item_lines(csv_scope):
    story_mapping = TypeMapping.objects.get(connection=csv_scope.connection, tool_type="Story")
    FieldMapping.objects.create(
        type_mapping=story_mapping, tool_path="points", model_field="story_points", transform="number"
    )
    report = csv_import(
        csv_scope,
        upload(
            "key,type,status,at,field:points\n"
            "A-1,Story,To Do,2026-03-01T09:00:00Z,5\n"
            "A-2,Task,To Do,2026-03-01T09:00:00Z,\n"
            "A-3,Story,Blocked,2026-03-01T09:00:00Z,\n"
            "A-2,Task,Done,2026-03-02T09:00:00Z,\n"
        ),
    )

    assert Artifact.objects.get(key="A-1").fields == {"story_points": 5}
    assert Artifact.objects.get(key="A-3").flow_state == FlowState.UNKNOWN
    assert [(e.line, e.key, e.message) for e in report.errors] == [
        (
            3,
            "A-2",
            f"no type mapping for type “Task” in Spreadsheet tool; item “A-2” (lines 3, 5) {NOT_IMPORTED}",
        )
    ]
    (warning,) = report.warnings
    assert warning.startswith("unmapped status “Blocked” in ") and "add a status mapping" in warning
    assert (report.imported, report.failed) == (2, 1)
    assert SyncRun.objects.get(pk=report.run_id).failed == 1


class FileOfSize:
    """An upload that only claims its size: the limit is checked before anything is read."""

    name = "huge.csv"

    def __init__(self, size: int):
        self.size = size

    def read(self, *args):
        raise AssertionError("an oversized file is not read")


def test_a_file_over_20_mb_is_refused_before_reading_it(csv_scope):
    with pytest.raises(CsvImportError, match=r"“huge.csv” is 20.0 MB; the limit is 20 MB: split it"):
        csv_import(csv_scope, FileOfSize(20 * 1024 * 1024 + 1))
    assert not SyncRun.objects.exists()


def test_only_scopes_of_csv_connections_take_imports(db):
    scope = ScopeFactory(connection=ToolConnectionFactory(kind="jira"))

    with pytest.raises(CsvImportError, match="only scopes of CSV connections take file imports"):
        csv_import(scope, upload(GOOD_AND_BAD))


def test_a_file_that_is_not_csv_is_a_failed_run_with_its_reason(csv_scope):
    report = csv_import(csv_scope, upload(bytes(range(256)) * 40, "photo.jpg"))

    assert (report.imported, report.failed) == (0, 1)
    run = SyncRun.objects.get(pk=report.run_id)
    assert run.outcome == "failed" and "line 2: the file is not UTF-8 text" in run.message
    assert SyncError.objects.get().message.startswith("line 2: the file is not UTF-8 text")


def test_a_scope_busy_with_a_sync_refuses_the_import(csv_scope):
    csv_scope.__class__.objects.filter(pk=csv_scope.pk).update(
        lease_token="other", lease_expires_at=datetime.now(UTC) + timedelta(minutes=5)
    )

    with pytest.raises(CsvImportError, match="another sync or import"):
        csv_import(csv_scope, upload(GOOD_AND_BAD))


# --- The connector --------------------------------------------------------------------------------


def test_the_csv_connector_reads_nothing_by_itself(csv_scope):
    assert connector_for("csv") is CsvConnector
    assert CsvConnector.slug == csv_module.CSV_KIND
    assert CsvConnector.features == frozenset({Feature.READ})
    assert CsvConnector.credential_fields == ()
    assert "fed by uploads" in CsvConnector.query_help and "not by polling" in CsvConnector.query_help
    connector = CsvConnector(
        Installation(connection_id=1, base_url="https://csv.example.test", credentials={})
    )
    assert list(connector.read_changes(ScopeSpec(query="x"), None)) == []
    with pytest.raises(ConnectorError, match="fed by uploads"):
        list(connector.list_ids(ScopeSpec(query="x")))


def test_a_scheduled_sync_or_full_scan_of_a_csv_scope_leaves_imported_items_alone(csv_scope):
    csv_import(csv_scope, upload(GOOD_AND_BAD))
    before = snapshot(csv_scope.connection)

    assert scope_sync(csv_scope.pk).outcome == "success"
    scan = scope_sync(csv_scope.pk, full_scan=True)

    assert scan.outcome == "failed"
    assert not Artifact.objects.filter(deleted_at__isnull=False).exists()
    assert snapshot(csv_scope.connection) == before


# --- The admin page -------------------------------------------------------------------------------


@pytest.fixture
def staff_client(client, db):
    client.force_login(StaffFactory())
    return client


def import_url(scope) -> str:
    return reverse("admin:connectors_scope_import_csv", args=[scope.pk])


def change_url(scope) -> str:
    return reverse("admin:connectors_scope_change", args=[scope.pk])


def test_the_scope_page_links_to_the_import_for_csv_connections_only(staff_client, csv_scope):
    jira_scope = ScopeFactory(connection=ToolConnectionFactory(kind="jira"))

    assert import_url(csv_scope) in staff_client.get(change_url(csv_scope)).content.decode()
    assert import_url(jira_scope) not in staff_client.get(change_url(jira_scope)).content.decode()


def test_the_import_page_shows_the_form_and_the_column_format(staff_client, csv_scope):
    response = staff_client.get(import_url(csv_scope))

    assert response.status_code == 200
    page = response.content.decode()
    assert 'enctype="multipart/form-data"' in page and 'type="file"' in page
    assert "field:&lt;name&gt;" in page and "ABC-2,Story,Pay by card,Done" in page
    assert response.context["report"] is None


def test_posting_a_file_imports_it_and_shows_the_report(staff_client, csv_scope):
    response = staff_client.post(import_url(csv_scope), {"file": upload(GOOD_AND_BAD)})

    assert response.status_code == 200
    report = response.context["report"]
    assert (report.imported, report.failed) == (2, 7)
    page = response.content.decode()
    assert "2 items imported" in page and "7 failed" in page
    assert "<td>14</td>" in page and "url must be an http:// or https:// address" in page
    assert "ABC-4" in page and "is before the item&#x27;s created" in page
    assert reverse("admin:connectors_syncrun_change", args=[report.run_id]) in page
    assert sorted(Artifact.objects.values_list("key", flat=True)) == ["ABC-1", "ABC-2"]


def test_a_scope_of_another_kind_is_sent_back_with_a_message(staff_client):
    scope = ScopeFactory(connection=ToolConnectionFactory(kind="jira", name="Team Jira"))

    response = staff_client.post(import_url(scope), {"file": upload(GOOD_AND_BAD)}, follow=True)

    assert response.redirect_chain == [(change_url(scope), 302)]
    assert [str(m) for m in response.context["messages"]] == [
        f"“{scope}” reads from Team Jira, a jira connection: "
        "only scopes of CSV connections take file imports."
    ]
    assert not Artifact.objects.exists()


def test_an_oversized_file_is_refused_with_a_message(staff_client, csv_scope, monkeypatch):
    monkeypatch.setattr(csv_module, "MAX_BYTES", 1024 * 1024)

    response = staff_client.post(import_url(csv_scope), {"file": upload(b"x" * (1024 * 1024 + 1), "big.csv")})

    assert response.status_code == 200
    assert response.context["form"].errors["file"] == [
        "“big.csv” is 1.0 MB; the limit is 1 MB: "
        "split it into several files, each with all the rows of its items"
    ]
    assert response.context["report"] is None and not SyncRun.objects.exists()


@pytest.mark.parametrize(
    "data",
    [bytes(range(256)) * 40, b"\x89PNG\r\n\x1a\n" + bytes(500), "key,type,at\n".encode("utf-16")],
)
def test_garbage_is_reported_never_a_500(staff_client, csv_scope, data):
    response = staff_client.post(import_url(csv_scope), {"file": upload(data, "garbage.bin")})

    assert response.status_code == 200
    (error,) = response.context["report"].errors
    assert "UTF" in error.message and error.message in response.content.decode().replace("&#x27;", "'")


def test_posting_without_a_file_asks_for_one(staff_client, csv_scope):
    response = staff_client.post(import_url(csv_scope), {})

    assert response.status_code == 200
    assert response.context["form"].errors["file"] == ["This field is required."]
