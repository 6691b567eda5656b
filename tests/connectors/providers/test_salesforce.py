"""The Salesforce provider against the fake Salesforce, over httpx's WSGI transport."""

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import httpx
import pytest

import connectors.providers.salesforce  # noqa: F401 (registers the provider)
from connectors.base import ItemRef, ScopeSpec
from connectors.exceptions import AuthError, BadRequest, NotFound, RateLimited
from connectors.fakes.salesforce import FakeSalesforce
from connectors.ingest import scope_sync
from connectors.models import FieldMapping, Scope, SyncError, ToolConnection, TypeMapping
from connectors.selectors import connector_instance
from tests.factories import ProductFactory, map_types
from vsm.choices import FlowState, LinkKind
from vsm.models import Artifact, ArtifactLink

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
REQUEST_STATES = {
    "New": FlowState.NEW,
    "Under Review": FlowState.WAITING,
    "Planned": FlowState.WAITING,
    "In Development": FlowState.ACTIVE,
    "Delivered": FlowState.DONE,
    "Declined": FlowState.CANCELED,
}
CASE_STATES = {
    "New": FlowState.NEW,
    "Working": FlowState.ACTIVE,
    "Escalated": FlowState.WAITING,
    "Closed": FlowState.DONE,
}


class Clock:
    def __init__(self, now: datetime):
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@dataclass
class SalesforceWorld:
    fake: FakeSalesforce
    clock: Clock
    connection: ToolConnection
    requests: Scope
    cases: Scope
    sleeps: list[float]

    @property
    def transport(self) -> httpx.WSGITransport:
        return httpx.WSGITransport(app=self.fake)

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)

    def connector(self, **credentials):
        if credentials:
            self.connection.credentials = credentials
        return connector_instance(self.connection, transport=self.transport, sleep=self.sleep)

    def sync(self, scope: Scope):
        return scope_sync(scope.pk, transport=self.transport, sleep=self.sleep)

    def request(self, title: str, **kwargs) -> str:
        kwargs.setdefault("created", self.clock.now - timedelta(days=3))
        return self.fake.add_request(title, **kwargs)


def make_world(options: dict | None = None, **fake_options) -> SalesforceWorld:
    clock = Clock(T0)
    fake = FakeSalesforce(now=clock, **fake_options)
    connection = ToolConnection.objects.create(
        kind="salesforce",
        name=f"Salesforce {ToolConnection.objects.count() + 1}",
        base_url="https://acme.my.salesforce.test",
        options=options or {},
        credentials=fake.credentials(),
        requests_per_second=0,
    )
    map_types(connection, {"FeatureRequest": "request"}, REQUEST_STATES)
    map_types(connection, {"Case": "case"}, CASE_STATES)
    product = ProductFactory()
    requests = Scope.objects.create(
        connection=connection, name="Requests", query="requests", product=product, page_size=7
    )
    cases = Scope.objects.create(connection=connection, name="Cases", query="cases", product=product)
    return SalesforceWorld(fake, clock, connection, requests, cases, [])


@pytest.fixture
def world(db) -> SalesforceWorld:
    return make_world()


def read_all(salesforce, query="requests", since=None):
    return list(salesforce.read_changes(ScopeSpec(query=query), since))


def keys_of(pages):
    return [item.key for page in pages for item in page.items]


# Auth


def test_check_connection_logs_in_with_client_credentials_and_names_the_run_as_user(world):
    assert world.connector().check_connection() == "VSM Integration"
    assert world.fake.token_requests == 1


def test_wrong_client_credentials_are_an_auth_error(world):
    with pytest.raises(AuthError, match="refused the client credentials"):
        world.connector(
            client_id=world.fake.credentials()["client_id"], client_secret="wrong"
        ).check_connection()


def test_missing_credentials_say_what_is_needed(world):
    with pytest.raises(AuthError, match="consumer key and secret"):
        world.connector(client_id="only-the-id")


def test_an_auth_failure_fails_the_run_and_marks_the_connection(world):
    world.connection.credentials = {"client_id": "someone-else", "client_secret": "wrong"}
    world.connection.save()
    result = world.sync(world.requests)
    assert result.outcome == "failed"
    world.connection.refresh_from_db()
    assert "authentication failed" in world.connection.last_error
    assert "wrong" not in world.connection.last_error


def test_an_expired_session_logs_in_again_once_and_the_read_completes(db):
    world = make_world(batch_cap=5)
    keys = [world.request(f"Request {n}") for n in range(12)]
    salesforce = world.connector()
    world.fake.expire_tokens(after=2)  # the login, then page 1 and its history; page 2 meets a dead session
    pages = read_all(salesforce)
    assert keys_of(pages) == keys
    assert world.fake.token_requests == 2
    assert salesforce.session.logins == 2
    assert world.fake.requests["GET query/more"] == 3  # page 2 twice (refused, then repeated), page 3


def test_a_session_refused_after_logging_in_again_is_an_auth_error(world, monkeypatch):
    original = world.fake.authenticate

    def every_session_expired(request):
        world.fake.expire_tokens()
        return original(request)

    monkeypatch.setattr(world.fake, "authenticate", every_session_expired)
    with pytest.raises(AuthError, match="INVALID_SESSION_ID"):
        read_all(world.connector())
    assert world.fake.token_requests == 2  # logged in, and once more: no loop


# Reading


def test_incremental_read_pages_through_records_sharing_one_systemmodstamp(db):
    world = make_world(batch_cap=7)
    keys = [world.request(f"Request {n}", updated=T0) for n in range(20)]
    pages = read_all(world.connector())
    assert [len(page.items) for page in pages] == [7, 7, 6]
    read = keys_of(pages)
    assert sorted(read) == sorted(keys) and len(set(read)) == 20
    assert world.fake.queries[0].endswith("FROM Feature_Request__c ORDER BY SystemModstamp, Id")


def test_since_is_an_unquoted_utc_literal_floored_to_the_second(world):
    before = world.request("Before", updated=T0 - timedelta(seconds=1))
    at = world.request("At the second", updated=T0)
    after = world.request("After", updated=T0 + timedelta(minutes=5))
    since = datetime(2026, 3, 2, 11, 0, 0, 500_000, tzinfo=timezone(timedelta(hours=2)))  # T0 + 0.5 s
    pages = read_all(world.connector(), since=since)
    assert "WHERE SystemModstamp >= 2026-03-02T09:00:00Z ORDER BY" in world.fake.queries[0]
    assert keys_of(pages) == [at, after]
    assert before not in keys_of(pages)


def test_a_system_change_moves_a_record_into_the_next_read(world):
    key = world.request("Recalculated", updated=T0 - timedelta(days=1))
    world.fake.touch(key, T0 + timedelta(hours=1))
    (item,) = [item for page in read_all(world.connector(), since=T0) for item in page.items]
    assert item.key == key and item.updated == T0 + timedelta(hours=1)


def test_a_request_carries_revenue_deal_breaker_account_and_linked_item(world):
    key = world.request(
        "Single sign-on",
        account="Globex",
        amount=125000,
        deal_breaker=True,
        linked_item="https://acme.tpondemand.com/entity/310",
    )
    (item,) = [item for page in read_all(world.connector()) for item in page.items]
    assert (item.key, item.item_type, item.title, item.status) == (
        key,
        "FeatureRequest",
        "Single sign-on",
        "New",
    )
    assert item.url == f"https://acme.my.salesforce.test/{world.fake.find_id(key)}"
    assert item.fields["revenue"] == 125000
    assert item.fields["deal_breaker"] is True
    assert item.fields["customer_account"] == "Globex"
    assert (
        item.fields["linked_item"]
        == item.fields["Linked_Item__c"]
        == "https://acme.tpondemand.com/entity/310"
    )
    assert item.fields["Opportunity__r"] == {"Amount": 125000}  # the native bag, without `attributes`
    assert item.raw["Linked_Item__c"] == item.fields["linked_item"]
    assert item.created == T0 - timedelta(days=3) and item.created.tzinfo is not None


def test_a_request_without_opportunity_or_account_has_no_revenue(world):
    world.request("Small thing")
    (item,) = [item for page in read_all(world.connector()) for item in page.items]
    assert (item.fields["revenue"], item.fields["customer_account"], item.fields["deal_breaker"]) == (
        None,
        None,
        False,
    )


def test_field_options_name_the_orgs_own_fields(db):
    world = make_world(
        options={"request_object": "Customer_Request__c", "request_extra_fields": "Priority__c, Product__c"},
        request_object="Customer_Request__c",
    )
    key = world.request("Renamed object", fields={"Product__c": "Portal", "Priority__c": "High"})
    (item,) = [item for page in read_all(world.connector()) for item in page.items]
    assert item.key == key
    assert (item.fields["Product__c"], item.fields["Priority__c"]) == ("Portal", "High")
    assert "FROM Customer_Request__History" in world.fake.queries[1]


def test_options_that_are_not_field_names_are_refused(db):
    world = make_world(options={"revenue_field": "Amount) FROM User --"})
    with pytest.raises(BadRequest, match="not a Salesforce field name"):
        world.connector()


def test_status_history_becomes_the_changelog(world):
    start = T0 - timedelta(days=10)
    key = world.request(
        "Audit log",
        created=start,
        history=[
            (start + timedelta(hours=2), "New", "Under Review", "Pat Product"),
            (start + timedelta(days=2), "Under Review", "In Development", "Dana Dev"),
            (start + timedelta(days=6), "In Development", "Delivered"),
        ],
    )
    (item,) = [item for page in read_all(world.connector()) for item in page.items]
    assert item.key == key
    assert [(c.at, c.from_status, c.to_status, c.author) for c in item.changelog] == [
        (start + timedelta(hours=2), "New", "Under Review", "Pat Product"),
        (start + timedelta(days=2), "Under Review", "In Development", "Dana Dev"),
        (start + timedelta(days=6), "In Development", "Delivered", "VSM Integration"),
    ]
    assert "WHERE Field = 'Status__c' AND ParentId IN (" in world.fake.queries[1]


def test_history_becomes_state_transitions_through_the_ingest(world):
    start = T0 - timedelta(days=10)
    key = world.request(
        "Audit log",
        created=start,
        history=[
            (start + timedelta(hours=2), "New", "Under Review"),
            (start + timedelta(days=2), "Under Review", "In Development"),
            (start + timedelta(days=6), "In Development", "Delivered"),
        ],
    )
    result = world.sync(world.requests)
    assert result.outcome == "success" and result.counts["created"] == 1
    artifact = Artifact.objects.get(key=key)
    assert artifact.flow_state == FlowState.DONE
    assert list(artifact.transitions.order_by("at").values_list("at", "to_state")) == [
        (start + timedelta(hours=2), FlowState.WAITING),
        (start + timedelta(days=2), FlowState.ACTIVE),
        (start + timedelta(days=6), FlowState.DONE),
    ]
    assert artifact.done_at - artifact.first_started_at == timedelta(days=6, hours=-2)
    again = world.sync(world.requests)
    assert again.counts["unchanged"] == 1 and again.counts["created"] == again.counts["updated"] == 0


def test_revenue_reaches_the_artifact_value_through_a_field_mapping(world):
    mapping = TypeMapping.objects.get(connection=world.connection, tool_type="FeatureRequest")
    FieldMapping.objects.create(type_mapping=mapping, tool_path="revenue", model_field="revenue")
    FieldMapping.objects.create(type_mapping=mapping, tool_path="deal_breaker", model_field="deal_breaker")
    FieldMapping.objects.create(
        type_mapping=mapping, tool_path="customer_account", model_field="customer_account"
    )
    key = world.request("Data residency", account="Initech", amount=98500.5, deal_breaker=True)
    assert world.sync(world.requests).outcome == "success"
    artifact = Artifact.objects.get(key=key)
    assert artifact.value == Decimal("98500.50")
    assert artifact.fields == {"revenue": 98500.5, "deal_breaker": True, "customer_account": "Initech"}


def test_cases_read_with_their_history_and_link_the_request_raised_from_them(db):
    world = make_world(options={"case_request_field": "Feature_Request__c"})
    request = world.request("Export to CSV")
    start = T0 - timedelta(days=4)
    case = world.fake.add_case(
        "Customer cannot export",
        account="Globex",
        request=request,
        created=start,
        history=[
            (start + timedelta(hours=1), "New", "Working"),
            (start + timedelta(days=1), "Working", "Closed"),
        ],
    )
    (item,) = [item for page in read_all(world.connector(), query="cases") for item in page.items]
    assert (item.key, item.item_type, item.title, item.status) == (
        case,
        "Case",
        "Customer cannot export",
        "Closed",
    )
    assert item.fields["customer_account"] == "Globex"
    assert [(link.kind, link.target_key, link.incoming) for link in item.links] == [
        ("derived_from", request, True)
    ]
    assert "FROM CaseHistory WHERE Field = 'Status' AND CaseId IN (" in world.fake.queries[1]

    assert world.sync(world.cases).outcome == "success"
    assert world.sync(world.requests).outcome == "success"
    case_artifact = Artifact.objects.get(key=case)
    assert list(case_artifact.transitions.values_list("to_state", flat=True)) == ["active", "done"]
    link = ArtifactLink.objects.get()
    assert (link.source.key, link.target.key, link.kind) == (request, case, LinkKind.DERIVED_FROM)


def test_a_scope_condition_narrows_the_read_and_list_ids(world):
    world.fake.add_case("By phone", fields={"Origin": "Phone"})
    web = world.fake.add_case("By web")
    salesforce = world.connector()
    assert keys_of(read_all(salesforce, query="cases WHERE Origin = 'Web'")) == [web]
    assert list(salesforce.list_ids(ScopeSpec("Case where Origin = 'Web'"))) == [world.fake.find_id(web)]
    with pytest.raises(BadRequest, match="unknown object"):
        read_all(salesforce, query="Opportunity")
    with pytest.raises(BadRequest, match="ORDER BY"):
        read_all(salesforce, query="cases WHERE Origin = 'Web' ORDER BY CreatedDate")


def test_list_ids_covers_every_record_of_the_object(world):
    keys = [world.request(f"Request {n}") for n in range(9)]
    world.fake.add_case("Not a request")
    assert set(world.connector().list_ids(ScopeSpec("requests"))) == {world.fake.find_id(k) for k in keys}


def test_read_item_by_key(world):
    key = world.request("One", amount=10)
    world.request("Two")
    item = world.connector().read_item(key, ScopeSpec("requests"))
    assert (item.key, item.fields["revenue"]) == (key, 10)
    with pytest.raises(NotFound):
        world.connector().read_item("FR-999999", ScopeSpec("requests"))


def test_status_history_can_be_switched_off(db):
    world = make_world(options={"status_history": "off"})
    world.request("Quiet", history=[(T0 - timedelta(days=1), "New", "Planned")])
    (item,) = [item for page in read_all(world.connector()) for item in page.items]
    assert item.changelog == [] and item.status == "Planned"
    assert len(world.fake.queries) == 1


# Faults


def test_a_malformed_record_is_a_failure_and_the_rest_of_the_page_reads(world):
    keys = [world.request(f"Request {n}") for n in range(3)]
    world.fake.malformed(keys[1])
    (page,) = read_all(world.connector())
    assert [item.key for item in page.items] == [keys[0], keys[2]]
    assert [failure.key for failure in page.failures] == [keys[1]]
    assert "cannot read Feature_Request__c FR-000002" in page.failures[0].message


def test_a_malformed_record_becomes_a_sync_error_while_the_others_land(world):
    keys = [world.request(f"Request {n}") for n in range(3)]
    world.fake.malformed(keys[1])
    result = world.sync(world.requests)
    assert result.outcome == "partial"
    assert set(Artifact.objects.values_list("key", flat=True)) == {keys[0], keys[2]}
    assert SyncError.objects.get().item_key == keys[1]


def test_request_limit_exceeded_is_waited_out(world):
    world.request("One")
    salesforce = world.connector()
    salesforce.check_connection()
    world.fake.rate_limit(2)  # 403 REQUEST_LIMIT_EXCEEDED, without Retry-After
    assert len(read_all(salesforce)[0].items) == 1
    assert len(world.sleeps) == 2 and all(0 <= seconds <= 1 for seconds in world.sleeps)


def test_a_limit_that_does_not_lift_is_raised_not_waited_forever(world):
    salesforce = world.connector()
    salesforce.check_connection()
    world.fake.rate_limit(50)
    with pytest.raises(RateLimited, match="no proper answer after 5 attempts"):
        read_all(salesforce)
    assert len(world.sleeps) == 4


def test_503_with_retry_after_is_waited_out_as_asked(world):
    world.request("One")
    world.fake.unavailable(2, retry_after=4)  # the login meets it first: retried too
    assert len(read_all(world.connector())[0].items) == 1
    assert world.sleeps == [4, 4]


# Writing


def test_create_update_and_transition_a_request(world):
    salesforce = world.connector()
    account = world.fake.add_account("Globex")
    item = salesforce.create_item(
        ScopeSpec("requests"),
        "FeatureRequest",
        {"Title__c": "From the portal", "Account__c": account, "Deal_Breaker__c": True},
    )
    assert (item.key, item.title, item.status, item.fields["customer_account"]) == (
        "FR-000001",
        "From the portal",
        "New",
        "Globex",
    )
    assert world.fake.writes[-1].method == "POST"
    assert world.fake.writes[-1].path == "/services/data/v62.0/sobjects/Feature_Request__c/"
    ref = ItemRef(item.native_id, item.key)

    world.clock.now = T0 + timedelta(hours=1)
    salesforce.update_item(ref, {"Title__c": "Renamed"})
    world.clock.now = T0 + timedelta(hours=2)
    salesforce.transition_item(ref, "Planned")
    stored = world.fake.record(item.key)
    assert (stored["Title__c"], stored["Status__c"]) == ("Renamed", "Planned")
    assert stored["SystemModstamp"] == T0 + timedelta(hours=2)
    assert [(w.method, w.body) for w in world.fake.writes[-2:]] == [
        ("PATCH", {"Title__c": "Renamed"}),
        ("PATCH", {"Status__c": "Planned"}),
    ]
    changelog = salesforce.read_item(item.key, ScopeSpec("requests")).changelog
    assert [(c.at, c.from_status, c.to_status, c.author) for c in changelog] == [
        (T0 + timedelta(hours=2), "New", "Planned", "VSM Integration")
    ]


def test_transition_of_a_case_writes_its_status(world):
    case = world.fake.add_case("Broken export")
    world.connector().transition_item(ItemRef(world.fake.find_id(case), case), "Closed")
    stored = world.fake.record(case)
    assert (stored["Status"], stored["IsClosed"]) == ("Closed", True)


def test_writes_salesforce_refuses_are_bad_requests(world):
    key = world.request("One")
    salesforce = world.connector()
    ref = ItemRef(world.fake.find_id(key), key)
    with pytest.raises(BadRequest, match="INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST"):
        salesforce.transition_item(ref, "Shipped")
    with pytest.raises(BadRequest, match="INVALID_FIELD"):
        salesforce.update_item(ref, {"Nope__c": 1})
    with pytest.raises(BadRequest, match="creates FeatureRequest and Case"):
        salesforce.create_item(ScopeSpec("requests"), "Opportunity", {})
    assert world.fake.record(key)["Status__c"] == "New"


def test_blank_optional_fields_are_left_out_of_the_query(db):
    world = make_world(
        options={"revenue_field": "", "account_field": "", "deal_breaker_field": "", "linked_item_field": ""}
    )
    world.request("Plain org", amount=5)
    (item,) = [item for page in read_all(world.connector()) for item in page.items]
    assert not {"revenue", "customer_account", "deal_breaker", "linked_item"} & set(item.fields)
    assert world.fake.queries[0].startswith(
        "SELECT Id, Name, Title__c, Status__c, CreatedDate, LastModifiedDate, SystemModstamp FROM"
    )
