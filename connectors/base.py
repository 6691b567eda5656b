"""The connector contract: what a provider declares, the plain records it yields, and how it writes.

Providers (connectors/providers/<tool>/) import only this module, connectors.client and
connectors.exceptions; they never touch the ORM. The engine hands a provider a `Installation` (the
connection's settings and decrypted credentials) and a `ScopeSpec` (what to read), and receives
`ToolItem`s in pages.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from itertools import pairwise
from typing import Any, ClassVar

import httpx

from connectors.client import RateLimiter, SharedRateLimiter
from connectors.exceptions import ConnectorError


class Feature(enum.StrEnum):
    READ = "read"
    WRITE = "write"
    WEBHOOKS = "webhooks"
    LINKS = "links"


# How far a tool's clock may be from ours, when the engine looks for what a call it made at a time of
# its own clock did in the tool.
CLOCK_SKEW = timedelta(minutes=10)


@dataclass(frozen=True)
class CredentialField:
    name: str
    label: str
    secret: bool = True
    required: bool = True
    help_text: str = ""


@dataclass(frozen=True)
class OptionField:
    """A non-secret setting of a connection (flavour, time zone...), shown and edited in admin."""

    name: str
    label: str
    choices: tuple[str, ...] = ()
    default: str = ""
    help_text: str = ""


@dataclass(frozen=True)
class Installation:
    """One configured tool instance, as a provider sees it (no ORM objects)."""

    connection_id: int
    base_url: str
    credentials: Mapping[str, str]
    options: Mapping[str, str] = field(default_factory=dict)
    transport: httpx.BaseTransport | None = None  # tests and the benchmark put an in-process fake here
    requests_per_second: float | None = None
    # With a Redis URL the rate limit is shared through Redis by every worker (the bucket's key names
    # the connection); without one it holds per process.
    rate_limiter_url: str = ""
    rate_limiter_key: str = ""

    def http_options(self) -> dict[str, Any]:
        """The HttpClient settings every provider takes from its installation."""
        options: dict[str, Any] = {"transport": self.transport, "rate_limiter": self.rate_limiter()}
        if self.sleep:
            options["sleep"] = self.sleep
        return options

    sleep: Callable[[float], None] | None = None  # tests make waiting instant

    def rate_limiter(self) -> RateLimiter | SharedRateLimiter | None:
        if not self.requests_per_second:
            return None
        if self.rate_limiter_url:
            key = self.rate_limiter_key or f"vsm:rate:{self.connection_id}"
            return SharedRateLimiter(self.rate_limiter_url, key, self.requests_per_second)
        return RateLimiter(self.requests_per_second)


@dataclass(frozen=True)
class ScopeSpec:
    """What to read: a query in the tool's own terms, and the fields the mappings need."""

    query: str
    fields: tuple[str, ...] = ()
    page_size: int = 100


@dataclass(frozen=True)
class StatusChange:
    """One status change from the tool's history, at its exact time (timezone-aware)."""

    at: datetime
    from_status: str
    to_status: str
    author: str = ""


@dataclass(frozen=True)
class ToolLink:
    """A link the tool itself records, to an item named by its key in the same tool.

    The link runs from this item to the other one; with `incoming`, from the other one to this item
    (a deployment names the build it deployed: that build is `deployed_in` this deployment). Outgoing
    links are this item's to keep in step with the tool; incoming ones are only ever added.
    """

    kind: str  # a vsm LinkKind value
    target_key: str
    description: str = ""
    incoming: bool = False


@dataclass
class ToolItem:
    native_id: str
    key: str
    item_type: str
    url: str
    title: str
    status: str
    created: datetime
    updated: datetime
    fields: dict[str, Any] = field(default_factory=dict)
    changelog: list[StatusChange] = field(default_factory=list)
    links: list[ToolLink] = field(default_factory=list)
    raw: dict[str, Any] = field(default_factory=dict)
    deleted: bool = False
    # When the tool's own history says each native field last changed, by its top-level name in
    # `fields` (the title under "title"); a field without an entry has not changed since `created`.
    # None for a tool that keeps no such history: integrations then go by when a read saw the change.
    field_times: dict[str, datetime] | None = None


@dataclass(frozen=True)
class ItemFailure:
    """An item the provider could not read; the engine records it and carries on with the page."""

    native_id: str
    key: str
    message: str
    raw: Any = None


@dataclass
class Page:
    items: list[ToolItem]
    failures: list[ItemFailure] = field(default_factory=list)


@dataclass(frozen=True)
class ItemRef:
    """Names an existing item in the tool for writes."""

    native_id: str
    key: str


@dataclass(frozen=True)
class WebhookEvent:
    """What a verified webhook delivery is about, as a provider reads it from the tool's payload.

    `delivery_id` is the tool's id of the delivery, stable across the tool's retries ("" when the tool
    sends none: the receiver then uses a hash of the body); `event` is the tool's event name;
    `item_keys` are the keys of the items to read again (as `read_item` takes them).
    """

    delivery_id: str
    event: str
    item_keys: tuple[str, ...] = ()


# The per-connection secret a tool signs its webhook deliveries with (or, for GitLab, sends as a token).
# Providers that receive webhooks list it among their credential fields, so it is stored encrypted with
# the other credentials and entered through the same write-only admin form.
WEBHOOK_CREDENTIAL = "webhook_secret"
WEBHOOK_SECRET_FIELD = CredentialField(
    WEBHOOK_CREDENTIAL,
    "Webhook secret",
    required=False,
    help_text="The secret set on the tool's webhook for this connection; deliveries to /hooks/<id>/ are "
    "refused until it is stored.",
)


def is_number_text(text: str) -> bool:
    """Whether text is a whole number in ASCII digits: str.isdigit() alone is true of "²" and "٣", which
    int() refuses or reads as another number than the tool meant."""
    return text.isascii() and text.isdigit()


def webhook_header(headers: Mapping[str, str], name: str) -> str:
    """A request header by name, ignoring case (Django's request.headers already does; a dict may not)."""
    value = headers.get(name)
    if value is None:
        folded = name.lower()
        value = next((v for k, v in headers.items() if k.lower() == folded), None)
    return str(value or "").strip()


class Connector:
    """Base of every provider. Subclasses declare the class attributes and implement what they support."""

    slug: ClassVar[str]
    name: ClassVar[str]
    credential_fields: ClassVar[tuple[CredentialField, ...]] = ()
    option_fields: ClassVar[tuple[OptionField, ...]] = ()
    artifact_types: ClassVar[tuple[str, ...]] = ()
    features: ClassVar[frozenset[Feature]] = frozenset()
    query_help: ClassVar[str] = ""
    # The form the tool keeps rich text in (a name of connectors.richtext.FORMATS): a field mapping with
    # the rich-text transform reads it into Markdown and the engine writes it back in this form.
    rich_text_format: ClassVar[str] = "markdown"

    def __init__(self, installation: Installation):
        self.installation = installation

    # Reading
    def check_connection(self) -> str:
        """Make one cheap authenticated call; return who we are connected as."""
        raise ConnectorError(f"{self.name} cannot test connections")

    def read_changes(self, scope: ScopeSpec, since: datetime | None) -> Iterator[Page]:
        """Pages of items changed at or after `since` (all items when None), oldest change first."""
        raise ConnectorError(f"{self.name} cannot read")

    def read_item(self, key: str, scope: ScopeSpec) -> ToolItem:
        raise ConnectorError(f"{self.name} cannot read single items")

    def list_ids(self, scope: ScopeSpec) -> Iterator[str]:
        """Every native id currently in the scope, for the full scan that detects deletions."""
        raise ConnectorError(f"{self.name} cannot list items")

    # Writing
    def create_item(
        self, scope: ScopeSpec, item_type: str, fields: dict[str, Any], *, marker: str = ""
    ) -> ToolItem:
        """Create an item in the scope's container. `marker`: a token the engine made for this creation,
        which a provider that can keeps on the item out of sight, for `find_created`."""
        raise ConnectorError(f"{self.name} cannot create items")

    def find_created(
        self, scope: ScopeSpec, item_type: str, *, marker: str, title: str, started: datetime
    ) -> list[ToolItem]:
        """The items an earlier `create_item(..., marker=marker)` that started at `started` (the engine's
        clock) may have made, when its answer was lost: the one with the marker where the tool keeps
        markers, else those of the type with the title created since then (the engine takes the first
        no other pair holds). It must see every item created before the call, whatever a search index
        says, or a retry makes a second item. This default reads the scope's changes since `started`
        less CLOCK_SKEW, right for tools whose lists come from their database; providers whose lists
        come from an eventually consistent search override it."""
        since = started - CLOCK_SKEW
        return [
            item
            for page in self.read_changes(scope, since)
            for item in page.items
            if item.item_type == item_type and item.title == title and item.created >= since
        ]

    def update_item(self, ref: ItemRef, fields: dict[str, Any]) -> None:
        raise ConnectorError(f"{self.name} cannot update items")

    def transition_item(self, ref: ItemRef, to_status: str) -> None:
        raise ConnectorError(f"{self.name} cannot change status")

    def add_link(self, ref: ItemRef, link: ToolLink | None = None, *, url: str = "", title: str = "") -> None:
        """A native link to another item (`link`), or a link to a URL (a remote link)."""
        raise ConnectorError(f"{self.name} cannot add links")

    def close(self) -> None:
        """Release the provider's HTTP connections."""

    # How the integration engine (connectors/sync.py) turns model values into native fields. Paths are
    # the ones field mappings read in `ToolItem.fields`; providers whose writes take another shape
    # override these.
    def title_path(self, item_type: str) -> str:
        """The native field that holds an item's title."""
        return "title"

    def write_fields(self, item_type: str, values: Mapping[str, Any]) -> dict[str, Any]:
        """Native fields for `create_item`/`update_item` from values keyed by field path."""
        return nest_paths(values)

    def person_value(self, path: str, account_id: str) -> tuple[str, Any]:
        """The path and value that set the person field read at `path` to the tool's `account_id`."""
        parent, _, _ = path.rpartition(".")
        return (parent, {"id": account_id}) if parent else (path, account_id)

    def condition_value(self, path: str, value: str) -> Any:
        """The value that makes a type mapping's condition (`path` equals or contains `value`) hold."""
        return value

    # Webhooks: a provider with Feature.WEBHOOKS names its module of `verify(headers, body, secret)` and
    # `event_of(headers, payload)` (providers/<tool>/webhooks.py), which never touch the ORM or network.
    webhook_module: ClassVar[Any] = None

    @classmethod
    def verify_webhook(cls, headers: Mapping[str, str], body: bytes, secret: str) -> bool:
        """Whether the delivery comes from the tool: its signature over the raw `body`, checked in
        constant time against `secret`. Called before the body is parsed; never raises."""
        return cls.webhook_module is not None and cls.webhook_module.verify(headers, body, secret)

    @classmethod
    def webhook_event(cls, headers: Mapping[str, str], payload: Any) -> WebhookEvent | None:
        """The parsed payload of a verified delivery as a WebhookEvent; None for an event it ignores."""
        return None if cls.webhook_module is None else cls.webhook_module.event_of(headers, payload)


def nest_paths(values: Mapping[str, Any]) -> dict[str, Any]:
    """{"priority.name": "High", "fixVersions.0.name": "2.1"} -> {"priority": {"name": "High"},
    "fixVersions": [{"name": "2.1"}]}: a number step makes a list."""
    nested: dict[str, Any] = {}
    for path, value in values.items():
        steps = path.split(".")
        container: Any = nested
        for step, following in pairwise(steps):
            container = _slot(
                container, step, lambda following=following: [] if is_number_text(following) else {}
            )
        _slot(container, steps[-1], lambda value=value: value, replace=True)
    return nested


def _slot(container: dict | list, step: str, make: Callable[[], Any], *, replace: bool = False) -> Any:
    """The value at `step` of a dict or (numbered step) list, made when missing or when `replace`."""
    if isinstance(container, list):
        index = int(step)
        container.extend([None] * (index + 1 - len(container)))
        if replace or container[index] is None:
            container[index] = make()
        return container[index]
    if replace or step not in container:
        container[step] = make()
    return container[step]


class RegistryError(Exception):
    pass


_registry: dict[str, type[Connector]] = {}


def register_connector(cls: type[Connector]) -> type[Connector]:
    """Class decorator: add a provider to the write-once registry; a second slug is an error."""
    slug = getattr(cls, "slug", "")
    if not slug:
        raise RegistryError(f"{cls.__name__} declares no slug")
    if slug in _registry and _registry[slug] is not cls:
        raise RegistryError(
            f"a connector with slug {slug!r} is already registered ({_registry[slug].__name__})"
        )
    _registry[slug] = cls
    return cls


def connector_for(slug: str) -> type[Connector]:
    try:
        return _registry[slug]
    except KeyError:
        raise RegistryError(
            f"no connector is registered for {slug!r}; known: {', '.join(sorted(_registry))}"
        ) from None


def registered_connectors() -> dict[str, type[Connector]]:
    return dict(sorted(_registry.items()))
