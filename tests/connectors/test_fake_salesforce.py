"""The fake Salesforce speaks the real API's shapes: OAuth, SOQL queries with paging, History objects,
sobject writes, its error array, session expiry, rate limits and the fake-only control endpoints."""

import re
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from connectors.fakes.salesforce import (
    DEMO_CLIENT_ID,
    DEMO_CLIENT_SECRET,
    FakeSalesforce,
    parse_soql,
    salesforce_id,
)
from connectors.fakes.wsgi import serve

START = datetime(2026, 3, 1, 10, 30, tzinfo=UTC)
TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.000\+0000")
BASE = "https://acme.my.salesforce.test"
DATA = "/services/data/v62.0"
REQUEST_SOQL = (
    "SELECT Id, Name, Title__c, Status__c, SystemModstamp FROM Feature_Request__c ORDER BY SystemModstamp, Id"
)


class Clock:
    def __init__(self, instant: datetime):
        self.instant = instant

    def __call__(self) -> datetime:
        return self.instant


@pytest.fixture
def clock():
    return Clock(START)


@pytest.fixture
def fake(clock):
    return FakeSalesforce(now=clock)


def log_in(fake, base=BASE) -> httpx.Client:
    """A client holding a fresh session token (use it as a context manager)."""
    transport = httpx.WSGITransport(app=fake)
    with httpx.Client(transport=transport, base_url=base) as login:
        token = login.post(
            "/services/oauth2/token",
            data={"grant_type": "client_credentials", **fake.credentials()},
        ).json()
    return httpx.Client(
        transport=transport, base_url=base, headers={"Authorization": f"Bearer {token['access_token']}"}
    )


@pytest.fixture
def client(fake):
    with log_in(fake) as client:
        yield client


def query(client, soql, **headers) -> httpx.Response:
    return client.get(f"{DATA}/query", params={"q": soql}, headers=headers)


def assert_error(response, status, code) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert isinstance(body, list) and len(body) == 1 and body[0]["errorCode"] == code
    return body[0]["message"]


def query_all(client, soql, **headers) -> list[dict]:
    response = query(client, soql, **headers)
    records = []
    for _ in range(100):
        assert response.status_code == 200, response.text
        page = response.json()
        records += page["records"]
        if page["done"]:
            assert "nextRecordsUrl" not in page
            return records
        response = client.get(page["nextRecordsUrl"])
    raise AssertionError("paging never ended")


# Auth


def test_the_token_response_has_salesforces_shape(fake, clock):
    with httpx.Client(transport=httpx.WSGITransport(app=fake), base_url=BASE) as client:
        response = client.post(
            "/services/oauth2/token",
            data={"grant_type": "client_credentials", **fake.credentials()},
        )
    body = response.json()
    assert response.status_code == 200
    assert set(body) == {
        "access_token",
        "signature",
        "scope",
        "instance_url",
        "id",
        "token_type",
        "issued_at",
    }
    assert body["instance_url"] == BASE and body["token_type"] == "Bearer"
    assert body["issued_at"] == str(int(START.timestamp() * 1000))
    assert body["access_token"].startswith("00D") and "!" in body["access_token"]
    assert fake.writes == []  # asking for a token changes nothing


@pytest.mark.parametrize(
    ("form", "error"),
    [
        (
            {"grant_type": "client_credentials", "client_id": DEMO_CLIENT_ID, "client_secret": "no"},
            "invalid_client",
        ),
        ({"grant_type": "client_credentials", "client_id": "x", "client_secret": "no"}, "invalid_client_id"),
        ({"grant_type": "password", "username": "u", "password": "p"}, "unsupported_grant_type"),
    ],
)
def test_the_token_endpoint_refuses_in_the_oauth_error_shape(fake, form, error):
    with httpx.Client(transport=httpx.WSGITransport(app=fake), base_url=BASE) as client:
        response = client.post("/services/oauth2/token", data=form)
    assert response.status_code == 400
    assert response.json()["error"] == error and response.json()["error_description"]


def test_client_credentials_may_come_as_basic_auth(fake):
    with httpx.Client(transport=httpx.WSGITransport(app=fake), base_url=BASE) as client:
        response = client.post(
            "/services/oauth2/token",
            data={"grant_type": "client_credentials"},
            auth=(DEMO_CLIENT_ID, DEMO_CLIENT_SECRET),
        )
    assert response.status_code == 200


def test_no_token_or_an_expired_one_is_invalid_session_id(fake, client, clock):
    with httpx.Client(transport=httpx.WSGITransport(app=fake), base_url=BASE) as anonymous:
        message = assert_error(anonymous.get(f"{DATA}/limits"), 401, "INVALID_SESSION_ID")
    assert message == "Session expired or invalid"
    assert client.get(f"{DATA}/limits").status_code == 200
    clock.instant += timedelta(hours=2, seconds=1)  # the session timeout
    response = client.get(f"{DATA}/limits")
    assert_error(response, 401, "INVALID_SESSION_ID")
    assert response.headers["www-authenticate"] == "Token"


def test_tokens_expire_on_demand_after_some_requests(fake, client):
    fake.expire_tokens(after=1)
    assert client.get(f"{DATA}/limits").status_code == 200
    assert_error(client.get(f"{DATA}/limits"), 401, "INVALID_SESSION_ID")
    with log_in(fake) as fresh:
        assert fresh.get(f"{DATA}/limits").status_code == 200


def test_the_identity_url_names_the_run_as_user(fake):
    with httpx.Client(transport=httpx.WSGITransport(app=fake), base_url=BASE) as client:
        token = client.post(
            "/services/oauth2/token", data={"grant_type": "client_credentials", **fake.credentials()}
        ).json()
        identity = client.get(
            token["id"], headers={"Authorization": f"Bearer {token['access_token']}"}
        ).json()
    assert identity["display_name"] == "VSM Integration"
    assert identity["user_id"] == fake.default_user


# Query


def test_query_records_carry_attributes_relationships_and_salesforce_timestamps(fake, client):
    key = fake.add_request("Dark mode", account="Acme", amount=5000, deal_breaker=True, linked_item="TP-7")
    bare = fake.add_request("No deal")
    response = query(
        client,
        "SELECT Id, Name, Opportunity__r.Amount, Opportunity__r.StageName, Account__r.Name, Deal_Breaker__c, "
        "Linked_Item__c, CreatedDate, SystemModstamp, CreatedBy.Name FROM Feature_Request__c ORDER BY Name",
    )
    assert response.status_code == 200
    assert re.fullmatch(r"api-usage=\d+/15000", response.headers["sforce-limit-info"])
    body = response.json()
    assert list(body) == ["totalSize", "done", "records"] and body["totalSize"] == 2 and body["done"] is True
    first, second = body["records"]
    record_id = fake.find_id(key)
    assert first["attributes"] == {
        "type": "Feature_Request__c",
        "url": f"{DATA}/sobjects/Feature_Request__c/{record_id}",
    }
    assert first["Name"] == key and first["Opportunity__r"]["Amount"] == 5000.0
    assert first["Opportunity__r"]["StageName"] == "Prospecting"
    assert first["Opportunity__r"]["attributes"]["type"] == "Opportunity"
    assert first["Account__r"]["Name"] == "Acme" and first["CreatedBy"]["Name"] == "VSM Integration"
    assert (first["Deal_Breaker__c"], first["Linked_Item__c"]) == (True, "TP-7")
    assert TIMESTAMP.fullmatch(first["CreatedDate"]) and TIMESTAMP.fullmatch(first["SystemModstamp"])
    assert second["Name"] == bare and second["Opportunity__r"] is None and second["Account__r"] is None


def test_ids_are_18_characters_with_the_case_checksum():
    assert salesforce_id("001", 1) == "001RO0000000001YAA"
    record_id = salesforce_id("a0B", 123456)
    assert len(record_id) == 18 and record_id[:3] == "a0B"


def test_paging_follows_next_records_url_with_the_batch_size_asked_for(clock):
    fake = FakeSalesforce(now=clock)
    keys = [fake.add_request(f"Request {n}", updated=START) for n in range(450)]
    with log_in(fake) as client:
        first = query(
            client,
            REQUEST_SOQL,
            **{"Sforce-Query-Options": "batchSize=200"},
        ).json()
        assert (first["totalSize"], first["done"], len(first["records"])) == (450, False, 200)
        assert re.fullmatch(rf"{DATA}/query/01g\w{{15}}-200", first["nextRecordsUrl"])
        records = query_all(
            client,
            REQUEST_SOQL,
            **{"Sforce-Query-Options": "batchSize=10"},  # below the minimum: 200
        )
    assert [record["Name"] for record in records] == keys
    assert fake.requests["GET query/more"] == 2  # 450 at 200 a page, the first query not followed


def test_a_query_locator_is_a_snapshot_so_changes_while_paging_skip_and_repeat_nothing(clock):
    fake = FakeSalesforce(now=clock, batch_cap=3)
    keys = [fake.add_request(f"Request {n}", updated=START) for n in range(7)]
    with log_in(fake) as client:
        first = query(client, REQUEST_SOQL).json()
        clock.instant += timedelta(minutes=1)
        fake.set_status(keys[0], "Planned")  # moves to the end of the order
        rest = client.get(first["nextRecordsUrl"]).json()
        last = client.get(rest["nextRecordsUrl"]).json()
        assert_error(client.get(f"{DATA}/query/01gRO0000000zzzAAA-3"), 400, "INVALID_QUERY_LOCATOR")
    names = [r["Name"] for page in (first, rest, last) for r in page["records"]]
    assert names == keys and last["done"] is True


def test_the_next_records_url_keeps_the_mount_prefix_on_a_real_socket(clock):
    fake = FakeSalesforce(now=clock, batch_cap=2)
    for n in range(5):
        fake.add_request(f"Request {n}")
    with serve({"/salesforce": fake}) as server, httpx.Client() as client:
        token = client.post(
            server.url("/salesforce") + "/services/oauth2/token",
            data={"grant_type": "client_credentials", **fake.credentials()},
        ).json()
        assert token["instance_url"] == server.url("/salesforce")
        client.headers["Authorization"] = f"Bearer {token['access_token']}"
        page = client.get(
            f"{token['instance_url']}{DATA}/query", params={"q": "SELECT Id FROM Feature_Request__c"}
        ).json()
        assert page["nextRecordsUrl"].startswith(f"/salesforce{DATA}/query/01g")
        second = client.get(server.base_url + page["nextRecordsUrl"])
    assert second.status_code == 200 and len(second.json()["records"]) == 2


def test_where_supports_comparisons_in_lists_nulls_and_parentheses(fake, client):
    first = fake.add_request("One", created=START - timedelta(days=2), fields={"Priority__c": "High"})
    second = fake.add_request("Two", created=START - timedelta(days=1), status="Planned")
    third = fake.add_request("Three", amount=10)

    def names(where, order="Name"):
        return [
            r["Name"]
            for r in query_all(client, f"SELECT Name FROM Feature_Request__c WHERE {where} ORDER BY {order}")  # noqa: S608
        ]

    assert names("SystemModstamp >= 2026-03-01T10:00:00Z") == [third]
    assert names("CreatedDate < 2026-03-01T12:30:00+02:00") == [first, second]  # an offset literal
    assert names("Status__c IN ('planned', 'Delivered')") == [second]  # strings compare without case
    assert names("Opportunity__c != null") == [third]
    assert names("(Priority__c = 'High' AND Status__c = 'New')") == [first]
    assert names("Opportunity__r.Amount >= 10") == [third]
    assert names("Priority__c = null", order="Name DESC") == [third, second]
    limited = query(
        client, "SELECT Name FROM Feature_Request__c ORDER BY CreatedDate DESC NULLS LAST LIMIT 1"
    )
    assert [r["Name"] for r in limited.json()["records"]] == [third]


@pytest.mark.parametrize(
    ("soql", "code", "says"),
    [
        (
            "SELECT Id FROM Case WHERE SystemModstamp >= '2026-01-01T00:00:00Z'",
            "INVALID_FIELD",
            "must be of type dateTime",
        ),
        ("SELECT Id FROM Case WHERE Subject = 5", "INVALID_FIELD", "should be enclosed in quotes"),
        (
            "SELECT Id FROM Case WHERE SystemModstamp >= 2026-01-01T00:00:00.000Z",
            "MALFORMED_QUERY",
            "unexpected token",
        ),
        ("SELECT Id FROM Case WHERE CreatedDate = LAST_N_DAYS:3", "MALFORMED_QUERY", "LAST_N_DAYS"),
        ("SELECT Id FROM Case WHERE Status = 'New' OR Status = 'Closed'", "MALFORMED_QUERY", "'OR'"),
        ("SELECT Id FROM Case WHERE Subject LIKE 'x%'", "MALFORMED_QUERY", "'LIKE'"),
        ("SELECT Id, (SELECT Id FROM Histories) FROM Case", "MALFORMED_QUERY", "unexpected token"),
        ("SELECT Id Case", "MALFORMED_QUERY", "unexpected token"),
        ("SELECT Id FROM Case ORDER BY", "MALFORMED_QUERY", "unexpected token"),
        ("SELECT Nope__c FROM Case", "INVALID_FIELD", "No such column 'Nope__c' on entity 'Case'"),
        ("SELECT Nope__r.Name FROM Case", "INVALID_FIELD", "Didn't understand relationship 'Nope__r'"),
        ("SELECT Id FROM Nope__c", "INVALID_TYPE", "sObject type 'Nope__c' is not supported"),
    ],
)
def test_unsupported_or_wrong_soql_is_a_400_in_salesforces_error_array(client, soql, code, says):
    message = assert_error(query(client, soql), 400, code)
    assert says in message and "ERROR at Row:1:Column:" in message


def test_the_parser_reads_the_subset():
    parsed = parse_soql(
        "select Id, Account__r.Name from Feature_Request__c where SystemModstamp >= 2026-01-01T00:00:00Z "
        "and Name in ('FR-1', 'FR-2') order by SystemModstamp, Id desc nulls last limit 5"
    )
    assert [name for name, _ in parsed.fields] == ["Id", "Account__r.Name"]
    assert [(c.path, c.operator, len(c.values)) for c in parsed.conditions] == [
        ("SystemModstamp", ">=", 1),
        ("Name", "in", 2),
    ]
    assert [(path, descending, nulls_last) for path, descending, nulls_last, _ in parsed.order_by] == [
        ("SystemModstamp", False, None),
        ("Id", True, True),
    ]
    assert parsed.limit == 5


def test_history_objects_hold_status_changes_and_creation(fake, client):
    start = START - timedelta(days=3)
    key = fake.add_request(
        "Tracked", created=start, history=[(start + timedelta(hours=1), "New", "Planned", "Pat Product")]
    )
    case = fake.add_case("Case", created=start, history=[(start + timedelta(hours=2), "New", "Closed")])
    rows = query_all(
        client,
        "SELECT ParentId, Field, OldValue, NewValue, CreatedDate, CreatedBy.Name "
        "FROM Feature_Request__History ORDER BY CreatedDate, Id",
    )
    assert [(r["Field"], r["OldValue"], r["NewValue"], r["CreatedBy"]["Name"]) for r in rows] == [
        ("created", None, None, "VSM Integration"),
        ("Status__c", "New", "Planned", "Pat Product"),
    ]
    assert (
        rows[1]["ParentId"] == fake.find_id(key) and rows[1]["CreatedDate"] == "2026-02-26T11:30:00.000+0000"
    )
    case_rows = query_all(client, "SELECT CaseId, NewValue FROM CaseHistory WHERE Field = 'Status'")
    assert case_rows[0]["CaseId"] == fake.find_id(case) and case_rows[0]["NewValue"] == "Closed"
    assert fake.record(case)["ClosedDate"] == start + timedelta(hours=2)


# Writes


def test_create_get_and_update_an_sobject(fake, client, clock):
    account = fake.add_account("Globex")
    created = client.post(
        f"{DATA}/sobjects/Feature_Request__c/", json={"Title__c": "New one", "Account__c": account}
    )
    assert created.status_code == 201
    body = created.json()
    assert body["success"] is True and body["errors"] == [] and len(body["id"]) == 18
    got = client.get(f"{DATA}/sobjects/Feature_Request__c/{body['id']}").json()
    assert (got["Name"], got["Status__c"], got["Account__c"]) == ("FR-000001", "New", account)

    clock.instant += timedelta(minutes=5)
    updated = client.patch(f"{DATA}/sobjects/Feature_Request__c/{body['id']}", json={"Status__c": "Planned"})
    assert updated.status_code == 204 and updated.content == b""
    stored = fake.record("FR-000001")
    assert stored["Status__c"] == "Planned" and stored["SystemModstamp"] == clock.instant
    assert [w.method for w in fake.writes] == ["POST", "PATCH"]
    assert [row["NewValue"] for row in fake.history_of("FR-000001")] == [None, "Planned"]


@pytest.mark.parametrize(
    ("body", "code", "fields"),
    [
        ({"Nope__c": 1}, "INVALID_FIELD", []),
        (
            {"Name": "FR-9", "SystemModstamp": "2026-01-01T00:00:00Z"},
            "INVALID_FIELD_FOR_INSERT_UPDATE",
            ["Name", "SystemModstamp"],
        ),
        ({"Status__c": "Shipped"}, "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST", ["Status__c"]),
        ({"Account__c": "001RO000000zzzzAAA"}, "FIELD_INTEGRITY_EXCEPTION", ["Account__c"]),
    ],
)
def test_writes_salesforce_refuses_name_the_fields(client, body, code, fields):
    response = client.post(f"{DATA}/sobjects/Feature_Request__c/", json=body)
    assert_error(response, 400, code)
    assert response.json()[0]["fields"] == fields


def test_updating_a_missing_record_is_not_found(client):
    response = client.patch(f"{DATA}/sobjects/Case/500RO0000000zzzAAA", json={"Status": "Closed"})
    assert_error(response, 404, "NOT_FOUND")


# Faults and limits


def test_rate_limit_is_request_limit_exceeded_without_retry_after(fake, client):
    fake.rate_limit(1)
    response = client.get(f"{DATA}/limits")
    message = assert_error(response, 403, "REQUEST_LIMIT_EXCEEDED")
    assert message == "TotalRequests Limit exceeded." and "retry-after" not in response.headers
    assert client.get(f"{DATA}/limits").status_code == 200


def test_the_daily_allocation_runs_out(clock):
    fake = FakeSalesforce(now=clock, daily_limit=2)
    with log_in(fake) as client:
        assert client.get(f"{DATA}/limits").json()["DailyApiRequests"] == {"Max": 2, "Remaining": 1}
        assert client.get(f"{DATA}/limits").status_code == 200
        assert_error(client.get(f"{DATA}/limits"), 403, "REQUEST_LIMIT_EXCEEDED")


def test_unavailable_is_a_503_with_retry_after_and_fail_a_500(fake, client):
    fake.unavailable(1, retry_after=7)
    response = client.get(f"{DATA}/limits")
    assert_error(response, 503, "SERVER_UNAVAILABLE")
    assert response.headers["retry-after"] == "7"
    fake.clear_faults()
    fake.fail(1)
    assert_error(client.get(f"{DATA}/limits"), 500, "UNKNOWN_EXCEPTION")


def test_a_malformed_record_has_unreadable_dates(fake, client):
    key = fake.add_request("Broken")
    fake.malformed(key)
    (record,) = query(client, "SELECT Name, CreatedDate, SystemModstamp FROM Feature_Request__c").json()[
        "records"
    ]
    assert record["Name"] == key and not TIMESTAMP.fullmatch(record["CreatedDate"])


def test_unknown_paths_answer_salesforces_not_found(client):
    assert_error(client.get("/services/data/v62.0/nothing"), 404, "NOT_FOUND")


# Control endpoints


def test_control_endpoints_seed_fault_and_report(fake, clock):
    with httpx.Client(transport=httpx.WSGITransport(app=fake), base_url=BASE) as control:
        assert control.post("/_fake/reset", json={"batch_cap": 2, "daily_limit": 100}).status_code == 200
        assert control.post("/_fake/clock", json={"now": "2026-04-01T08:00:00+00:00"}).status_code == 200
        account = control.post("/_fake/accounts", json={"name": "Globex"}).json()["id"]
        opportunity = control.post(
            "/_fake/opportunities", json={"name": "Big deal", "amount": 5000, "account": account}
        ).json()["id"]
        request = control.post(
            "/_fake/requests",
            json={
                "title": "SSO",
                "created": "2026-03-01T08:00:00+00:00",
                "opportunity": opportunity,
                "deal_breaker": True,
                "history": [
                    {"at": "2026-03-02T08:00:00+00:00", "from": "New", "to": "Planned", "author": "Pat"}
                ],
            },
        )
        assert request.status_code == 201 and request.json()["key"] == "FR-000001"
        case = control.post("/_fake/cases", json={"subject": "Help", "request": "FR-000001"})
        assert case.json()["key"] == "00001001"
        assert control.post("/_fake/records/FR-000001/status", json={"to": "Delivered"}).status_code == 204
        assert (
            control.post("/_fake/records/00001001/edit", json={"fields": {"Priority": "High"}}).status_code
            == 204
        )
        faults = control.post(
            "/_fake/faults",
            json={
                "rate_limit": {"count": 1},
                "unavailable": {"count": 2, "retry_after": 3},
                "malformed": ["FR-000001"],
            },
        ).json()
        assert (faults["rate_limit_count"], faults["failure_count"], faults["failure_status"]) == (1, 2, 503)
        assert control.post("/_fake/tokens/expire", json={"after": 0}).status_code == 204
        stats = control.get("/_fake/stats").json()
        bad = control.post("/_fake/requests", json={"status": "New"})
        unknown_reset = control.post("/_fake/reset", json={"flavour": "cloud"})
    stored = fake.record("FR-000001")
    assert stored["Status__c"] == "Delivered" and stored["LastModifiedDate"] == datetime(
        2026, 4, 1, 8, tzinfo=UTC
    )
    assert stored["Deal_Breaker__c"] is True and stored["Opportunity__c"] == opportunity
    assert fake.record("00001001")["Priority"] == "High"
    assert [row["CreatedById"] for row in fake.history_of("FR-000001")][1] != fake.default_user  # Pat
    assert stats["records"]["Feature_Request__c"] == 1 and stats["malformed"] == ["FR-000001"]
    assert (fake.batch_cap, fake.daily_limit) == (2, 100)
    assert bad.status_code == 400 and bad.json()[0]["errorCode"] == "JSON_PARSER_ERROR"
    assert unknown_reset.status_code == 400


def test_reset_can_rename_the_request_object(fake, client):
    fake.reset(request_object="Customer_Request__c")
    fake.add_request("Renamed")
    with log_in(fake) as fresh:
        rows = query_all(fresh, "SELECT Id FROM Customer_Request__History WHERE Field = 'created'")
        assert len(rows) == 1
        assert_error(query(fresh, "SELECT Id FROM Feature_Request__c"), 400, "INVALID_TYPE")
    with pytest.raises(ValueError, match="__c"):
        fake.reset(request_object="Requests")
