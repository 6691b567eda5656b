"""What every fake tool shares: requests and JSON responses, routing by regex, auth helpers, fault
injection, request counters, and a threaded loopback server that mounts several fakes under path
prefixes.

Plain Python and the standard library only (no Django), so a fake runs in a test process through
``httpx.WSGITransport``, in a background thread through :func:`serve`, or in its own process through
``manage.py run_fake_tools``.
"""

from __future__ import annotations

import base64
import binascii
import functools
import inspect
import ipaddress
import json
import re
import threading
import time
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from socketserver import ThreadingMixIn
from typing import Any, NamedTuple
from urllib.parse import parse_qs
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server
from wsgiref.util import application_uri

LOOPBACK_HOST = "127.0.0.1"
CONTROL_PREFIX = "/_fake"

_STATUS_PHRASES = {
    200: "OK",
    201: "Created",
    204: "No Content",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    409: "Conflict",
    410: "Gone",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


class InvalidRequestBody(ValueError):
    """The request body is not the JSON the endpoint expects."""


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]  # lower-case names
    body: bytes
    base_url: str  # scheme://host[:port] plus the mount prefix: what `self` links start with
    params: dict[str, str] = field(default_factory=dict)  # named groups of the matched route
    user: Any = None  # who the credentials belong to, set before an authenticated handler runs

    @classmethod
    def from_environ(cls, environ: dict[str, Any]) -> Request:
        headers = {
            name[5:].replace("_", "-").lower(): value
            for name, value in environ.items()
            if name.startswith("HTTP_")
        }
        if environ.get("CONTENT_TYPE"):
            headers["content-type"] = environ["CONTENT_TYPE"]
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length > 0 else b""
        return cls(
            method=environ["REQUEST_METHOD"].upper(),
            path=environ.get("PATH_INFO") or "/",
            query=parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True),
            headers=headers,
            body=body,
            base_url=application_uri(environ).rstrip("/"),
        )

    def arg(self, name: str, default: str | None = None) -> str | None:
        """The first value of a query parameter."""
        values = self.query.get(name)
        return values[0] if values else default

    def json(self) -> Any:
        """The JSON body, or None when there is none."""
        if not self.body.strip():
            return None
        try:
            return json.loads(self.body)
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise InvalidRequestBody(f"The request body is not valid JSON: {error}") from error

    def json_object(self) -> dict[str, Any]:
        """The JSON body, which must be an object (an empty body counts as {})."""
        payload = self.json()
        if payload is None:
            return {}
        if not isinstance(payload, dict):
            raise InvalidRequestBody("The request body must be a JSON object.")
        return payload


@dataclass
class Response:
    status: int
    body: bytes = b""
    headers: list[tuple[str, str]] = field(default_factory=list)

    def __call__(self, environ: dict[str, Any], start_response: Callable) -> Iterable[bytes]:
        phrase = _STATUS_PHRASES.get(self.status, "Unknown")
        headers = [*self.headers, ("Content-Length", str(len(self.body)))]
        start_response(f"{self.status} {phrase}", headers)
        return [self.body]

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


def json_response(payload: Any, status: int = 200, headers: Iterable[tuple[str, str]] = ()) -> Response:
    body = json.dumps(payload, ensure_ascii=False).encode()
    return Response(status, body, [("Content-Type", "application/json;charset=UTF-8"), *headers])


def empty_response(status: int = 204, headers: Iterable[tuple[str, str]] = ()) -> Response:
    return Response(status, b"", list(headers))


class HttpError(Exception):
    """Raised by a handler to answer with `response` instead of going on."""

    def __init__(self, response: Response):
        super().__init__(response.status)
        self.response = response


Handler = Callable[[Request], Response]


class Route(NamedTuple):
    method: str
    pattern: re.Pattern[str]
    handler: Handler
    name: str  # what the request counters are keyed by, e.g. "issue/changelog"
    public: bool  # answers without credentials
    write: bool  # changes state, so a success is recorded in `FakeApp.writes`


class Router:
    """Method plus a regular expression over the whole path; named groups become `request.params`."""

    def __init__(self) -> None:
        self.routes: list[Route] = []

    def add(
        self,
        method: str,
        pattern: str,
        handler: Handler,
        name: str,
        public: bool = False,
        write: bool | None = None,
    ) -> None:
        """`write` defaults to "not a GET"; a search by POST passes False."""
        method = method.upper()
        write = method != "GET" if write is None else write
        self.routes.append(Route(method, re.compile(pattern), handler, name, public, write))

    def match(self, method: str, path: str) -> tuple[Route | None, dict[str, str], bool]:
        """The route, its path parameters, and whether the path exists under another method."""
        path_exists = False
        for route in self.routes:
            found = route.pattern.fullmatch(path)
            if found is None:
                continue
            if route.method == method:
                return route, found.groupdict(), True
            path_exists = True
        return None, {}, path_exists


def basic_credentials(request: Request) -> tuple[str, str] | None:
    """(user, password) from an `Authorization: Basic ...` header."""
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, separator, password = decoded.partition(":")
    return (user, password) if separator else None


def bearer_token(request: Request) -> str | None:
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    return value.strip() or None if scheme.lower() == "bearer" else None


@dataclass
class PendingFaults:
    """Faults the next requests meet, each consumed by one request."""

    slow_count: int = 0
    slow_seconds: float = 0.0
    rate_limit_count: int = 0
    retry_after_seconds: int = 2
    failure_count: int = 0
    failure_status: int = 500
    lost_answer_count: int = 0
    lost_answer_status: int = 504

    def take_delay(self) -> float:
        if self.slow_count <= 0:
            return 0.0
        self.slow_count -= 1
        return self.slow_seconds

    def take_rate_limit(self) -> int | None:
        if self.rate_limit_count <= 0:
            return None
        self.rate_limit_count -= 1
        return self.retry_after_seconds

    def take_failure(self) -> int | None:
        if self.failure_count <= 0:
            return None
        self.failure_count -= 1
        return self.failure_status

    def take_lost_answer(self) -> int | None:
        if self.lost_answer_count <= 0:
            return None
        self.lost_answer_count -= 1
        return self.lost_answer_status


class Write(NamedTuple):
    method: str
    path: str
    body: Any


def locked(method: Callable) -> Callable:
    """Serialise a FakeApp method with request handling: the loopback server is threaded."""

    @functools.wraps(method)
    def wrapper(self: FakeApp, *args: Any, **kwargs: Any) -> Any:
        with self.lock:
            return method(self, *args, **kwargs)

    return wrapper


def system_clock() -> datetime:
    return datetime.now(UTC)


class FakeApp(ABC):
    """Base of every fake tool: a WSGI app with routing, counters, faults and control endpoints.

    A subclass registers its API on `self.router` (in `reset`, so that state and routes start over
    together), authenticates in `authenticate`, and shapes error bodies in `error_response`.

    Control endpoints shared by every fake (fake-only, no credentials, never faulted or counted):
    ``POST /_fake/reset``, ``POST /_fake/faults``, ``GET /_fake/stats``, ``POST /_fake/clock``.
    """

    def __init__(self, now: Callable[[], datetime] | None = None) -> None:
        self.lock = threading.RLock()
        self.now = now or system_clock
        self._configured_now = self.now
        self.router = Router()
        self.control = Router()
        self.requests: Counter[str] = Counter()
        self.writes: list[Write] = []
        self.faults = PendingFaults()
        self.control.add("POST", f"{CONTROL_PREFIX}/reset", self._control_reset, "reset")
        self.control.add("POST", f"{CONTROL_PREFIX}/faults", self._control_faults, "faults")
        self.control.add("GET", f"{CONTROL_PREFIX}/stats", self._control_stats, "stats")
        self.control.add("POST", f"{CONTROL_PREFIX}/clock", self._control_clock, "clock")

    # What a subclass provides.

    @abstractmethod
    def authenticate(self, request: Request) -> Any:
        """The acting user; raise HttpError (401) when the credentials do not match."""

    def error_response(self, status: int, message: str, headers: Iterable[tuple[str, str]] = ()) -> Response:
        """The tool's own error body."""
        return json_response({"message": message}, status, headers)

    def rate_limited_response(self, retry_after_seconds: int) -> Response:
        """The tool's 429, with its own rate-limit headers."""
        return self.error_response(429, "Rate limit exceeded.", [("Retry-After", str(retry_after_seconds))])

    @abstractmethod
    def credentials(self) -> dict[str, str]:
        """The demo credentials `run_fake_tools` prints."""

    @property
    def label(self) -> str:
        """What `run_fake_tools` calls this fake."""
        return type(self).__name__

    @locked
    def reset(self) -> None:
        """Back to the state right after construction; subclasses rebuild their own state too."""
        self.requests.clear()
        self.writes.clear()
        self.faults = PendingFaults()
        self.now = self._configured_now

    @locked
    def restore(self, state: dict[str, Any]) -> None:
        """Take back the tool state connectors.fakes.world.world_save kept; a subclass whose routes depend
        on that state builds them again."""
        vars(self).update(state)

    def stats(self) -> dict[str, Any]:
        return {"requests": dict(self.requests), "writes": len(self.writes), "faults": asdict(self.faults)}

    # Fault injection.

    @locked
    def rate_limit(self, count: int, retry_after: int = 2) -> None:
        """The next `count` requests answer 429 with Retry-After."""
        self.faults.rate_limit_count, self.faults.retry_after_seconds = count, retry_after

    @locked
    def fail(self, count: int, status: int = 500) -> None:
        """The next `count` requests answer `status` (a 5xx by default)."""
        self.faults.failure_count, self.faults.failure_status = count, status

    @locked
    def lose_answers(self, count: int, status: int = 504) -> None:
        """The next `count` writes are made, but their answer is lost: the client gets `status` (a
        gateway timeout by default) as if the tool had failed, though the change is there."""
        self.faults.lost_answer_count, self.faults.lost_answer_status = count, status

    @locked
    def slow(self, count: int, seconds: float) -> None:
        """The next `count` requests wait `seconds` before being handled."""
        self.faults.slow_count, self.faults.slow_seconds = count, seconds

    @locked
    def clear_faults(self) -> None:
        self.faults = PendingFaults()

    def configure_faults(self, settings: dict[str, Any]) -> None:
        """Apply the JSON of ``POST /_fake/faults``; subclasses add their own kinds."""
        if settings.get("clear"):
            self.clear_faults()
        if "rate_limit" in settings:
            self.rate_limit(
                int(settings["rate_limit"]["count"]), int(settings["rate_limit"].get("retry_after", 2))
            )
        if "fail" in settings:
            self.fail(int(settings["fail"]["count"]), int(settings["fail"].get("status", 500)))
        if "slow" in settings:
            self.slow(int(settings["slow"]["count"]), float(settings["slow"]["seconds"]))
        if "lose_answers" in settings:
            self.lose_answers(
                int(settings["lose_answers"]["count"]), int(settings["lose_answers"].get("status", 504))
            )

    # WSGI.

    def __call__(self, environ: dict[str, Any], start_response: Callable) -> Iterable[bytes]:
        request = Request.from_environ(environ)
        try:
            response = self._respond(request)
        except HttpError as error:
            response = error.response
        except InvalidRequestBody as error:
            response = self.error_response(400, str(error))
        return response(environ, start_response)

    def _respond(self, request: Request) -> Response:
        if request.path == CONTROL_PREFIX or request.path.startswith(CONTROL_PREFIX + "/"):
            route, request.params, path_exists = self.control.match(request.method, request.path)
            if route is None:
                return self._unrouted(request, path_exists)
            with self.lock:
                return route.handler(request)

        with self.lock:
            route, request.params, path_exists = self.router.match(request.method, request.path)
            if route is None:
                return self._unrouted(request, path_exists)
            self.requests[f"{request.method} {route.name}"] += 1
            delay = self.faults.take_delay()
        if delay:
            time.sleep(delay)  # outside the lock, so a slow request does not stall the others
        with self.lock:
            retry_after = self.faults.take_rate_limit()
            if retry_after is not None:
                return self.rate_limited_response(retry_after)
            failure_status = self.faults.take_failure()
            if failure_status is not None:
                return self.error_response(failure_status, "Injected failure (fake tool fault).")
            if not route.public:
                request.user = self.authenticate(request)
            response = route.handler(request)
            if route.write and response.ok:
                self.writes.append(Write(request.method, request.path, request.json()))
                lost = self.faults.take_lost_answer()
                if lost is not None:
                    return self.error_response(lost, "Injected fault: the change was made, its answer lost.")
            return response

    def _unrouted(self, request: Request, path_exists: bool) -> Response:
        if path_exists:
            return empty_response(405)
        return self.error_response(404, f"No such resource in this fake: {request.method} {request.path}")

    # Control endpoints.

    def _control_reset(self, request: Request) -> Response:
        options = request.json_object()
        try:
            inspect.signature(self.reset).bind(**options)
        except TypeError as error:
            raise InvalidRequestBody(f"Unknown reset option: {error}") from error
        try:
            self.reset(**options)
        except ValueError as error:
            raise InvalidRequestBody(str(error)) from error
        return json_response({"reset": True})

    def _control_faults(self, request: Request) -> Response:
        try:
            self.configure_faults(request.json_object())
        except (KeyError, TypeError, ValueError) as error:
            raise InvalidRequestBody(f"Bad fault settings: {error!r}") from error
        return json_response(self.stats()["faults"])

    def _control_stats(self, request: Request) -> Response:
        return json_response(self.stats())

    def _control_clock(self, request: Request) -> Response:
        """{"now": "2026-03-01T10:30:00+00:00"} freezes the clock there; {"now": null} lets it run."""
        instant = request.json_object().get("now")
        if instant is None:
            self.now = self._configured_now
            return json_response({"now": None})
        try:
            frozen = datetime.fromisoformat(instant)
        except (TypeError, ValueError) as error:
            raise InvalidRequestBody(f"'now' is not an ISO 8601 instant: {instant!r}") from error
        if frozen.tzinfo is None:
            raise InvalidRequestBody("'now' needs an offset, e.g. 2026-03-01T10:30:00+00:00.")
        self.now = lambda: frozen
        return json_response({"now": frozen.isoformat()})


class PrefixDispatcher:
    """One WSGI app mounting several fakes under path prefixes (``/jira``, ``/github``...)."""

    def __init__(self, app_by_prefix: dict[str, Callable]):
        self.app_by_prefix = {"/" + prefix.strip("/"): app for prefix, app in app_by_prefix.items()}

    def __call__(self, environ: dict[str, Any], start_response: Callable) -> Iterable[bytes]:
        path = environ.get("PATH_INFO") or "/"
        for prefix in sorted(self.app_by_prefix, key=len, reverse=True):
            if path == prefix or path.startswith(prefix + "/"):
                environ["SCRIPT_NAME"] = environ.get("SCRIPT_NAME", "").rstrip("/") + prefix
                environ["PATH_INFO"] = path[len(prefix) :] or "/"
                return self.app_by_prefix[prefix](environ, start_response)
        status = 200 if path == "/" else 404
        return json_response({"fakes": sorted(self.app_by_prefix)}, status)(environ, start_response)


class _QuietRequestHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """No access log: tests and the demo would drown in it."""


class LoopbackServer(ThreadingMixIn, WSGIServer):
    """A threaded WSGI server on 127.0.0.1. As a context manager it serves from a background thread."""

    daemon_threads = True
    _thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return self.server_address[1]

    @property
    def base_url(self) -> str:
        return f"http://{LOOPBACK_HOST}:{self.port}"

    def url(self, prefix: str = "") -> str:
        return self.base_url + "/" + prefix.strip("/") if prefix.strip("/") else self.base_url

    def __enter__(self) -> LoopbackServer:
        self._thread = threading.Thread(
            target=self.serve_forever, kwargs={"poll_interval": 0.05}, name="fake-tools", daemon=True
        )
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.shutdown()
        self.server_close()
        if self._thread is not None:
            self._thread.join()


def loopback_address(host: str) -> str:
    """`host` as a loopback IPv4 address; ValueError for anything reachable from outside."""
    if host == "localhost":
        return LOOPBACK_HOST
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        address = None
    if address is None or address.version != 4 or not address.is_loopback:
        raise ValueError(
            f"The fake tools only listen on loopback ({LOOPBACK_HOST}), not on {host!r}: "
            "they accept published demo credentials."
        )
    return host


def serve(
    app_by_prefix: dict[str, Callable],
    host: str = LOOPBACK_HOST,
    port: int = 0,
    *,
    private_network: bool = False,
) -> LoopbackServer:
    """Mount each fake under its prefix on one loopback server; port 0 picks a free port.

    `private_network` lets the fakes listen on `host` whatever it is, for a container network that
    nothing outside reaches (docker compose's demo profile); they accept published demo credentials.

    ``with serve({"/jira": fake}) as server: httpx.get(server.url("/jira") + "/rest/api/2/serverInfo")``
    serves from a background thread; ``serve(...).serve_forever()`` serves in this one.
    """
    return make_server(
        host if private_network else loopback_address(host),
        port,
        PrefixDispatcher(app_by_prefix),
        server_class=LoopbackServer,
        handler_class=_QuietRequestHandler,
    )
