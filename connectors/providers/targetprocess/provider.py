"""Targetprocess (REST v1): incremental reads of features, stories, requests and bugs, and writes.

Reading
    Each entity type is read with ``GET /api/v1/{Type}s?where=(ModifyDate gte '<since>')&orderBy=ModifyDate``
    following the ``Next`` link each page carries, and the types' streams are merged by ModifyDate, so
    pages come oldest change first across types (the engine's cursor is the newest ``updated`` of a page:
    reading the types one after another would move it past changes of a type not read yet).
    The ``since`` literal is written in the server's time zone (option ``time_zone``; without it, the
    offset the server puts on the logged-in user's dates, less an hour for a daylight-saving change) and
    floored to the second, with ``gte``: Targetprocess keeps milliseconds, so nothing at the boundary is
    skipped and the engine's overlap and digests take care of what is read twice.
    History: per page and type, ``GET /api/v1/{Type}SimpleHistories?where=({Type}.Id in (...))`` (the
    "simple history": one record per change of state, effort, release or iteration); the changelog is
    the EntityState changes between consecutive records at the later record's ``Date``.
    Relations: per page, ``GET /api/v1/Relations`` where the master or the slave is on the page, with the
    ends' entity types; a relation with a request is ``derived_from`` the request, others ``relates_to``.
    Parents (a story's Feature, a feature's Epic, a bug's UserStory or Feature) are ``child_of`` links.

Auth
    A personal access token, sent as the ``access_token`` query parameter on every request (the ``Next``
    links included), or Basic ``login:password``. The token never reaches messages: the shared client
    names only method and path, and this provider scrubs the token from any error text a tool echoes.

Writing
    create ``POST /api/v1/{Type}s`` {Name, Project: {Id}, ...} -> 201; update ``POST /api/v1/{Type}s/{id}``
    with the changed fields; status: the EntityState of that name for the entity type and its project's
    process, posted as ``{"EntityState": {"Id": n}}``; native links: ``POST /api/v1/Relations``.
"""

import contextlib
import heapq
import itertools
from collections.abc import Iterator, Mapping
from datetime import datetime, timedelta, timezone, tzinfo
from typing import Any, ClassVar
from urllib.parse import quote, quote_plus
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import httpx

from connectors.base import (
    Connector,
    CredentialField,
    Feature,
    ItemFailure,
    ItemRef,
    OptionField,
    Page,
    ScopeSpec,
    ToolItem,
    ToolLink,
    is_number_text,
    nest_paths,
    register_connector,
)
from connectors.client import HttpClient
from connectors.exceptions import AuthError, BadPayload, BadRequest, ConnectorError
from connectors.providers.targetprocess.items import (
    DEFAULT_TYPES,
    RESOURCES,
    entity_to_item,
    id_from_key,
    parse_tp_date,
    scope_project_ids,
    tp_key,
    user_name,
)

API = "api/v1"
MAX_TAKE = 1000  # Targetprocess clamps larger pages to this
IDS_PER_QUERY = 200  # ids in one `in (...)` list, to keep URLs short
DST_MARGIN = timedelta(hours=1)
RELATION_INCLUDE = "[Id,Master[Id,Name,EntityType],Slave[Id,Name,EntityType],RelationType]"
RELATION_TYPES = {"relates_to": "Relation", "derived_from": "Relation"}
_NO_KEY = -(2**63)


CUSTOM_VALUES_PREFIX = "CustomFieldValues."


@register_connector
class TargetprocessConnector(Connector):
    slug = "targetprocess"
    name = "Targetprocess"
    credential_fields: ClassVar = (
        CredentialField(
            "access_token",
            "Access token",
            required=False,
            help_text="A personal access token; or give a login and password instead.",
        ),
        CredentialField("login", "Login (Basic auth)", secret=False, required=False),
        CredentialField("password", "Password (Basic auth)", required=False),
    )
    option_fields: ClassVar = (
        OptionField(
            "time_zone",
            "Server time zone",
            help_text=(
                "The Targetprocess server's time zone (an IANA name such as Europe/Berlin), in which "
                "date filters are read. Empty: learnt from the server's dates, with an hour of margin."
            ),
        ),
        OptionField(
            "entity_types",
            "Entity types",
            default=",".join(DEFAULT_TYPES),
            help_text=f"Comma-separated, from {', '.join(RESOURCES)}.",
        ),
    )
    artifact_types = tuple(RESOURCES)
    features = frozenset({Feature.READ, Feature.WRITE, Feature.LINKS})
    query_help = "Targetprocess project ids separated by commas (12, 15), or * for every project."
    rich_text_format = "html"

    def __init__(self, installation):
        super().__init__(installation)
        self.entity_types = self._entity_types(installation.options.get("entity_types", ""))
        self._zone: tzinfo | None = None
        self._zone_margin = timedelta(0)
        auth, secrets = self._auth()
        self.http = ScrubbingHttpClient(
            installation.base_url.rstrip("/") + "/",
            auth=auth,
            secrets=secrets,
            **installation.http_options(),
        )

    def _auth(self) -> tuple[httpx.Auth, list[str]]:
        credentials = self.installation.credentials
        token = credentials.get("access_token")
        if token:
            return AccessTokenAuth(token), [token]
        if credentials.get("login") and credentials.get("password"):
            return httpx.BasicAuth(credentials["login"], credentials["password"]), [credentials["password"]]
        raise AuthError("Targetprocess needs an access token, or a login and password")

    @staticmethod
    def _entity_types(option: str) -> tuple[str, ...]:
        names = tuple(name.strip() for name in option.split(",") if name.strip()) or DEFAULT_TYPES
        unknown = [name for name in names if name not in RESOURCES]
        if unknown:
            raise BadRequest(
                f"unknown Targetprocess entity type(s) {', '.join(unknown)}; use {', '.join(RESOURCES)}"
            )
        return names

    def close(self) -> None:
        self.http.close()

    # Reading

    def check_connection(self) -> str:
        return user_name(self._get(f"{API}/Users/LoggedUser")) or "an unnamed user"

    def server_time_zone(self) -> tuple[tzinfo, timedelta]:
        """The zone `where` date literals are read in, and the margin to take off for its uncertainty."""
        if self._zone is None:
            name = (self.installation.options.get("time_zone") or "").strip()
            if name:
                try:
                    self._zone = ZoneInfo(name)
                except (ZoneInfoNotFoundError, ValueError):
                    raise BadRequest(f"unknown time zone {name!r} in the Targetprocess options") from None
            else:
                # The offset the server writes on its dates; DST may differ by an hour at another date.
                user = self._get(f"{API}/Users/LoggedUser")
                stamp = user.get("ModifyDate") or user.get("CreateDate")
                try:
                    offset = parse_tp_date(stamp).utcoffset() or timedelta(0)
                except ValueError:
                    raise BadPayload(
                        "Targetprocess sent no readable date to learn its time zone from"
                    ) from None
                self._zone, self._zone_margin = timezone(offset), DST_MARGIN
        return self._zone, self._zone_margin

    def since_literal(self, since: datetime) -> str:
        """`since` in the server's zone, floored to the second (use with `gte`)."""
        zone, margin = self.server_time_zone()
        local = (since - margin).astimezone(zone)
        return f"{local:%Y-%m-%d %H:%M:%S}"

    def where(self, scope: ScopeSpec, since: datetime | None) -> str:
        try:
            projects = scope_project_ids(scope.query)
        except ValueError as error:
            raise BadRequest(str(error)) from None
        clauses = []
        if projects:
            clauses.append(f"(Project.Id in ({','.join(map(str, projects))}))")
        if since is not None:
            clauses.append(f"(ModifyDate gte '{self.since_literal(since)}')")
        return " and ".join(clauses)

    def read_changes(self, scope: ScopeSpec, since: datetime | None) -> Iterator[Page]:
        where = self.where(scope, since)
        take = max(1, min(scope.page_size, MAX_TAKE))
        streams = [self._changes_of(index, name, where, take) for index, name in enumerate(self.entity_types)]
        merged = heapq.merge(*streams)
        while batch := list(itertools.islice(merged, take)):
            yield self._page([(entry[3], entry[4]) for entry in batch])

    def _changes_of(self, index: int, entity_type: str, where: str, take: int) -> Iterator[tuple]:
        """(ModifyDate ms, type index, position, type, entity) in the server's order."""
        params = {"format": "json", "orderBy": "ModifyDate", "take": take}
        if where:
            params["where"] = where
        last_key = _NO_KEY
        position = itertools.count()
        for entities in self._paginate(f"{API}/{RESOURCES[entity_type]}", params):
            for entity in entities:
                # An unreadable item keeps the key before it, so the stream stays ordered; it fails in _page.
                with contextlib.suppress(KeyError, TypeError, ValueError):
                    last_key = int(parse_tp_date(entity["ModifyDate"]).timestamp() * 1000)
                yield last_key, index, next(position), entity_type, entity

    def read_item(self, key: str, scope: ScopeSpec) -> ToolItem:
        entity_id, entity_type = self._locate(key)
        resource = f"{API}/{RESOURCES[entity_type]}/{entity_id}"
        entity = self._get(resource)
        histories = [
            record for page in self._paginate(f"{resource}/History", {"take": MAX_TAKE}) for record in page
        ]
        try:
            return entity_to_item(
                entity, entity_type, self.installation.base_url, histories, self._relations([entity_id])
            )
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            raise BadPayload(f"cannot read {tp_key(entity_id)}: {error!r:.200}") from None

    def list_ids(self, scope: ScopeSpec) -> Iterator[str]:
        where = self.where(scope, None)
        for entity_type in self.entity_types:
            params = {"include": "[Id]", "take": MAX_TAKE, **({"where": where} if where else {})}
            for entities in self._paginate(f"{API}/{RESOURCES[entity_type]}", params):
                for entity in entities:
                    yield str(entity["Id"])

    def _page(self, entries: list[tuple[str, Any]]) -> Page:
        ids_by_type: dict[str, list[int]] = {}
        for entity_type, entity in entries:
            entity_id = _entity_id(entity)
            if entity_id is not None:
                ids_by_type.setdefault(entity_type, []).append(entity_id)
        histories = {
            (entity_type, entity_id): records
            for entity_type, ids in ids_by_type.items()
            for entity_id, records in self._histories(entity_type, ids).items()
        }
        relations = self._relations([entity_id for ids in ids_by_type.values() for entity_id in ids])
        page = Page(items=[])
        for entity_type, entity in entries:
            entity_id = _entity_id(entity)
            try:
                touching = [
                    relation
                    for relation in relations
                    if entity_id in (_entity_id(relation.get("Master")), _entity_id(relation.get("Slave")))
                ]
                page.items.append(
                    entity_to_item(
                        entity,
                        entity_type,
                        self.installation.base_url,
                        histories.get((entity_type, entity_id), []),
                        touching,
                    )
                )
            except (KeyError, TypeError, ValueError, AttributeError) as error:
                key = tp_key(entity_id) if entity_id is not None else ""
                page.failures.append(
                    ItemFailure(
                        str(entity_id or ""),
                        key,
                        f"cannot read {entity_type} {key or '(no id)'}: {error!r:.200}",
                        entity,
                    )
                )
        return page

    def _histories(self, entity_type: str, ids: list[int]) -> dict[int, list[dict]]:
        """Simple-history records of these entities, by entity id (records naming no entity are dropped)."""
        found: dict[int, list[dict]] = {}
        for chunk in _chunks(sorted(set(ids)), IDS_PER_QUERY):
            params = {
                "where": f"({entity_type}.Id in ({','.join(map(str, chunk))}))",
                "orderBy": "Date",
                "take": MAX_TAKE,
            }
            for records in self._paginate(f"{API}/{entity_type}SimpleHistories", params):
                for record in records:
                    owner = _entity_id(record.get(entity_type)) if isinstance(record, dict) else None
                    if owner is not None:
                        found.setdefault(owner, []).append(record)
        return found

    def _relations(self, ids: list[int]) -> list[dict]:
        """Relations whose master or slave is one of `ids`, each once."""
        found: dict[Any, dict] = {}
        for end in ("Master", "Slave"):
            for chunk in _chunks(sorted(set(ids)), IDS_PER_QUERY):
                params = {
                    "where": f"({end}.Id in ({','.join(map(str, chunk))}))",
                    "include": RELATION_INCLUDE,
                    "take": MAX_TAKE,
                }
                for relations in self._paginate(f"{API}/Relations", params):
                    for relation in relations:
                        if isinstance(relation, dict):
                            found.setdefault(relation.get("Id"), relation)
        return list(found.values())

    def _paginate(self, url: str, params: dict[str, Any]) -> Iterator[list[Any]]:
        """take/skip pages, following the `Next` link each page carries; no `Next` is the last page."""
        return self.http.paginate_next_url(
            url, params={"format": "json", **params}, items_field="Items", next_field="Next"
        )

    def _get(self, url: str, params: dict[str, Any] | None = None) -> Any:
        body = self.http.get_json(url, params={"format": "json", **(params or {})})
        if not isinstance(body, dict):
            raise BadPayload(f"GET /{url}: expected a JSON object")
        return body

    def _locate(self, key_or_ref: str | ItemRef) -> tuple[int, str]:
        """The entity's id and type (Targetprocess ids are global; the General resource names the type)."""
        text = key_or_ref.native_id or key_or_ref.key if isinstance(key_or_ref, ItemRef) else key_or_ref
        try:
            entity_id = id_from_key(text)
        except ValueError as error:
            raise BadRequest(str(error)) from None
        general = self._get(f"{API}/Generals/{entity_id}", {"include": "[Id,EntityType]"})
        entity_type = (general.get("EntityType") or {}).get("Name", "")
        if entity_type not in RESOURCES:
            raise BadRequest(
                f"{tp_key(entity_id)} is a {entity_type or 'thing'} this connector does not handle"
            )
        return entity_id, entity_type

    # Writing

    def title_path(self, item_type: str) -> str:
        return "Name"

    def write_fields(self, item_type: str, values: Mapping[str, Any]) -> dict[str, Any]:
        """Custom fields, read as ``CustomFieldValues.<name>``, are written as a CustomFields list."""
        custom = {
            path.removeprefix(CUSTOM_VALUES_PREFIX): value
            for path, value in values.items()
            if path.startswith(CUSTOM_VALUES_PREFIX)
        }
        fields = nest_paths(
            {path: value for path, value in values.items() if not path.startswith(CUSTOM_VALUES_PREFIX)}
        )
        if custom:
            fields["CustomFields"] = [{"Name": name, "Value": value} for name, value in custom.items()]
        return fields

    def person_value(self, path: str, account_id: str) -> tuple[str, Any]:
        return path.split(".")[0], {"Id": int(account_id) if is_number_text(account_id) else account_id}

    def create_item(
        self, scope: ScopeSpec, item_type: str, fields: dict[str, Any], *, marker: str = ""
    ) -> ToolItem:
        if item_type not in RESOURCES:
            raise BadRequest(
                f"Targetprocess cannot create a {item_type!r}; use one of {', '.join(RESOURCES)}"
            )
        payload = dict(fields)
        project = payload.pop("Project", None)
        if isinstance(project, dict):
            project = project.get("Id")
        if project is None:
            try:
                projects = scope_project_ids(scope.query)
            except ValueError as error:
                raise BadRequest(str(error)) from None
            if not projects:
                raise BadRequest("name the Project to create in: the scope covers every project")
            project = projects[0]
        created = self.http.request(
            "POST",
            f"{API}/{RESOURCES[item_type]}",
            params={"format": "json", "resultFormat": "json"},
            json={**payload, "Project": {"Id": int(project)}},
        ).json()
        return self.read_item(str(created["Id"]), scope)

    def update_item(self, ref: ItemRef, fields: dict[str, Any]) -> None:
        entity_id, entity_type = self._locate(ref)
        self.http.request(
            "POST",
            f"{API}/{RESOURCES[entity_type]}/{entity_id}",
            params={"format": "json", "resultFormat": "json"},
            json=fields,
        )

    def transition_item(self, ref: ItemRef, to_status: str) -> None:
        entity_id, entity_type = self._locate(ref)
        resource = f"{API}/{RESOURCES[entity_type]}/{entity_id}"
        entity = self._get(resource)
        current = (entity.get("EntityState") or {}).get("Name", "")
        if current.casefold() == to_status.casefold():
            return
        process_id = ((entity.get("Project") or {}).get("Process") or {}).get("Id")
        if process_id is None:  # older servers name no process on the project reference
            project = self._get(f"{API}/Projects/{entity['Project']['Id']}")
            process_id = (project.get("Process") or {}).get("Id")
        where = f"(EntityType.Name eq '{entity_type}')"
        if process_id is not None:
            where += f" and (Process.Id eq {int(process_id)})"
        states = [
            state
            for page in self._paginate(f"{API}/EntityStates", {"where": where, "take": MAX_TAKE})
            for state in page
        ]
        target = next((s for s in states if str(s.get("Name", "")).casefold() == to_status.casefold()), None)
        if target is None:
            reachable = ", ".join(sorted({s.get("Name", "?") for s in states} - {current})) or "none"
            raise BadRequest(
                f"{tp_key(entity_id)} cannot move to “{to_status}” from “{current}”; reachable: {reachable}"
            )
        self.http.request(
            "POST",
            resource,
            params={"format": "json", "resultFormat": "json"},
            json={"EntityState": {"Id": target["Id"]}},
        )

    def add_link(self, ref: ItemRef, link: ToolLink | None = None, *, url: str = "", title: str = "") -> None:
        if link is None:
            raise ConnectorError(
                "Targetprocess has no links to URLs; store the URL in a custom field instead"
            )
        entity_id, _ = self._locate(ref)
        try:
            target_id = id_from_key(link.target_key)
        except ValueError as error:
            raise BadRequest(str(error)) from None
        master, slave = (target_id, entity_id) if link.incoming else (entity_id, target_id)
        existing = [
            relation
            for page in self._paginate(
                f"{API}/Relations", {"where": f"(Master.Id eq {master}) and (Slave.Id eq {slave})"}
            )
            for relation in page
        ]
        if existing:
            return  # Targetprocess keeps one relation per pair; adding again would be refused
        self.http.request(
            "POST",
            f"{API}/Relations",
            params={"format": "json", "resultFormat": "json"},
            json={
                "Master": {"Id": master},
                "Slave": {"Id": slave},
                "RelationType": {"Name": RELATION_TYPES.get(link.kind, "Relation")},
            },
        )


class AccessTokenAuth(httpx.Auth):
    """Targetprocess's token auth: ``?access_token=...`` on every request, `Next` links included."""

    def __init__(self, token: str):
        self._token = token

    def auth_flow(self, request):
        request.url = request.url.copy_set_param("access_token", self._token)
        yield request


class ScrubbingHttpClient(HttpClient):
    """The shared client, also blanking credentials that travel in the query string from error text.

    The shared client scrubs only header credentials; a tool that echoes its request URL in an error
    body would otherwise put ``access_token`` into the message.
    """

    def __init__(self, base_url: str, *, secrets: list[str], **kwargs):
        super().__init__(base_url, **kwargs)
        variants = {
            form
            for secret in secrets
            if secret
            for form in (secret, quote(secret, safe=""), quote_plus(secret))
        }
        self._secrets = sorted(variants, key=len, reverse=True)

    def request(self, *args, **kwargs) -> httpx.Response:
        try:
            return super().request(*args, **kwargs)
        except ConnectorError as error:
            text = str(error)
            scrubbed = text
            for secret in self._secrets:
                scrubbed = scrubbed.replace(secret, "***")
            if scrubbed != text:
                error.args = (scrubbed,)
            raise


def _entity_id(value: Any) -> int | None:
    if isinstance(value, dict):
        try:
            return int(value["Id"])
        except (KeyError, TypeError, ValueError):
            return None
    return None


def _chunks(values: list[int], size: int) -> Iterator[list[int]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]
