"""The one HTTP client every connector provider uses: retries, rate limits, typed errors and paging.

Retry rules (`HttpClient.request`):
- 500, 502, 503, 504, timeouts and connection errors are retried with exponential back-off and full
  jitter, up to `RetryPolicy.max_attempts`; then `Unavailable`.
- 429, a 503 with Retry-After and a rate-limit 403 (GitHub `x-ratelimit-remaining: 0`) wait for what
  the tool asks (Retry-After, else the reset header, else back-off). A wait longer than
  `RetryPolicy.max_wait` raises `RateLimited` at once, so the engine reschedules instead of blocking.
- POST and PATCH are not idempotent: after a 5xx or a timeout the tool may already have acted, and a
  retry could create a duplicate. They are retried only when the tool certainly did not act (a rate
  limit answer, or a connection that failed before the request was sent); otherwise `Unavailable` is
  raised and the caller's own idempotency (a lookup before create) decides. A POST that only reads
  (a search) passes `idempotent=True`.

Messages and logs name the method and path, never headers, query strings, bodies or credentials.
"""

from __future__ import annotations

import base64
import binascii
import email.utils
import functools
import itertools
import json as jsonlib
import logging
import random
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import Any, Self
from urllib.parse import quote

import httpx
import redis

from connectors.exceptions import (
    AuthError,
    BadPayload,
    BadRequest,
    ConnectorError,
    NotFound,
    PageLimitExceeded,
    RateLimited,
    Unavailable,
)

logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT = httpx.Timeout(connect=5.0, read=30.0, write=30.0, pool=5.0)
DEFAULT_MAX_PAGES = 10_000

_RETRIED_STATUSES = frozenset({500, 502, 503, 504})
_NON_IDEMPOTENT_METHODS = frozenset({"POST", "PATCH"})
_TRANSIENT_ERRORS = (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError)
# Failures before the request left this process: safe to repeat even a POST.
_NOT_SENT_ERRORS = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
_SECRET_HEADERS = ("authorization", "proxy-authorization", "private-token", "x-api-key", "cookie")
_SECRET_QUERY_PARAMETERS = ("access_token", "token", "private_token", "api_key")
_MESSAGE_LIMIT = 300
# Reset headers below this are a number of seconds to wait (Zendesk), above it an epoch (GitHub, GitLab).
_EPOCH_THRESHOLD = 1_000_000_000


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 5
    base_delay: float = 0.5
    max_delay: float = 30.0
    max_wait: float = 120.0  # the longest wait a tool may ask for (Retry-After, reset) that we sit out

    def backoff(self, attempt: int, unit_random: float) -> float:
        """Full jitter: uniform between 0 and the exponential cap of this (1-based) attempt."""
        return unit_random * min(self.max_delay, self.base_delay * 2 ** (attempt - 1))


DEFAULT_RETRY = RetryPolicy()


class RateLimiter:
    """At most `rate` requests per second for one connection, in bursts of up to `burst`; thread-safe.

    A token bucket in which each caller reserves its token at once (the balance may go negative) and
    then sleeps outside the lock, so concurrent callers queue up evenly spaced.
    """

    def __init__(
        self,
        rate: float,
        burst: int = 1,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ):
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be positive and burst at least 1")
        self._rate = rate
        self._burst = burst
        self._clock = clock
        self._sleep = sleep
        self._tokens = float(burst)
        self._updated = clock()
        self._lock = threading.Lock()

    def acquire(self) -> None:
        with self._lock:
            now = self._clock()
            self._tokens = min(self._burst, self._tokens + (now - self._updated) * self._rate)
            self._updated = now
            self._tokens -= 1
            wait = -self._tokens / self._rate
        if wait > 0:
            self._sleep(wait)


# The same reservation as RateLimiter's, as a GCRA on Redis: the key holds the theoretical arrival time
# (TAT, microseconds) of the next request. Time comes from the Redis server, so the workers' clocks need
# not agree. Returns the microseconds the caller must wait; the key expires once the bucket is full.
_RESERVE_SCRIPT = """
local interval = 1000000 / tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000000 + tonumber(time[2])
local tat = math.max(tonumber(redis.call('GET', KEYS[1]) or now), now)
local wait = math.max(0, tat - now - (burst - 1) * interval)
tat = tat + interval
redis.call('SET', KEYS[1], string.format('%.0f', tat), 'PX', math.ceil((tat - now) / 1000) + 1000)
return string.format('%.0f', wait)
"""


@functools.cache
def _redis_client(url: str) -> redis.Redis:
    """One client (and connection pool) per URL and process; redis-py re-creates the pool after a fork."""
    return redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2)


class SharedRateLimiter:
    """`RateLimiter`, shared by every thread, process and machine using the same Redis `key`.

    One atomic script reserves the caller's slot; the caller then sleeps outside Redis. When Redis
    cannot be reached, the limit falls back to this process alone (one warning), and never fails a sync.
    """

    def __init__(
        self,
        redis_url: str,
        key: str,
        rate: float,
        burst: int = 1,
        *,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self._fallback = RateLimiter(rate, burst, sleep=sleep)  # validates rate and burst
        self._client = _redis_client(redis_url)
        self._reserve = self._client.register_script(_RESERVE_SCRIPT)
        self._key = key
        self._rate = rate
        self._burst = burst
        self._sleep = sleep
        self._shared = True

    def acquire(self) -> None:
        if self._shared:
            try:
                wait = int(self._reserve(keys=[self._key], args=[self._rate, self._burst])) / 1_000_000
            except redis.RedisError as exc:
                self._shared = False
                where = self._client.connection_pool.connection_kwargs
                logger.warning(
                    "Redis at %s:%s does not answer (%s); %s: the rate limit applies per process",
                    where.get("host"),
                    where.get("port"),
                    type(exc).__name__,
                    self._key,
                )
            else:
                if wait > 0:
                    self._sleep(wait)
                return
        self._fallback.acquire()


class HttpClient:
    """A synchronous client for one tool connection; see the module docstring for the retry rules."""

    def __init__(
        self,
        base_url: str,
        *,
        auth: httpx.Auth | None = None,
        headers: dict[str, str] | None = None,
        timeout: httpx.Timeout = DEFAULT_TIMEOUT,
        transport: httpx.BaseTransport | None = None,
        retry: RetryPolicy = DEFAULT_RETRY,
        rate_limiter: RateLimiter | SharedRateLimiter | None = None,
        sleep: Callable[[float], None] = time.sleep,
        random: Callable[[], float] = random.random,
        wall_clock: Callable[[], float] = time.time,  # "now" for HTTP dates and reset epochs
    ):
        self._client = httpx.Client(
            base_url=base_url,
            auth=auth,
            headers=_default_headers_with(headers),
            timeout=timeout,
            transport=transport,
            follow_redirects=True,
        )
        self._retry = retry
        self._rate_limiter = rate_limiter
        self._sleep = sleep
        self._random = random
        self._wall_clock = wall_clock

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._client.close()

    # Requests

    def request(
        self,
        method: str,
        url: str,
        *,
        params: dict[str, Any] | None = None,
        json: Any = None,
        content: bytes | str | None = None,
        headers: dict[str, str] | None = None,
        idempotent: bool | None = None,
    ) -> httpx.Response:
        """Send with retries; return a response below 400 or raise a typed `ConnectorError`.

        A relative `url` (with or without a leading slash) is appended to base_url, keeping its path
        prefix; an absolute one is used verbatim. `idempotent` defaults to False for POST and PATCH.
        """
        method = method.upper()
        request = self._client.build_request(
            method, url, params=params, json=json, content=content, headers=headers
        )
        label = f"{method} {request.url.path}"
        if idempotent is None:
            idempotent = method not in _NON_IDEMPOTENT_METHODS
        not_repeated = f"not repeated: the tool may already have acted on this {method}"
        attempt = 0
        while True:
            attempt += 1
            is_last = attempt >= self._retry.max_attempts
            if self._rate_limiter is not None:
                self._rate_limiter.acquire()
            started = time.perf_counter()
            try:
                response = self._client.send(request)
            except _TRANSIENT_ERRORS as exc:
                reason = _scrub(_describe(exc), request)
                self._log_attempt(method, request, type(exc).__name__, started)
                if not idempotent and not isinstance(exc, _NOT_SENT_ERRORS):
                    raise Unavailable(f"{label}: {reason}; {not_repeated}") from exc
                if is_last:
                    raise Unavailable(f"{label}: no answer after {attempt} attempts; last: {reason}") from exc
                self._wait_before_retry(label, reason, self._backoff(attempt), attempt)
                continue
            except httpx.RequestError as exc:  # not transient: a bad URL, too many redirects...
                raise ConnectorError(f"{label}: {_scrub(_describe(exc), request)}") from exc

            status = response.status_code
            self._log_attempt(method, request, status, started)
            if status < 400:
                return response
            reason = f"{status} {response.reason_phrase}".strip()
            tool_asks_to_wait = _is_rate_limit(response)
            if not tool_asks_to_wait and status not in _RETRIED_STATUSES:
                raise _error_for(response, label, request)
            if not tool_asks_to_wait and not idempotent:
                raise Unavailable(f"{label}: {reason}; {not_repeated}", status=status)
            requested = self._requested_wait(response) if tool_asks_to_wait or status == 503 else None
            if requested is not None and requested > self._retry.max_wait:
                raise RateLimited(
                    f"{label}: the tool asks to wait {requested:.0f} s "
                    f"(more than {self._retry.max_wait:.0f} s); {reason}",
                    retry_after=requested,
                    status=status,
                )
            if is_last:
                message = f"{label}: no proper answer after {attempt} attempts; last: {reason}"
                if status in (429, 403):
                    raise RateLimited(message, retry_after=requested, status=status)
                raise Unavailable(message, status=status)
            # A zero wait (a reset already past, clock skew) still gets a jittered pause.
            self._wait_before_retry(label, reason, requested or self._backoff(attempt), attempt)

    def get_json(self, url: str, params: dict[str, Any] | None = None) -> Any:
        return _json_body(self.request("GET", url, params=params))

    def post_json(self, url: str, json: Any) -> Any:
        return _json_body(self.request("POST", url, json=json))

    def put_json(self, url: str, json: Any) -> Any:
        return _json_body(self.request("PUT", url, json=json))

    def patch_json(self, url: str, json: Any) -> Any:
        return _json_body(self.request("PATCH", url, json=json))

    # Paging: each helper yields one list of items per page, and raises PageLimitExceeded when a page
    # past `max_pages` exists rather than stopping early.

    def paginate_token(
        self,
        url: str,
        *,
        method: str = "GET",
        params: dict[str, Any] | None = None,
        json: dict[str, Any] | None = None,
        token_param: str = "nextPageToken",  # noqa: S107 - a field name, not a secret
        token_field: str = "nextPageToken",  # noqa: S107
        items_field: str = "issues",
        last_field: str = "isLast",
        max_pages: int = DEFAULT_MAX_PAGES,
    ) -> Iterator[list[Any]]:
        """Cursor paging (Jira Cloud search/jql): the token goes into the query for GET, the body otherwise.

        A missing token key (Jira Cloud omits it on the last page), a null token or `isLast: true` ends it.
        """
        token = None
        for page_number in itertools.count(1):
            page_params, page_json = params, json
            if token is not None and method.upper() == "GET":
                page_params = {**(params or {}), token_param: token}
            elif token is not None:
                page_json = {**(json or {}), token_param: token}
            # A paging POST is a search: repeating it cannot create anything.
            response = self.request(method, url, params=page_params, json=page_json, idempotent=True)
            body = _json_body(response)
            yield _items(body, items_field, response)
            token = body.get(token_field)
            if not token or body.get(last_field) is True:
                return
            _check_page_limit(page_number, max_pages, response)

    def paginate_offset(
        self,
        url: str,
        *,
        params: dict[str, Any] | None = None,
        start_param: str = "startAt",
        size_param: str = "maxResults",
        page_size: int = 100,
        items_field: str = "issues",
        total_field: str = "total",
        max_pages: int = DEFAULT_MAX_PAGES,
    ) -> Iterator[list[Any]]:
        """startAt/maxResults paging (Jira Data Center): ends at `total`, on an empty page, or on a short
        page when there is no total. The start advances by the items received, as servers may cap the size.
        """
        start = 0
        for page_number in itertools.count(1):
            response = self.request(
                "GET", url, params={**(params or {}), start_param: start, size_param: page_size}
            )
            body = _json_body(response)
            items = _items(body, items_field, response)
            yield items
            start += len(items)
            total = body.get(total_field)
            # The tool echoes the size it actually used when it caps ours (Jira does).
            served_size = body.get(size_param)
            asked = served_size if isinstance(served_size, int) and served_size > 0 else page_size
            if not items or (start >= total if isinstance(total, int) else len(items) < asked):
                return
            _check_page_limit(page_number, max_pages, response)

    def paginate_link(
        self,
        url: str,
        *,
        params: dict[str, Any] | None = None,
        items_field: str | None = None,
        max_pages: int = DEFAULT_MAX_PAGES,
    ) -> Iterator[list[Any]]:
        """RFC 5988 `Link: <...>; rel="next"` paging (GitHub, GitLab), following the link verbatim.

        Each page's body is the list itself, or the list under `items_field` (GitHub search: "items").
        """
        next_url, next_params = url, params
        for page_number in itertools.count(1):
            response = self.request("GET", next_url, params=next_params)
            body = _json_body(response)
            yield _items(body, items_field, response)
            next_link = response.links.get("next")
            if not next_link or not next_link.get("url"):
                return
            _check_page_limit(page_number, max_pages, response)
            # The next link carries every parameter; a relative one resolves against this page.
            next_url, next_params = str(response.request.url.join(next_link["url"])), None

    def paginate_next_url(
        self,
        url: str,
        *,
        params: dict[str, Any] | None = None,
        items_field: str = "records",
        next_field: str = "nextRecordsUrl",
        done_field: str = "done",
        max_pages: int = DEFAULT_MAX_PAGES,
    ) -> Iterator[list[Any]]:
        """Salesforce-style paging: follow `nextRecordsUrl` (a path from the host root) until `done: true`."""
        next_url, next_params = url, params
        for page_number in itertools.count(1):
            response = self.request("GET", next_url, params=next_params)
            body = _json_body(response)
            yield _items(body, items_field, response)
            next_path = body.get(next_field)
            if body.get(done_field) is True:
                return
            if not next_path:
                if body.get(done_field) is False:
                    raise BadPayload(f"{_label(response)}: {done_field} is false but {next_field} is missing")
                return
            _check_page_limit(page_number, max_pages, response)
            next_url, next_params = str(response.request.url.join(next_path)), None

    # Internals

    def _backoff(self, attempt: int) -> float:
        return self._retry.backoff(attempt, self._random())

    def _requested_wait(self, response: httpx.Response) -> float | None:
        """Seconds the tool asks us to wait: Retry-After, else the rate-limit reset time; None if neither."""
        headers = response.headers
        retry_after = _seconds_until(headers.get("retry-after", "").strip(), self._wall_clock())
        if retry_after is not None:
            return retry_after
        remaining = headers.get("x-ratelimit-remaining")
        # A reset time only matters once the quota is spent; GitHub sends it on every answer.
        if remaining not in (None, "0"):
            return None
        reset = headers.get("x-ratelimit-reset") or headers.get("ratelimit-reset")
        if reset:
            return _seconds_until_reset(reset.strip(), self._wall_clock())
        return None

    def _wait_before_retry(self, label: str, reason: str, delay: float, attempt: int) -> None:
        logger.warning(
            "%s: %s; attempt %d of %d in %.2f s",
            label,
            reason,
            attempt + 1,
            self._retry.max_attempts,
            delay,
        )
        self._sleep(delay)

    @staticmethod
    def _log_attempt(method: str, request: httpx.Request, outcome: int | str, started: float) -> None:
        elapsed_ms = (time.perf_counter() - started) * 1000
        logger.debug("%s %s -> %s in %.0f ms", method, request.url.path, outcome, elapsed_ms)


def _default_headers_with(headers: dict[str, str] | None) -> httpx.Headers:
    merged = httpx.Headers({"Accept": "application/json"})
    merged.update(headers or {})  # case-insensitive: a caller's "accept" replaces ours
    return merged


def _json_body(response: httpx.Response) -> Any:
    """The parsed body; None when there is none (204, empty)."""
    if response.status_code == 204 or not response.content.strip():
        return None
    try:
        return jsonlib.loads(response.content)
    except ValueError:
        content_type = response.headers.get("content-type") or "no content type"
        raise BadPayload(
            f"{_label(response)}: expected JSON, got {content_type}", status=response.status_code
        ) from None


def _label(response: httpx.Response) -> str:
    return f"{response.request.method} {response.request.url.path}"


def _describe(exc: Exception) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _is_rate_limit(response: httpx.Response) -> bool:
    """Whether the tool refused for pacing only, so it did not act and a retry is safe."""
    status = response.status_code
    if status == 429:
        return True
    if status == 503:
        return "retry-after" in response.headers
    if status != 403:
        return False
    # GitHub: a spent primary quota, or a secondary limit (Retry-After or its message).
    if response.headers.get("x-ratelimit-remaining") == "0" or "retry-after" in response.headers:
        return True
    message = _tool_message(response).lower()
    # GitHub's secondary limit says so in words; Salesforce's API quota has its own code.
    return "rate limit" in message or "request_limit_exceeded" in message


def _seconds_until(retry_after: str, now: float) -> float | None:
    """Retry-After is either a number of seconds or an HTTP date; None when absent or unreadable."""
    if not retry_after:
        return None
    try:
        return max(0.0, float(retry_after))
    except ValueError:
        pass
    try:
        moment = email.utils.parsedate_to_datetime(retry_after)
    except (TypeError, ValueError):
        return None
    return max(0.0, moment.timestamp() - now)


def _seconds_until_reset(reset: str, now: float) -> float | None:
    """X-RateLimit-Reset: epoch seconds (GitHub), seconds to wait (Zendesk) or ISO time (Jira)."""
    try:
        number = float(reset)
    except ValueError:
        try:
            moment = datetime.fromisoformat(reset)
        except ValueError:
            return None
        if moment.tzinfo is None:
            return None
        return max(0.0, moment.timestamp() - now)
    return max(0.0, number - now) if number >= _EPOCH_THRESHOLD else max(0.0, number)


def _items(body: Any, items_field: str | None, response: httpx.Response) -> list[Any]:
    items = body
    if items_field is not None:
        items = body.get(items_field) if isinstance(body, dict) else None
    if not isinstance(items, list):
        where = "the body" if items_field is None else f"{items_field!r}"
        raise BadPayload(f"{_label(response)}: expected a list in {where}", status=response.status_code)
    return items


def _check_page_limit(page_number: int, max_pages: int, response: httpx.Response) -> None:
    """Called when another page exists after `page_number`."""
    if page_number >= max_pages:
        raise PageLimitExceeded(
            f"{_label(response)}: more than {max_pages} pages; narrow the query or raise max_pages"
        )


def _error_for(response: httpx.Response, label: str, request: httpx.Request) -> ConnectorError:
    status = response.status_code
    message = f"{label}: {status} {response.reason_phrase}".rstrip()
    detail = _scrub(_tool_message(response), request)
    if detail:
        message = f"{message}: {detail}"
    if status in (401, 403):
        return AuthError(message, status=status)
    if status in (404, 410):
        return NotFound(message, status=status)
    if status < 500:
        return BadRequest(message, status=status)
    return Unavailable(message, status=status)


def _tool_message(response: httpx.Response) -> str:
    """The error text a tool puts in its body, shortened; empty when there is none we can read."""
    try:
        body = jsonlib.loads(response.content)
    except ValueError:
        is_plain_text = response.headers.get("content-type", "").startswith("text/plain")
        text = " ".join(response.text.split()) if is_plain_text else ""
    else:
        text = "; ".join(_messages_in(body))
    return text if len(text) <= _MESSAGE_LIMIT else text[: _MESSAGE_LIMIT - 1] + "…"


def _messages_in(body: Any) -> list[str]:
    if isinstance(body, list):  # Salesforce: [{"message": ..., "errorCode": ...}]
        return [
            _joined(item.get("errorCode"), item.get("message")) for item in body if isinstance(item, dict)
        ]
    if not isinstance(body, dict):
        return []
    found = [str(message) for message in body.get("errorMessages") or []]  # Jira
    errors = body.get("errors")
    if isinstance(errors, dict):  # Jira: {"field": "message"}
        found += [f"{name}: {text}" for name, text in errors.items()]
    elif isinstance(errors, list):  # GitHub validation errors
        found += [
            str(error.get("message") or error) if isinstance(error, dict) else str(error) for error in errors
        ]
    message = body.get("message")  # GitHub, GitLab (a dict of field errors on GitLab validations)
    if message:
        found.append(message if isinstance(message, str) else jsonlib.dumps(message))
    error = body.get("error")  # Zendesk: "RecordInvalid" + description, or {"title", "message"}
    if isinstance(error, dict):
        found.append(_joined(error.get("title"), error.get("message")))
    elif error:  # also OAuth (Salesforce): "invalid_client" + error_description
        found.append(_joined(error, body.get("description") or body.get("error_description")))
    if isinstance(body.get("Message"), str):  # Targetprocess: {"Status": "BadRequest", "Message": ...}
        found.append(body["Message"])
    return [text for text in found if text]


def _joined(code: Any, text: Any) -> str:
    return ": ".join(str(part) for part in (code, text) if part)


def _scrub(text: str, request: httpx.Request) -> str:
    """Blank out any credential the request carried, should a tool or library echo it back."""
    for secret in _secrets_of(request):
        text = text.replace(secret, "***")
    return text


def _secrets_of(request: httpx.Request) -> list[str]:
    secrets = []
    for name in _SECRET_HEADERS:
        value = request.headers.get(name)
        if not value:
            continue
        secrets.append(value)
        scheme, _, credential = value.partition(" ")
        if credential:
            secrets.append(credential)
        if scheme.lower() == "basic":
            try:
                user_and_password = base64.b64decode(credential, validate=True).decode()
            except (binascii.Error, UnicodeDecodeError):
                continue
            secrets += [user_and_password, user_and_password.partition(":")[2]]
    # Tokens some tools take in the query string (Targetprocess access_token), raw and URL-encoded.
    for name in _SECRET_QUERY_PARAMETERS:
        value = request.url.params.get(name)
        if value:
            secrets += [value, quote(value, safe="")]
    # Longest first, so a token inside a longer secret does not leave the rest behind.
    return sorted((secret for secret in secrets if len(secret) >= 6), key=len, reverse=True)
