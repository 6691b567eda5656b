"""CSV: a tool without an API. Its items arrive as files uploaded in admin, not by polling.

A scope of a CSV connection is fed by "Import CSV" on its admin page (connectors.csv_import), which
runs the rows through the same ingest as every other tool. The connector itself reads nothing: a
scheduled sync stores nothing, and it refuses what would need the tool (a full scan that lists items,
reading one item again), so a scan can never mark uploaded items as deleted.
"""

from collections.abc import Iterator
from datetime import datetime

from connectors.base import Connector, Feature, Page, ScopeSpec, ToolItem, register_connector
from connectors.exceptions import ConnectorError

FED_BY_UPLOADS = "a CSV connection is fed by uploads (“Import CSV” on the scope's page), not by polling"


@register_connector
class CsvConnector(Connector):
    slug = "csv"
    name = "CSV"
    credential_fields = ()
    artifact_types = ()  # any: the file's `type` column, matched by the type mappings
    features = frozenset({Feature.READ})
    query_help = (
        f"Not a query: {FED_BY_UPLOADS}. Name what the files hold, e.g. the tool or team they come from."
    )

    def check_connection(self) -> str:
        return f"file uploads ({FED_BY_UPLOADS})"

    def read_changes(self, scope: ScopeSpec, since: datetime | None) -> Iterator[Page]:
        yield from ()

    def read_item(self, key: str, scope: ScopeSpec) -> ToolItem:
        raise ConnectorError(
            f"{key} cannot be read again: {FED_BY_UPLOADS}; fix its rows and import the file"
        )

    def list_ids(self, scope: ScopeSpec) -> Iterator[str]:
        raise ConnectorError(
            f"a full scan has nothing to compare with: {FED_BY_UPLOADS}, so no item is marked deleted"
        )
