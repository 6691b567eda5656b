"""The fake Zendesk speaks the real API's shapes, paging, auth, export rules, writes and faults."""

import base64
import re
import time
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from connectors.fakes.wsgi import serve
from connectors.fakes.zendesk import DEMO_EMAIL, DEMO_TOKEN, JIRA_KEY_FIELD_ID, FakeZendesk

START = datetime(2026, 3, 1, 10, 30, tzinfo=UTC)
ZENDESK_TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z")
EXPORT = "/api/v2/incremental/tickets/cursor.json"


class Clock:
    def __init__(self, instant: datetime):
        self.instant = instant

    def __call__(self) -> datetime:
        return self.instant

    def advance(self, **delta: float) -> None:
        self.instant += timedelta(**delta)


@pytest.fixture
def clock():
    return Clock(START)


@pytest.fixture
def fake(clock):
    return FakeZendesk(now=clock)


def client_for(fake, email=DEMO_EMAIL, token=DEMO_TOKEN) -> httpx.Client:
    return httpx.Client(
        transport=httpx.WSGITransport(app=fake),
        base_url="https://vsm-demo.zendesk.test",
        auth=(f"{email}/token", token),
    )


@pytest.fixture
def client(fake):
    with client_for(fake) as client:
        yield client


def epoch(instant: datetime) -> int:
    return int(instant.timestamp())


def export_all(client, start_time: int, **params) -> tuple[list[dict], list[dict]]:
    """Follow after_cursor to end_of_stream; the tickets and the page bodies."""
    pages, tickets = [], []
    response = client.get(EXPORT, params={"start_time": start_time, **params})
    for _ in range(100):
        assert response.status_code == 200, response.text
        body = response.json()
        pages.append(body)
        tickets.extend(body["tickets"])
        if body["end_of_stream"]:
            return tickets, pages
        response = client.get(EXPORT, params={"cursor": body["after_cursor"], **params})
    raise AssertionError("the export never ended")


def assert_zendesk_error(response: httpx.Response, status: int, error: str) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"] == error
    return body


# Auth ------------------------------------------------------------------------------------------------


def test_api_token_auth_and_me(fake, client):
    me = client.get("/api/v2/users/me.json")
    assert me.status_code == 200
    user = me.json()["user"]
    assert (user["email"], user["name"], user["role"]) == (DEMO_EMAIL, "VSM Demo Agent", "admin")
    assert ZENDESK_TIMESTAMP.fullmatch(user["created_at"])
    assert fake.credentials() == {"email": DEMO_EMAIL, "api_token": DEMO_TOKEN}


@pytest.mark.parametrize(
    "auth",
    [
        (f"{DEMO_EMAIL}/token", "wrong"),
        (DEMO_EMAIL, DEMO_TOKEN),  # a password login is not an API token login
        ("someone@else.test/token", DEMO_TOKEN),
        None,
    ],
)
def test_anything_but_the_token_is_a_401(fake, auth):
    with httpx.Client(
        transport=httpx.WSGITransport(app=fake), base_url="https://z.test", auth=auth
    ) as client:
        response = client.get("/api/v2/users/me.json")
    assert response.status_code == 401
    assert response.json() == {"error": "Couldn't authenticate you"}


def test_an_end_user_cannot_use_the_api(fake):
    fake.add_user("Customer", "c@acme.test", token="secret-token")
    with client_for(fake, "c@acme.test", "secret-token") as client:
        assert client.get("/api/v2/users/me.json").status_code == 401


# Incremental export ----------------------------------------------------------------------------------


def test_export_shape_and_side_loads(fake, client, clock):
    acme = fake.add_organization("Acme")
    ada = fake.add_user("Ada", "ada@acme.test", organization=acme.id)
    ticket_id = fake.add_ticket(
        "Printer on fire",
        type="incident",
        priority="high",
        requester=ada.id,
        tags=["fire"],
        jira_key="OPS-1",
        created=START - timedelta(hours=1),
    )
    response = client.get(EXPORT, params={"start_time": 0, "include": "users,organizations,metric_sets"})
    body = response.json()
    assert set(body) == {
        "tickets",
        "after_url",
        "after_cursor",
        "before_url",
        "before_cursor",
        "end_of_stream",
        "users",
        "organizations",
        "metric_sets",
    }
    (ticket,) = body["tickets"]
    assert ticket["id"] == ticket_id and ticket["url"].endswith(f"/api/v2/tickets/{ticket_id}.json")
    assert (ticket["status"], ticket["type"], ticket["priority"]) == ("new", "incident", "high")
    assert ticket["created_at"] == "2026-03-01T09:30:00Z" == ticket["updated_at"]
    assert ticket["generated_timestamp"] == epoch(START - timedelta(hours=1))
    assert ticket["custom_fields"] == [{"id": JIRA_KEY_FIELD_ID, "value": "OPS-1"}] == ticket["fields"]
    assert (ticket["requester_id"], ticket["organization_id"], ticket["tags"]) == (ada.id, acme.id, ["fire"])
    assert body["end_of_stream"] is True
    assert body["after_url"].startswith(
        "https://vsm-demo.zendesk.test/api/v2/incremental/tickets/cursor.json?"
    )
    assert [user["id"] for user in body["users"]] == [ada.id]
    assert body["organizations"][0]["name"] == "Acme"
    assert body["metric_sets"][0]["status_updated_at"] == ticket["created_at"]


def test_cursor_paging_neither_skips_nor_repeats_tickets_sharing_a_timestamp(fake, client):
    same = START - timedelta(hours=3)
    ids = [fake.add_ticket(f"Ticket {n}", created=same) for n in range(23)]
    tickets, pages = export_all(client, epoch(same), per_page=5)
    assert [ticket["id"] for ticket in tickets] == ids
    assert [len(page["tickets"]) for page in pages] == [5, 5, 5, 5, 3]
    assert [page["end_of_stream"] for page in pages] == [False] * 4 + [True]


def test_an_exact_multiple_of_the_page_size_ends_without_an_empty_page(fake, client):
    for n in range(10):
        fake.add_ticket(f"Ticket {n}", created=START - timedelta(hours=1))
    _, pages = export_all(client, 0, per_page=5)
    assert [len(page["tickets"]) for page in pages] == [5, 5]


def test_start_time_is_inclusive_and_in_seconds(fake, client):
    old = fake.add_ticket("Old", created=START - timedelta(days=2))
    new = fake.add_ticket("New", created=START - timedelta(hours=2))
    boundary = epoch(START - timedelta(hours=2))
    assert [t["id"] for t in export_all(client, boundary)[0]] == [new]
    assert [t["id"] for t in export_all(client, boundary + 1)[0]] == []
    assert [t["id"] for t in export_all(client, 0)[0]] == [old, new]


def test_the_export_leaves_out_the_last_minute_and_refuses_a_too_recent_start_time(fake, client, clock):
    ticket_id = fake.add_ticket("Just now")
    assert export_all(client, 0)[0] == []
    response = client.get(EXPORT, params={"start_time": epoch(START) - 30})
    body = assert_zendesk_error(response, 400, "InvalidValue")
    assert "Too recent start_time" in body["description"]
    assert_zendesk_error(client.get(EXPORT, params={"start_time": epoch(START) + 3600}), 400, "InvalidValue")
    clock.advance(seconds=61)
    assert [t["id"] for t in export_all(client, 0)[0]] == [ticket_id]


def test_a_cursor_sees_later_changes_once_the_minute_has_passed(fake, client, clock):
    first = fake.add_ticket("First", created=START - timedelta(hours=1))
    body = client.get(EXPORT, params={"start_time": 0}).json()
    assert [t["id"] for t in body["tickets"]] == [first] and body["end_of_stream"]
    clock.advance(minutes=5)
    fake.change_status(first, "open")
    clock.advance(minutes=2)
    again = client.get(EXPORT, params={"cursor": body["after_cursor"]}).json()
    assert [(t["id"], t["status"]) for t in again["tickets"]] == [(first, "open")]


def test_export_parameter_errors(client):
    assert_zendesk_error(client.get(EXPORT), 400, "InvalidValue")
    assert_zendesk_error(client.get(EXPORT, params={"start_time": "yesterday"}), 400, "InvalidValue")
    assert_zendesk_error(client.get(EXPORT, params={"cursor": "garbage!"}), 400, "InvalidPaginationParameter")
    assert_zendesk_error(client.get(EXPORT, params={"start_time": 0, "per_page": 0}), 400, "InvalidValue")


def test_per_page_is_capped_at_a_thousand(fake, client):
    for n in range(3):
        fake.add_ticket(f"T{n}", created=START - timedelta(hours=1))
    body = client.get(EXPORT, params={"start_time": 0, "per_page": 5000}).json()
    assert "per_page=1000" in body["after_url"]


def test_deleted_tickets_stay_in_the_export_unless_excluded(fake, client, clock):
    kept = fake.add_ticket("Kept", created=START - timedelta(hours=2))
    gone = fake.add_ticket("Gone", created=START - timedelta(hours=2))
    fake.delete(gone, at=START - timedelta(hours=1))
    statuses = {t["id"]: t["status"] for t in export_all(client, 0)[0]}
    assert statuses == {kept: "new", gone: "deleted"}
    assert [t["id"] for t in export_all(client, 0, exclude_deleted="true")[0]] == [kept]
    assert_zendesk_error(client.get(f"/api/v2/tickets/{gone}.json"), 404, "RecordNotFound")
    assert_zendesk_error(client.get(f"/api/v2/tickets/{gone}/audits.json"), 404, "RecordNotFound")


# Audits and comments ---------------------------------------------------------------------------------


def test_audits_hold_create_and_change_events_with_string_values(fake, client):
    agent = fake.add_user("Grace", "grace@vsm.example", role="agent")
    created = START - timedelta(days=1)
    ticket_id = fake.add_ticket(
        "Moving",
        created=created,
        history=[(created + timedelta(hours=1), "new", "open", agent.id)],
    )
    fake.escalate(ticket_id, "PAY-9", at=created + timedelta(hours=2))
    body = client.get(f"/api/v2/tickets/{ticket_id}/audits.json", params={"page[size]": 100}).json()
    assert set(body) == {"audits", "meta", "links"}
    assert body["meta"]["has_more"] is False and body["links"]["next"] is None
    creation, change, escalation = body["audits"]
    assert set(creation) == {"id", "ticket_id", "created_at", "author_id", "metadata", "via", "events"}
    assert {event["type"] for event in creation["events"]} == {"Comment", "Create"}
    assert {"type": "Create", "field_name": "status", "value": "new"}.items() <= next(
        event for event in creation["events"] if event.get("field_name") == "status"
    ).items()
    (status_event,) = change["events"]
    assert (status_event["type"], status_event["field_name"]) == ("Change", "status")
    assert (status_event["previous_value"], status_event["value"]) == ("new", "open")
    assert (change["created_at"], change["author_id"]) == ("2026-02-28T11:30:00Z", agent.id)
    (field_event,) = escalation["events"]
    assert (field_event["field_name"], field_event["value"], field_event["previous_value"]) == (
        str(JIRA_KEY_FIELD_ID),
        "PAY-9",
        None,
    )
    requester_event = next(e for e in creation["events"] if e.get("field_name") == "requester_id")
    assert isinstance(requester_event["value"], str)  # ids are strings in audit events


def test_audits_page_by_cursor_and_by_offset(fake, client):
    created = START - timedelta(days=10)
    history, status = [], "new"
    for step in range(7):
        target = "open" if status != "open" else "pending"
        history.append((created + timedelta(hours=step + 1), status, target))
        status = target
    ticket_id = fake.add_ticket("Busy", created=created, history=history)
    path = f"/api/v2/tickets/{ticket_id}/audits.json"
    seen, params = [], {"page[size]": 3}
    for _ in range(10):
        body = client.get(path, params=params).json()
        seen += [audit["id"] for audit in body["audits"]]
        if not body["meta"]["has_more"]:
            break
        assert body["links"]["next"]
        params = {"page[size]": 3, "page[after]": body["meta"]["after_cursor"]}
    assert len(seen) == len(set(seen)) == 8
    offset = client.get(path, params={"per_page": 5}).json()
    assert (offset["count"], len(offset["audits"]), offset["previous_page"]) == (8, 5, None)
    assert offset["next_page"].endswith("page=2&per_page=5")


def test_comments_list_public_and_private(fake, client):
    ticket_id = fake.add_ticket("Hello", description="Please help", created=START - timedelta(hours=1))
    fake.add_comment(ticket_id, "Internal note", public=False)
    body = client.get(f"/api/v2/tickets/{ticket_id}/comments.json", params={"page[size]": 10}).json()
    assert [(c["body"], c["public"], c["type"]) for c in body["comments"]] == [
        ("Please help", True, "Comment"),
        ("Internal note", False, "Comment"),
    ]
    assert ZENDESK_TIMESTAMP.fullmatch(body["comments"][0]["created_at"])


# Writes ----------------------------------------------------------------------------------------------


def test_update_changes_fields_with_an_audit(fake, client, clock):
    ticket_id = fake.add_ticket("Old", created=START - timedelta(hours=1))
    response = client.put(
        f"/api/v2/tickets/{ticket_id}.json",
        json={
            "ticket": {
                "status": "pending",
                "subject": "New",
                "custom_fields": [{"id": JIRA_KEY_FIELD_ID, "value": "ABC-1"}],
                "comment": {"body": "See https://vsm.example/a/1", "public": False},
            }
        },
    )
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"ticket", "audit"}
    assert (body["ticket"]["status"], body["ticket"]["subject"]) == ("pending", "New")
    assert body["ticket"]["updated_at"] == "2026-03-01T10:30:00Z"
    assert {event["type"] for event in body["audit"]["events"]} == {"Comment", "Change"}
    ticket = fake.tickets[ticket_id]
    assert fake.jira_key(ticket_id) == "ABC-1"
    assert (ticket.comments[-1].body, ticket.comments[-1].public) == ("See https://vsm.example/a/1", False)
    assert fake.writes[-1].method == "PUT"


def test_update_validation_errors(fake, client):
    ticket_id = fake.add_ticket("T", created=START - timedelta(hours=1))
    url = f"/api/v2/tickets/{ticket_id}.json"
    body = assert_zendesk_error(client.put(url, json={"ticket": {"status": "shipped"}}), 422, "RecordInvalid")
    assert body["description"] == "Record validation errors" and "status" in body["details"]
    assert_zendesk_error(client.put(url, json={"nothing": 1}), 400, "InvalidValue")
    assert_zendesk_error(client.put(url, content=b"{not json"), 400, "InvalidValue")
    assert client.put(url, json={"ticket": {"status": "closed"}}).status_code == 200
    body = assert_zendesk_error(client.put(url, json={"ticket": {"status": "open"}}), 422, "RecordInvalid")
    assert "closed prevents ticket update" in str(body["details"])
    assert_zendesk_error(client.put("/api/v2/tickets/999.json", json={"ticket": {}}), 404, "RecordNotFound")


def test_create_and_delete_a_ticket(fake, client):
    response = client.post(
        "/api/v2/tickets.json",
        json={"ticket": {"subject": "New one", "comment": {"body": "Details"}, "type": "task"}},
    )
    assert response.status_code == 201
    ticket = response.json()["ticket"]
    assert (ticket["subject"], ticket["description"], ticket["type"], ticket["status"]) == (
        "New one",
        "Details",
        "task",
        "new",
    )
    assert_zendesk_error(
        client.post("/api/v2/tickets.json", json={"ticket": {"subject": "x"}}), 422, "RecordInvalid"
    )
    assert client.delete(f"/api/v2/tickets/{ticket['id']}.json").status_code == 204
    assert fake.tickets[ticket["id"]].status == "deleted"


def test_show_many_users(fake, client):
    grace = fake.add_user("Grace", "grace@vsm.example", role="agent")
    body = client.get("/api/v2/users/show_many.json", params={"ids": f"{grace.id},999"}).json()
    assert [user["name"] for user in body["users"]] == ["Grace"]
    assert_zendesk_error(client.get("/api/v2/users/show_many.json"), 400, "InvalidValue")


# Faults ----------------------------------------------------------------------------------------------


def test_rate_limit_is_a_429_with_retry_after(fake, client):
    fake.rate_limit(1, retry_after=9)
    response = client.get("/api/v2/users/me.json")
    assert response.status_code == 429
    assert (response.headers["Retry-After"], response.headers["X-Rate-Limit-Remaining"]) == ("9", "0")
    assert response.json()["error"] == "APIRateLimitExceeded"
    assert client.get("/api/v2/users/me.json").status_code == 200


def test_injected_failures_and_slowness(fake, client):
    fake.fail(1, status=503)
    assert_zendesk_error(client.get("/api/v2/users/me.json"), 503, "InternalServerError")
    fake.slow(1, 0.05)
    started = time.perf_counter()
    assert client.get("/api/v2/users/me.json").status_code == 200
    assert time.perf_counter() - started >= 0.05


def test_a_malformed_ticket_renders_broken(fake, client):
    ticket_id = fake.add_ticket("Broken", created=START - timedelta(hours=1))
    fake.malformed(ticket_id)
    (ticket,) = client.get(EXPORT, params={"start_time": 0}).json()["tickets"]
    assert ticket["created_at"] == "not-a-date" and "status" not in ticket
    fake.clear_faults()
    (ticket,) = client.get(EXPORT, params={"start_time": 0}).json()["tickets"]
    assert ticket["status"] == "new"


def test_backdated_history_must_be_in_order(fake):
    with pytest.raises(ValueError, match="time order"):
        fake.add_ticket("Bad", created=START, history=[(START - timedelta(hours=1), "new", "open")])
    with pytest.raises(ValueError, match="aware"):
        fake.add_ticket("Naive", created=datetime(2026, 1, 1))


# Control endpoints -----------------------------------------------------------------------------------


def test_control_endpoints_seed_and_steer_the_fake(fake, client):
    control = httpx.Client(transport=httpx.WSGITransport(app=fake), base_url="http://z.test/_fake")
    org = control.post("/organizations", json={"name": "Acme"}).json()["id"]
    user = control.post("/users", json={"name": "Ada", "email": "ada@acme.test", "organization": org})
    assert user.status_code == 201
    created = control.post(
        "/tickets",
        json={
            "subject": "From control",
            "requester": "ada@acme.test",
            "created": "2026-02-20T09:00:00+00:00",
            "history": [{"at": "2026-02-20T10:00:00+00:00", "from": "new", "to": "open"}],
            "jira_key": "ABC-3",
        },
    )
    assert created.status_code == 201
    ticket_id = created.json()["id"]
    assert fake.tickets[ticket_id].status == "open" and fake.tickets[ticket_id].organization_id == org
    assert control.post(f"/tickets/{ticket_id}/status", json={"to": "solved"}).status_code == 204
    assert control.post(f"/tickets/{ticket_id}/escalate", json={"jira_key": "ABC-4"}).status_code == 204
    assert control.post(f"/tickets/{ticket_id}/comments", json={"body": "hi"}).status_code == 204
    assert (fake.tickets[ticket_id].status, fake.jira_key(ticket_id)) == ("solved", "ABC-4")
    assert control.post("/tickets", json={"description": "no subject"}).status_code == 400
    assert control.post("/tickets", json={"subject": "x", "created": "yesterday"}).status_code == 400

    assert (
        control.post("/faults", json={"rate_limit": {"count": 1}, "malformed": [ticket_id]}).status_code
        == 200
    )
    stats = control.get("/stats").json()
    assert (stats["tickets"], stats["malformed"], stats["faults"]["rate_limit_count"]) == (1, [ticket_id], 1)
    assert client.get("/api/v2/users/me.json").status_code == 429
    assert control.get("/stats").json()["requests"] == {"GET users/me": 1}

    assert control.post("/clock", json={"now": "2030-01-01T00:00:00+00:00"}).status_code == 200
    assert control.post(f"/tickets/{ticket_id}/delete", json={}).status_code == 204
    assert fake.tickets[ticket_id].updated_at == datetime(2030, 1, 1, tzinfo=UTC)
    assert control.post("/reset", json={}).status_code == 200
    assert fake.tickets == {} and control.get("/stats").json()["requests"] == {}
    assert control.post("/reset", json={"bogus": 1}).status_code == 400


def test_served_on_a_real_socket_under_a_prefix(fake):
    fake.add_ticket("Over the wire", created=START - timedelta(hours=1))
    with serve({"/zendesk": fake}) as server:
        token = base64.b64encode(f"{DEMO_EMAIL}/token:{DEMO_TOKEN}".encode()).decode()
        response = httpx.get(
            server.url("/zendesk") + EXPORT,
            params={"start_time": 0},
            headers={"Authorization": f"Basic {token}"},
        )
    assert response.status_code == 200
    body = response.json()
    assert body["tickets"][0]["subject"] == "Over the wire"
    assert body["tickets"][0]["url"].startswith(server.url("/zendesk") + "/api/v2/tickets/")
