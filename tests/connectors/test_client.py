import base64
import email.utils
import json
import logging
import random
import threading
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from connectors.client import HttpClient, RateLimiter, RetryPolicy
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

BASE_URL = "https://tool.example.test"
NOW = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)
SECRET = "tok-SECRET-123"


class Script:
    """A MockTransport handler that plays answers in order (the last one repeats) and keeps the requests.

    An answer is an exception to raise, or (status, headers, body) where a str/bytes body is sent as is
    and anything else as JSON.
    """

    def __init__(self, *answers):
        self.answers = answers
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.answers[min(len(self.requests), len(self.answers)) - 1]
        if isinstance(answer, Exception):
            raise answer
        status, headers, body = answer
        if isinstance(body, str | bytes):
            return httpx.Response(status, headers=headers, content=body)
        return httpx.Response(status, headers=headers, json=body)

    @property
    def calls(self) -> int:
        return len(self.requests)


def ok(body=None, headers=None):
    return (200, headers or {}, {} if body is None else body)


def status(code, headers=None, body=b""):
    return (code, headers or {}, body)


def make_client(handler, *, sleeps=None, base_url=BASE_URL, unit_random=0.5, **options) -> HttpClient:
    return HttpClient(
        base_url,
        transport=httpx.MockTransport(handler),
        sleep=sleeps.append if sleeps is not None else lambda _seconds: None,
        random=lambda: unit_random,
        wall_clock=NOW.timestamp,
        **options,
    )


# URLs


@pytest.mark.parametrize("path", ["rest/api/2/myself", "/rest/api/2/myself"])
def test_relative_url_keeps_the_base_path_prefix(path):
    script = Script(ok({"name": "me"}))
    client = make_client(script, base_url="http://127.0.0.1:8800/jira")

    assert client.get_json(path) == {"name": "me"}
    assert str(script.requests[0].url) == "http://127.0.0.1:8800/jira/rest/api/2/myself"


def test_absolute_url_is_used_verbatim():
    script = Script(ok([]))
    client = make_client(script, base_url="http://127.0.0.1:8800/jira")

    client.get_json("https://api.example.test/repositories/7/issues?page=2")

    assert str(script.requests[0].url) == "https://api.example.test/repositories/7/issues?page=2"


# Retries


@pytest.mark.parametrize("code", [500, 502, 503, 504])
def test_server_error_is_retried_then_succeeds(code):
    sleeps = []
    script = Script(status(code), ok({"done": True}))

    assert make_client(script, sleeps=sleeps).get_json("x") == {"done": True}
    assert script.calls == 2
    assert sleeps == [0.25]  # half (the fake random) of the first 0.5 s step


def test_server_error_exhausted_raises_unavailable_after_max_attempts():
    sleeps = []
    script = Script(status(503))

    with pytest.raises(Unavailable) as caught:
        make_client(script, sleeps=sleeps).get_json("rest/api/2/search")

    assert script.calls == 5
    assert sleeps == [0.25, 0.5, 1.0, 2.0]  # exponential, times the jitter; no sleep after the last
    assert "5 attempts" in str(caught.value)
    assert "503" in str(caught.value)
    assert "GET /rest/api/2/search" in str(caught.value)
    assert caught.value.status == 503


def test_backoff_is_full_jitter_under_a_growing_capped_ceiling():
    policy = RetryPolicy(max_attempts=8, base_delay=1.0, max_delay=8.0)
    ceilings = [1.0, 2.0, 4.0, 8.0, 8.0, 8.0, 8.0]
    jitter = random.Random(7)
    sleeps = []

    with pytest.raises(Unavailable):
        HttpClient(
            BASE_URL,
            transport=httpx.MockTransport(Script(status(500))),
            retry=policy,
            sleep=sleeps.append,
            random=jitter.random,
        ).get_json("x")

    assert len(sleeps) == len(ceilings)
    assert all(0 <= delay <= ceiling for delay, ceiling in zip(sleeps, ceilings, strict=True))
    assert sleeps != ceilings  # jittered, not the bare ceilings
    assert [policy.backoff(attempt, 1.0) for attempt in range(1, 8)] == ceilings


@pytest.mark.parametrize(
    "error",
    [
        httpx.ReadTimeout("read timed out"),
        httpx.ConnectTimeout("connect timed out"),
        httpx.ConnectError("connection refused"),
        httpx.ReadError("connection reset"),
        httpx.RemoteProtocolError("server disconnected"),
    ],
    ids=type,
)
def test_timeouts_and_connection_errors_are_retried(error):
    script = Script(error, ok({"id": 1}))

    assert make_client(script).get_json("x") == {"id": 1}
    assert script.calls == 2


def test_connection_errors_exhausted_raise_unavailable_naming_the_error():
    script = Script(httpx.ConnectError("connection refused"))

    with pytest.raises(Unavailable, match=r"GET /x: no answer after 5 attempts; last: ConnectError"):
        make_client(script).get_json("x")
    assert script.calls == 5


def test_a_non_transient_transport_error_is_raised_at_once():
    script = Script(httpx.UnsupportedProtocol("Request URL has an unsupported protocol 'ftp://'"))

    with pytest.raises(ConnectorError, match="UnsupportedProtocol"):
        make_client(script).get_json("x")
    assert script.calls == 1


@pytest.mark.parametrize("method", ["POST", "PATCH"])
@pytest.mark.parametrize(
    "failure",
    [status(500), status(502), status(503), httpx.ReadTimeout("read timed out"), httpx.ReadError("reset")],
    ids=["500", "502", "503-without-retry-after", "read-timeout", "read-error"],
)
def test_non_idempotent_request_is_not_repeated_once_it_may_have_reached_the_tool(method, failure):
    script = Script(failure, ok({"id": 1}))

    with pytest.raises(Unavailable, match=f"{method} /issues: .*not repeated"):
        make_client(script).request(method, "issues", json={"title": "t"})
    assert script.calls == 1


@pytest.mark.parametrize("method", ["POST", "PATCH"])
@pytest.mark.parametrize(
    "failure",
    [
        httpx.ConnectError("connection refused"),
        httpx.ConnectTimeout("connect timed out"),
        status(429),
        status(503, {"Retry-After": "1"}),
    ],
    ids=["connect-error", "connect-timeout", "429", "503-with-retry-after"],
)
def test_non_idempotent_request_is_retried_when_the_tool_did_not_act(method, failure):
    script = Script(failure, (201, {}, {"id": 1}))

    assert make_client(script).request(method, "issues", json={"title": "t"}).json() == {"id": 1}
    assert script.calls == 2


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
def test_idempotent_methods_are_retried_after_a_server_error(method):
    script = Script(status(500), status(204))

    assert make_client(script).request(method, "issues/1").status_code == 204
    assert script.calls == 2


def test_a_post_declared_idempotent_is_retried_after_a_server_error():
    script = Script(status(500), ok({"issues": []}))

    make_client(script).request("POST", "search", json={"jql": "x"}, idempotent=True)

    assert script.calls == 2


# Rate limits

LATER = NOW + timedelta(seconds=7)


@pytest.mark.parametrize(
    ("code", "headers", "expected_wait"),
    [
        (429, {"Retry-After": "3"}, 3.0),
        (429, {"Retry-After": email.utils.format_datetime(LATER, usegmt=True)}, 7.0),
        (503, {"Retry-After": "2"}, 2.0),
        (429, {"X-RateLimit-Reset": str(int(NOW.timestamp()) + 10)}, 10.0),  # GitHub: epoch seconds
        (429, {"X-RateLimit-Reset": "2025-01-01T12:01Z"}, 60.0),  # Jira Cloud: ISO minute
        (429, {"RateLimit-Reset": "5"}, 5.0),  # Zendesk: seconds to wait
        (503, {"X-RateLimit-Reset": str(int(NOW.timestamp()) + 4)}, 4.0),
        (403, {"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(int(NOW.timestamp()) + 9)}, 9.0),
    ],
    ids=[
        "retry-after-seconds",
        "retry-after-http-date",
        "503-retry-after",
        "reset-epoch",
        "reset-iso",
        "reset-delta",
        "503-reset",
        "github-403-remaining-0",
    ],
)
def test_waits_as_long_as_the_tool_asks_then_succeeds(code, headers, expected_wait):
    sleeps = []
    script = Script(status(code, headers), ok({"id": 1}))

    assert make_client(script, sleeps=sleeps).get_json("x") == {"id": 1}
    assert sleeps == [expected_wait]


def test_retry_after_wins_over_the_reset_header():
    sleeps = []
    reset = str(int(NOW.timestamp()) + 50)
    script = Script(status(429, {"Retry-After": "3", "X-RateLimit-Reset": reset}), ok())

    make_client(script, sleeps=sleeps).get_json("x")

    assert sleeps == [3.0]


def test_reset_header_is_ignored_while_quota_remains():
    # GitHub sends the reset time on every answer; a secondary-limit 429 with quota left is not told by it.
    sleeps = []
    headers = {"x-ratelimit-remaining": "4999", "x-ratelimit-reset": str(int(NOW.timestamp()) + 3000)}
    script = Script(status(429, headers), ok())

    make_client(script, sleeps=sleeps).get_json("x")

    assert sleeps == [0.25]


def test_429_without_headers_backs_off_with_jitter():
    sleeps = []
    script = Script(status(429), status(429), ok())

    make_client(script, sleeps=sleeps).get_json("x")

    assert sleeps == [0.25, 0.5]


@pytest.mark.parametrize(
    ("code", "headers", "expected_wait"),
    [
        (429, {"Retry-After": "3600"}, 3600.0),
        (503, {"Retry-After": "300"}, 300.0),
        (403, {"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(int(NOW.timestamp()) + 1800)}, 1800.0),
    ],
    ids=["429", "503", "github-403"],
)
def test_a_wait_longer_than_max_wait_raises_rate_limited_without_sleeping(code, headers, expected_wait):
    sleeps = []
    script = Script(status(code, headers), ok())

    with pytest.raises(RateLimited) as caught:
        make_client(script, sleeps=sleeps).get_json("rest/api/3/search/jql")

    assert caught.value.retry_after == expected_wait
    assert caught.value.status == code
    assert "GET /rest/api/3/search/jql" in str(caught.value)
    assert sleeps == []
    assert script.calls == 1


def test_a_persisting_429_raises_rate_limited_after_max_attempts():
    sleeps = []
    script = Script(status(429, {"Retry-After": "1"}))

    with pytest.raises(RateLimited) as caught:
        make_client(script, sleeps=sleeps, retry=RetryPolicy(max_attempts=3)).get_json("x")

    assert script.calls == 3
    assert sleeps == [1.0, 1.0]
    assert caught.value.retry_after == 1.0


@pytest.mark.parametrize(
    "body",
    [
        {"message": "You have exceeded a secondary rate limit. Please wait a few minutes."},
        [{"message": "TotalRequests Limit exceeded.", "errorCode": "REQUEST_LIMIT_EXCEEDED"}],
    ],
    ids=["github-secondary", "salesforce-quota"],
)
def test_a_403_that_reports_a_rate_limit_is_retried_not_an_auth_error(body):
    script = Script(status(403, {}, json.dumps(body)), ok())

    make_client(script).get_json("x")

    assert script.calls == 2


# Errors


@pytest.mark.parametrize(
    ("code", "error_type"),
    [
        (401, AuthError),
        (403, AuthError),
        (404, NotFound),
        (410, NotFound),
        (400, BadRequest),
        (409, BadRequest),
        (422, BadRequest),
        (501, Unavailable),
    ],
)
def test_status_maps_to_a_typed_error_without_retrying(code, error_type):
    script = Script(status(code))

    with pytest.raises(error_type) as caught:
        make_client(script).get_json("rest/api/2/issue/ABC-1", params={"fields": "summary"})

    assert type(caught.value) is error_type
    assert caught.value.status == code
    assert str(caught.value).startswith(f"GET /rest/api/2/issue/ABC-1: {code}")
    assert "fields" not in str(caught.value)
    assert script.calls == 1


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            {"errorMessages": ["Field 'x' does not exist."], "errors": {"summary": "required"}},
            "Field 'x' does not exist.; summary: required",
        ),
        ({"message": "Validation Failed", "errors": [{"code": "missing_field"}]}, "missing_field"),
        ({"message": "Validation Failed"}, "Validation Failed"),
        ({"message": {"title": ["can't be blank"]}}, '{"title": ["can\'t be blank"]}'),
        (
            [{"message": "unexpected token: FROM", "errorCode": "MALFORMED_QUERY"}],
            "MALFORMED_QUERY: unexpected",
        ),
        (
            {"error": "RecordInvalid", "description": "Record validation errors"},
            "RecordInvalid: Record valid",
        ),
        ({"error": {"title": "Forbidden", "message": "no access"}}, "Forbidden: no access"),
        ("Bad things happened\n  here", "Bad things happened here"),
    ],
    ids=[
        "jira",
        "github-errors",
        "github",
        "gitlab",
        "salesforce",
        "zendesk",
        "zendesk-object",
        "plain-text",
    ],
)
def test_bad_request_carries_the_tools_message(body, expected):
    if isinstance(body, str):
        answer = (400, {"Content-Type": "text/plain"}, body)
    else:
        answer = (400, {}, json.dumps(body))

    with pytest.raises(BadRequest) as caught:
        make_client(Script(answer)).post_json("issues", {"title": "t"})

    assert str(caught.value).startswith("POST /issues: 400 Bad Request: ")
    assert expected in str(caught.value)


def test_the_tools_message_is_shortened_and_html_is_left_out():
    with pytest.raises(BadRequest) as long_message:
        make_client(Script(status(400, {}, json.dumps({"message": "x" * 5000})))).get_json("x")
    with pytest.raises(BadRequest) as html_page:
        make_client(Script(status(400, {"Content-Type": "text/html"}, "<html>oops</html>"))).get_json("x")

    assert 300 <= len(str(long_message.value)) <= 340
    assert str(html_page.value) == "GET /x: 400 Bad Request"


def sent_credential(request: httpx.Request) -> str:
    return request.headers.get("authorization") or request.headers["private-token"]


def answer_500(request):
    return httpx.Response(500)


def refuse_echoing_the_credential(request):
    raise httpx.ConnectError(f"refused; sent {sent_credential(request)}")


def answer_401_echoing_the_credential(request):
    return httpx.Response(401, json={"message": f"bad credentials: {sent_credential(request)}"})


def answer_400_echoing_the_credential(request):
    return httpx.Response(400, json={"errorMessages": [f"{sent_credential(request)} is invalid"]})


def answer_429_for_an_hour(request):
    return httpx.Response(429, headers={"Retry-After": "3600"})


@pytest.mark.parametrize(
    "credentials",
    [
        {"auth": httpx.BasicAuth("me@example.test", SECRET)},
        {"headers": {"Authorization": f"Bearer {SECRET}"}},
        {"headers": {"PRIVATE-TOKEN": SECRET}},
    ],
    ids=["basic", "bearer", "gitlab-private-token"],
)
@pytest.mark.parametrize(
    "handler",
    [
        answer_500,
        refuse_echoing_the_credential,
        answer_401_echoing_the_credential,
        answer_400_echoing_the_credential,
        answer_429_for_an_hour,
    ],
)
def test_credentials_never_reach_logs_or_error_messages(credentials, handler, caplog):
    caplog.set_level(logging.DEBUG)
    basic_header_value = base64.b64encode(f"me@example.test:{SECRET}".encode()).decode()

    with pytest.raises(ConnectorError) as caught:
        make_client(handler, **credentials).get_json("rest/api/2/myself")

    texts = [str(caught.value)] + [record.getMessage() for record in caplog.records]
    assert any("GET /rest/api/2/myself" in text for text in texts)
    for text in texts:
        assert SECRET not in text
        assert basic_header_value not in text


def test_query_string_values_stay_out_of_our_logs_and_errors(caplog):
    caplog.set_level(logging.DEBUG, logger="connectors.client")

    with pytest.raises(Unavailable) as caught:
        make_client(answer_500).get_json("v1/UserStories", params={"access_token": SECRET})

    records = [record.getMessage() for record in caplog.records if record.name == "connectors.client"]
    assert len(records) == 9  # 5 attempts, 4 retry warnings
    assert all(SECRET not in text for text in [*records, str(caught.value)])


def test_logs_one_debug_line_per_request_and_a_warning_per_retry(caplog):
    caplog.set_level(logging.DEBUG, logger="connectors.client")
    script = Script(status(503), ok())

    make_client(script).get_json("rest/api/2/search", params={"jql": "project = SECRET"})

    records = [record for record in caplog.records if record.name == "connectors.client"]
    debug = [record.getMessage() for record in records if record.levelno == logging.DEBUG]
    warnings = [record.getMessage() for record in records if record.levelno == logging.WARNING]
    assert len(debug) == 2
    assert debug[0].startswith("GET /rest/api/2/search -> 503 in ")
    assert debug[0].endswith(" ms")
    assert debug[1].startswith("GET /rest/api/2/search -> 200 in ")
    assert warnings == ["GET /rest/api/2/search: 503 Service Unavailable; attempt 2 of 5 in 0.25 s"]
    assert all("SECRET" not in record.getMessage() for record in records)


# JSON helpers


@pytest.mark.parametrize(
    ("call", "method"),
    [
        (lambda client: client.post_json("issues", {"title": "t"}), "POST"),
        (lambda client: client.put_json("issues/1", {"title": "t"}), "PUT"),
        (lambda client: client.patch_json("issues/1", {"title": "t"}), "PATCH"),
    ],
)
def test_json_writers_send_the_body_and_return_the_answer(call, method):
    script = Script((201, {}, {"id": "10001"}))

    assert call(make_client(script)) == {"id": "10001"}
    assert script.requests[0].method == method
    assert json.loads(script.requests[0].content) == {"title": "t"}


@pytest.mark.parametrize(
    "answer", [(204, {}, b""), (200, {}, b""), (200, {}, b"  \n")], ids=["204", "empty", "blank"]
)
def test_no_body_reads_as_none(answer):
    assert make_client(Script(answer)).put_json("issues/1", {"title": "t"}) is None


def test_a_body_that_is_not_json_raises_bad_payload_naming_path_and_content_type():
    login_page = (200, {"Content-Type": "text/html; charset=utf-8"}, "<html>Log in</html>")

    with pytest.raises(BadPayload, match=r"GET /rest/api/2/myself: expected JSON, got text/html"):
        make_client(Script(login_page)).get_json("rest/api/2/myself")


# Paging


def test_paginate_token_get_ends_when_the_token_key_is_absent():
    # Jira Cloud omits nextPageToken on the last page instead of sending null.
    script = Script(
        ok({"issues": [1, 2], "nextPageToken": "t2", "isLast": False}),
        ok({"issues": [3], "nextPageToken": "t3", "isLast": False}),
        ok({"issues": [4]}),
    )

    pages = list(make_client(script).paginate_token("rest/api/3/search/jql", params={"jql": "project = A"}))

    assert pages == [[1, 2], [3], [4]]
    assert [request.url.params.get("nextPageToken") for request in script.requests] == [None, "t2", "t3"]
    assert all(request.url.params["jql"] == "project = A" for request in script.requests)


def test_paginate_token_post_puts_the_token_in_the_body():
    script = Script(ok({"issues": [1], "nextPageToken": "t2"}), ok({"issues": [2], "nextPageToken": None}))

    pages = list(
        make_client(script).paginate_token(
            "rest/api/3/search/jql", method="POST", json={"jql": "x", "fields": ["*all"]}
        )
    )

    assert pages == [[1], [2]]
    assert [json.loads(request.content) for request in script.requests] == [
        {"jql": "x", "fields": ["*all"]},
        {"jql": "x", "fields": ["*all"], "nextPageToken": "t2"},
    ]


def test_paginate_token_post_is_retried_as_a_read():
    script = Script(status(500), ok({"issues": [1]}))

    assert list(make_client(script).paginate_token("search", method="POST", json={"jql": "x"})) == [[1]]
    assert script.calls == 2


def test_paginate_token_stops_on_is_last_even_with_a_token():
    script = Script(ok({"issues": [1], "nextPageToken": "stale", "isLast": True}))

    assert list(make_client(script).paginate_token("search")) == [[1]]
    assert script.calls == 1


def test_paginate_token_with_other_field_names():
    script = Script(
        ok({"issueChangeLogs": [{"issueId": "1"}], "nextPageToken": "n"}),
        ok({"issueChangeLogs": [{"issueId": "2"}]}),
    )

    pages = make_client(script).paginate_token(
        "rest/api/3/changelog/bulkfetch",
        method="POST",
        json={"issueIdsOrKeys": ["A-1"]},
        items_field="issueChangeLogs",
    )

    assert [page[0]["issueId"] for page in pages] == ["1", "2"]


def test_paginate_offset_walks_to_the_total():
    script = Script(
        ok({"startAt": 0, "total": 5, "issues": [1, 2]}),
        ok({"startAt": 2, "total": 5, "issues": [3, 4]}),
        ok({"startAt": 4, "total": 5, "issues": [5]}),
    )

    pages = list(make_client(script).paginate_offset("rest/api/2/search", params={"jql": "x"}, page_size=2))

    assert pages == [[1, 2], [3, 4], [5]]
    assert [request.url.params["startAt"] for request in script.requests] == ["0", "2", "4"]
    assert all(request.url.params["maxResults"] == "2" for request in script.requests)


def test_paginate_offset_advances_by_what_the_server_served_when_it_caps_the_size():
    script = Script(
        ok({"maxResults": 2, "total": 3, "issues": [1, 2]}),
        ok({"maxResults": 2, "total": 3, "issues": [3]}),
    )

    assert list(make_client(script).paginate_offset("search", page_size=100)) == [[1, 2], [3]]
    assert [request.url.params["startAt"] for request in script.requests] == ["0", "2"]


@pytest.mark.parametrize(
    ("answers", "expected_pages"),
    [
        ([ok({"values": [1, 2]}), ok({"values": []})], [[1, 2], []]),
        ([ok({"values": [1, 2]}), ok({"values": [3]})], [[1, 2], [3]]),
        ([ok({"values": [1, 2], "total": 9}), ok({"values": [], "total": 9})], [[1, 2], []]),
    ],
    ids=["empty-page", "short-page-without-total", "empty-page-before-total"],
)
def test_paginate_offset_stops_on_an_empty_or_short_page(answers, expected_pages):
    script = Script(*answers, status(500))  # a third request would fail the test

    pages = list(make_client(script).paginate_offset("changelog", page_size=2, items_field="values"))

    assert pages == expected_pages
    assert script.calls == 2


def test_paginate_link_follows_the_next_link_verbatim():
    script = Script(
        ok(
            [1, 2], {"Link": '<https://api.example.test/repositories/7/issues?page=2&per_page=2>; rel="next"'}
        ),
        ok(
            [3, 4],
            {
                "Link": '<https://api.example.test/repositories/7/issues?page=3&per_page=2>; rel="next", '
                '<https://api.example.test/repositories/7/issues?page=1&per_page=2>; rel="first"'
            },
        ),
        ok([5], {"Link": '<https://api.example.test/repositories/7/issues?page=1&per_page=2>; rel="first"'}),
    )

    pages = list(
        make_client(script).paginate_link("repos/o/r/issues", params={"state": "all", "per_page": 2})
    )

    assert pages == [[1, 2], [3, 4], [5]]
    assert [str(request.url) for request in script.requests] == [
        f"{BASE_URL}/repos/o/r/issues?state=all&per_page=2",
        "https://api.example.test/repositories/7/issues?page=2&per_page=2",
        "https://api.example.test/repositories/7/issues?page=3&per_page=2",
    ]


def test_paginate_link_reads_a_list_under_a_field():
    script = Script(ok({"total_count": 1, "items": [{"number": 1}]}))

    assert list(make_client(script).paginate_link("search/issues", items_field="items")) == [[{"number": 1}]]


def test_paginate_next_url_follows_records_urls_from_the_host_root():
    script = Script(
        ok({"done": False, "nextRecordsUrl": "/services/data/v60.0/query/01gRO-2000", "records": [1, 2]}),
        ok({"done": False, "nextRecordsUrl": "/services/data/v60.0/query/01gRO-4000", "records": [3]}),
        ok({"done": True, "records": [4]}),
    )

    pages = list(
        make_client(script, base_url="https://sf.example.test/prefix").paginate_next_url(
            "services/data/v60.0/query", params={"q": "SELECT Id FROM Case"}
        )
    )

    assert pages == [[1, 2], [3], [4]]
    assert [str(request.url) for request in script.requests] == [
        "https://sf.example.test/prefix/services/data/v60.0/query?q=SELECT+Id+FROM+Case",
        "https://sf.example.test/services/data/v60.0/query/01gRO-2000",
        "https://sf.example.test/services/data/v60.0/query/01gRO-4000",
    ]


def test_paginate_next_url_rejects_a_page_not_done_without_a_next_url():
    script = Script(ok({"done": False, "records": [1]}))

    with pytest.raises(BadPayload, match="done is false but nextRecordsUrl is missing"):
        list(make_client(script).paginate_next_url("query"))


ENDLESS = {
    "token": (
        lambda client, cap: client.paginate_token("search", max_pages=cap),
        ok({"issues": [1], "nextPageToken": "more"}),
    ),
    "offset": (
        lambda client, cap: client.paginate_offset("search", page_size=1, max_pages=cap),
        ok({"issues": [1], "total": 1000}),
    ),
    "link": (
        lambda client, cap: client.paginate_link("issues", max_pages=cap),
        ok([1], {"Link": f'<{BASE_URL}/issues?page=next>; rel="next"'}),
    ),
    "next-url": (
        lambda client, cap: client.paginate_next_url("query", max_pages=cap),
        ok({"done": False, "nextRecordsUrl": "/query/next", "records": [1]}),
    ),
}


@pytest.mark.parametrize("kind", ENDLESS)
def test_paging_past_max_pages_raises_instead_of_truncating(kind):
    paginate, endless_page = ENDLESS[kind]
    script = Script(endless_page)
    pages = []

    with pytest.raises(PageLimitExceeded, match="more than 3 pages"):
        pages.extend(paginate(make_client(script), 3))

    assert len(pages) == 3
    assert script.calls == 3


def test_exactly_max_pages_is_not_an_error():
    script = Script(
        ok({"issues": [1], "nextPageToken": "a"}),
        ok({"issues": [2], "nextPageToken": "b"}),
        ok({"issues": [3]}),
    )

    assert list(make_client(script).paginate_token("search", max_pages=3)) == [[1], [2], [3]]


@pytest.mark.parametrize(
    "body", [{"total": 0}, {"issues": None}, []], ids=["missing", "null", "not-an-object"]
)
def test_a_page_without_its_list_raises_bad_payload(body):
    with pytest.raises(BadPayload, match="expected a list in 'issues'"):
        list(make_client(Script(ok(body))).paginate_offset("search"))


# Rate limiter


class FakeClock:
    def __init__(self, advance_on_sleep: bool):
        self.now = 1000.0
        self.sleeps: list[float] = []
        self.advance_on_sleep = advance_on_sleep

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        if self.advance_on_sleep:
            self.now += seconds


def test_rate_limiter_spaces_requests_after_the_burst():
    clock = FakeClock(advance_on_sleep=True)
    limiter = RateLimiter(rate=2, burst=2, clock=clock, sleep=clock.sleep)

    for _ in range(5):
        limiter.acquire()

    assert clock.sleeps == [0.5, 0.5, 0.5]  # two at once, then one every half second


def test_rate_limiter_refills_while_idle():
    clock = FakeClock(advance_on_sleep=True)
    limiter = RateLimiter(rate=2, burst=1, clock=clock, sleep=clock.sleep)

    limiter.acquire()
    clock.now += 10  # idle for long: the bucket fills only up to the burst
    limiter.acquire()
    limiter.acquire()

    assert clock.sleeps == [0.5]


def test_rate_limiter_queues_concurrent_callers():
    clock = FakeClock(advance_on_sleep=False)
    limiter = RateLimiter(rate=4, burst=1, clock=clock, sleep=clock.sleep)
    threads = [threading.Thread(target=limiter.acquire) for _ in range(5)]

    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(clock.sleeps) == [0.25, 0.5, 0.75, 1.0]


def test_client_acquires_from_the_rate_limiter_before_every_attempt():
    clock = FakeClock(advance_on_sleep=True)
    limiter = RateLimiter(rate=10, burst=1, clock=clock, sleep=clock.sleep)
    script = Script(status(502), status(502), ok())

    make_client(script, rate_limiter=limiter).get_json("x")

    assert script.calls == 3
    assert clock.sleeps == pytest.approx([0.1, 0.1])


def test_rate_limiter_rejects_a_nonsense_rate():
    with pytest.raises(ValueError, match="rate must be positive"):
        RateLimiter(rate=0)


# Lifecycle


def test_context_manager_closes_the_client():
    with make_client(Script(ok())) as client:
        client.get_json("x")

    with pytest.raises(RuntimeError, match="closed"):
        client.get_json("x")


def test_a_query_string_token_echoed_by_the_tool_is_scrubbed_from_errors():
    token = "tp-SECRET-token/42"

    def echo(request):
        return httpx.Response(400, json={"Status": "BadRequest", "Message": f"bad request {request.url}"})

    client = HttpClient("https://tp.example.test/", transport=httpx.MockTransport(echo))
    with pytest.raises(BadRequest) as raised:
        client.get_json("api/v1/UserStories", params={"access_token": token})
    message = str(raised.value)
    assert "bad request" in message  # Targetprocess's Message is read
    assert token not in message and "tp-SECRET-token%2F42" not in message


def test_an_oauth_error_description_is_part_of_the_message():
    def refuse(request):
        return httpx.Response(
            400, json={"error": "invalid_client", "error_description": "client secret is wrong"}
        )

    client = HttpClient("https://login.example.test/", transport=httpx.MockTransport(refuse))
    with pytest.raises(BadRequest, match=r"invalid_client.*client secret is wrong"):
        client.post_json("services/oauth2/token", {})
