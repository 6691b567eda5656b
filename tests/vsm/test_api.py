"""The REST API: lists, details, filters, paging, ordering, scoping (404 not 403) and bad input (400)."""

from datetime import UTC, datetime

import pytest
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from tests.clients import api_client_for as client_for
from tests.factories import (
    SECRET_ACCOUNT,
    SECRET_REVENUE,
    SECRET_VALUE,
    ArtifactFactory,
    ArtifactLinkFactory,
    PartnerGrantFactory,
    PartnerMembershipFactory,
    ProductFactory,
    StaffFactory,
    StateTransitionFactory,
    TeamFactory,
    ToolConnectionFactory,
    artifact_model,
    build_scope_world,
    flow_item_type,
)
from vsm.choices import FlowState, LinkKind, LinkOrigin
from vsm.models import Artifact

pytestmark = pytest.mark.django_db

LIST_URLS = ["/api/products/", "/api/teams/", "/api/artifacts/", "/api/links/", "/api/connections/"]


def get_ok(client, url, params=None):
    response = client.get(url, params or {})
    assert response.status_code == 200, response.content
    return response.json()


def keys(payload) -> list[str]:
    return [item["key"] for item in payload["results"]]


@pytest.fixture
def world():
    return build_scope_world()


# --- lists and details -------------------------------------------------------------------------------


def test_products_list_and_detail(world):
    client = client_for(world.owner)
    payload = get_ok(client, "/api/products/")
    assert payload["count"] == 1
    assert [p["slug"] for p in payload["results"]] == ["granted"]
    detail = get_ok(client, f"/api/products/{world.product.pk}/")
    assert detail == {
        "id": world.product.pk,
        "name": "Granted product",
        "slug": "granted",
        "description": "",
        "time_zone": "UTC",
    }


def test_teams_list_and_detail(world):
    client = client_for(world.owner)
    payload = get_ok(client, "/api/teams/")
    assert sorted(t["name"] for t in payload["results"]) == ["A team", "B team", "Internal team"]
    detail = get_ok(client, f"/api/teams/{world.partner_team.pk}/")
    assert detail == {
        "id": world.partner_team.pk,
        "name": "A team",
        "product": world.product.pk,
        "partner": world.partner.pk,
    }


def test_artifacts_list_and_detail(world):
    client = client_for(world.owner)
    payload = get_ok(client, "/api/artifacts/")
    assert sorted(keys(payload)) == sorted(a.key for a in Artifact.objects.filter(product=world.product))
    artifact = world.artifacts["A-OWN-TEAM"]
    detail = get_ok(client, f"/api/artifacts/{artifact.pk}/")
    assert detail["key"] == "A-OWN-TEAM"
    assert detail["model"] == "story"
    assert detail["flow_item_type"] == "feature"
    assert detail["connection"] == world.internal_conn.pk
    assert detail["connection_name"] == "Internal Jira"
    assert detail["team"] == world.partner_team.pk
    assert detail["flow_state"] == "new"
    assert detail["created_at"] == "2026-01-05T09:00:00Z"


def test_links_list_and_detail(world):
    client = client_for(world.owner)
    payload = get_ok(client, "/api/links/")
    assert payload["count"] == 5
    link = world.links["LINKED-IN>A-OWN-TEAM"]
    detail = get_ok(client, f"/api/links/{link.pk}/")
    assert detail["source"] == world.artifacts["LINKED-IN"].pk
    assert detail["target"] == world.artifacts["A-OWN-TEAM"].pk
    assert detail["kind"] == "relates_to"
    assert detail["origin"] == "tool"


def test_transitions_of_an_artifact_oldest_first(world):
    artifact = world.artifacts["A-OWN-TEAM"]
    later = StateTransitionFactory(
        artifact=artifact,
        at=datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=UTC),
        from_status="In Progress",
        to_status="Done",
        from_state=FlowState.ACTIVE,
        to_state=FlowState.DONE,
        author="dev@example.test",
    )
    StateTransitionFactory(artifact=world.artifacts["INTERNAL"])
    payload = get_ok(client_for(world.owner), f"/api/artifacts/{artifact.pk}/transitions/")
    assert payload["count"] == 2
    first, last = payload["results"]
    assert first["id"] == world.transitions["A-OWN-TEAM"].pk
    assert last == {
        "id": later.pk,
        "artifact": artifact.pk,
        "at": "2026-03-01T12:00:00.123456Z",
        "from_status": "In Progress",
        "to_status": "Done",
        "from_state": "active",
        "to_state": "done",
        "author": "dev@example.test",
    }


def test_transitions_filters_and_ordering(world):
    artifact = world.artifacts["A-OWN-TEAM"]
    done = StateTransitionFactory(
        artifact=artifact, at=datetime(2026, 3, 1, tzinfo=UTC), to_status="Done", to_state=FlowState.DONE
    )
    url = f"/api/artifacts/{artifact.pk}/transitions/"
    client = client_for(world.owner)
    assert [t["id"] for t in get_ok(client, url, {"to_state": "done"})["results"]] == [done.pk]
    assert [t["id"] for t in get_ok(client, url, {"at_after": "2026-02-01T00:00:00Z"})["results"]] == [
        done.pk
    ]
    assert [t["id"] for t in get_ok(client, url, {"at_before": "2026-02-01T00:00:00Z"})["results"]] == [
        world.transitions["A-OWN-TEAM"].pk
    ]
    newest_first = get_ok(client, url, {"ordering": "-at"})["results"]
    assert [t["id"] for t in newest_first] == [done.pk, world.transitions["A-OWN-TEAM"].pk]


def test_teams_filters(world):
    client = client_for(world.staff)
    by_product = get_ok(client, "/api/teams/", {"product": world.other_product.pk})
    assert sorted(t["name"] for t in by_product["results"]) == ["A team elsewhere", "Other team"]
    by_partner = get_ok(client, "/api/teams/", {"partner": world.partner.pk})
    assert sorted(t["name"] for t in by_partner["results"]) == ["A team", "A team elsewhere"]


def test_products_filters(world):
    client = client_for(world.staff)
    assert [p["slug"] for p in get_ok(client, "/api/products/", {"slug": "other"})["results"]] == ["other"]
    assert [p["slug"] for p in get_ok(client, "/api/products/", {"q": "GRANTED"})["results"]] == ["granted"]


def test_links_filters(world):
    client = client_for(world.staff)
    hub = world.artifacts["A-OWN-CONN"]
    ArtifactLinkFactory(
        source=world.artifacts["INTERNAL"], target=hub, kind=LinkKind.DERIVED_FROM, origin=LinkOrigin.RULE
    )

    def link_names(params):
        results = get_ok(client, "/api/links/", params)["results"]
        by_id = {a.pk: a.key for a in Artifact.objects.all()}
        return sorted(f"{by_id[r['source']]}>{by_id[r['target']]}" for r in results)

    assert link_names({"artifact": hub.pk}) == [
        "A-OWN-CONN>LINKED-ELSEWHERE",
        "A-OWN-CONN>LINKED-OUT",
        "B-LINKED>A-OWN-CONN",
        "INTERNAL>A-OWN-CONN",
    ]
    assert link_names({"source": hub.pk}) == ["A-OWN-CONN>LINKED-ELSEWHERE", "A-OWN-CONN>LINKED-OUT"]
    assert link_names({"target": hub.pk}) == ["B-LINKED>A-OWN-CONN", "INTERNAL>A-OWN-CONN"]
    assert link_names({"kind": "derived_from"}) == ["INTERNAL>A-OWN-CONN"]
    assert len(link_names({"kind": ["derived_from", "relates_to"]})) == 8
    assert link_names({"origin": "rule"}) == ["INTERNAL>A-OWN-CONN"]


# --- artifact filters ---------------------------------------------------------------------------------


@pytest.fixture
def catalogue():
    """Five artifacts that differ in every filterable way."""
    p1 = ProductFactory(slug="p1")
    p2 = ProductFactory(slug="p2")
    team = TeamFactory(product=p1)
    github = ToolConnectionFactory(kind="github", name="GitHub")
    jira = ToolConnectionFactory(name="Jira")

    def make(key, product, model, item_type, state, day, title, team=None, connection=jira):
        return ArtifactFactory(
            key=key,
            title=title,
            product=product,
            connection=connection,
            team=team,
            artifact_model=artifact_model(model),
            flow_item_type=item_type and flow_item_type(item_type),
            flow_state=state,
            updated_at=datetime(2026, 1, day, 8, 0, tzinfo=UTC),
        )

    make("FEAT-1", p1, "story", "feature", FlowState.ACTIVE, 10, "Checkout redesign", team=team)
    make("BUG-2", p1, "defect", "defect", FlowState.DONE, 12, "Crash on login")
    make("BUG-3", p1, "defect", "defect", FlowState.WAITING, 14, "Slow checkout")
    make("COMMIT-4", p1, "commit", None, FlowState.NEW, 16, "fix checkout crash", connection=github)
    make("P2-5", p2, "story", "feature", FlowState.ACTIVE, 11, "Another product's story")
    return {"p1": p1, "p2": p2, "team": team, "github": github}


ALL_KEYS = {"FEAT-1", "BUG-2", "BUG-3", "COMMIT-4", "P2-5"}


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"product": "p1"}, {"FEAT-1", "BUG-2", "BUG-3", "COMMIT-4"}),
        ({"product": "p2"}, {"P2-5"}),
        ({"model": "defect"}, {"BUG-2", "BUG-3"}),
        ({"model": "commit"}, {"COMMIT-4"}),
        ({"flow_item_type": "feature"}, {"FEAT-1", "P2-5"}),
        ({"flow_item_type": "defect"}, {"BUG-2", "BUG-3"}),
        ({"flow_state": "done"}, {"BUG-2"}),
        ({"flow_state": ["active", "waiting"]}, {"FEAT-1", "BUG-3", "P2-5"}),
        ({"updated_after": "2026-01-12T08:00:00Z"}, {"BUG-2", "BUG-3", "COMMIT-4"}),
        ({"updated_before": "2026-01-12T08:00:00Z"}, {"FEAT-1", "BUG-2", "P2-5"}),
        (
            {"updated_after": "2026-01-11T00:00:00Z", "updated_before": "2026-01-14T00:00:00Z"},
            {"BUG-2", "P2-5"},
        ),
        # The same instant written with an offset: 10:00+02:00 is 08:00 UTC.
        ({"updated_after": "2026-01-12T10:00:00+02:00"}, {"BUG-2", "BUG-3", "COMMIT-4"}),
        ({"q": "checkout"}, {"FEAT-1", "BUG-3", "COMMIT-4"}),
        ({"q": "bug-2"}, {"BUG-2"}),
        ({"team": "team"}, {"FEAT-1"}),
        ({"connection": "github"}, {"COMMIT-4"}),
        ({"key": "BUG-3"}, {"BUG-3"}),
        ({"product": "p1", "flow_item_type": "defect", "flow_state": "done"}, {"BUG-2"}),
    ],
)
def test_artifact_filters_narrow(catalogue, params, expected):
    params = {
        name: catalogue[v].pk if isinstance(v, str) and v in catalogue else v for name, v in params.items()
    }
    client = client_for(StaffFactory())
    assert set(keys(get_ok(client, "/api/artifacts/"))) == ALL_KEYS
    assert set(keys(get_ok(client, "/api/artifacts/", params))) == expected


def test_deleted_artifacts_are_hidden_unless_asked_for(catalogue):
    Artifact.objects.filter(key="BUG-2").update(deleted_at=datetime(2026, 2, 1, tzinfo=UTC))
    client = client_for(StaffFactory())
    assert set(keys(get_ok(client, "/api/artifacts/"))) == ALL_KEYS - {"BUG-2"}
    assert set(keys(get_ok(client, "/api/artifacts/", {"include_deleted": "false"}))) == ALL_KEYS - {"BUG-2"}
    assert set(keys(get_ok(client, "/api/artifacts/", {"include_deleted": "true"}))) == ALL_KEYS


# --- ordering and paging ------------------------------------------------------------------------------


def test_artifacts_default_order_is_most_recently_updated_first(catalogue):
    payload = get_ok(client_for(StaffFactory()), "/api/artifacts/")
    assert keys(payload) == ["COMMIT-4", "BUG-3", "BUG-2", "P2-5", "FEAT-1"]


@pytest.mark.parametrize(
    ("ordering", "expected"),
    [
        ("key", ["BUG-2", "BUG-3", "COMMIT-4", "FEAT-1", "P2-5"]),
        ("-key", ["P2-5", "FEAT-1", "COMMIT-4", "BUG-3", "BUG-2"]),
        ("updated_at", ["FEAT-1", "P2-5", "BUG-2", "BUG-3", "COMMIT-4"]),
    ],
)
def test_artifacts_ordering(catalogue, ordering, expected):
    assert keys(get_ok(client_for(StaffFactory()), "/api/artifacts/", {"ordering": ordering})) == expected


def test_products_teams_and_links_ordering(world):
    client = client_for(world.staff)
    names = [p["name"] for p in get_ok(client, "/api/products/", {"ordering": "-name"})["results"]]
    assert names == ["Other product", "Granted product"]
    teams = [t["name"] for t in get_ok(client, "/api/teams/", {"ordering": "-name"})["results"]]
    assert teams == sorted(teams, reverse=True)
    assert len(teams) == 5
    links = [link["id"] for link in get_ok(client, "/api/links/", {"ordering": "-id"})["results"]]
    assert links == sorted((link.pk for link in world.links.values()), reverse=True)


def test_paging_with_count_next_and_page_size(catalogue):
    client = client_for(StaffFactory())
    first = get_ok(client, "/api/artifacts/", {"page_size": 2, "ordering": "key"})
    assert first["count"] == 5
    assert keys(first) == ["BUG-2", "BUG-3"]
    assert first["previous"] is None
    assert "page=2" in first["next"]
    assert "page_size=2" in first["next"]
    second = get_ok(client, first["next"])
    assert keys(second) == ["COMMIT-4", "FEAT-1"]
    last = get_ok(client, second["next"])
    assert keys(last) == ["P2-5"]
    assert last["next"] is None


def test_page_size_defaults_to_50_and_is_capped_at_500():
    template = ArtifactFactory()
    Artifact.objects.bulk_create(
        ArtifactFactory.build(product=template.product, connection=template.connection) for _ in range(500)
    )
    client = client_for(StaffFactory())
    default = get_ok(client, "/api/artifacts/")
    assert default["count"] == 501
    assert len(default["results"]) == 50
    capped = get_ok(client, "/api/artifacts/", {"page_size": 1000})
    assert len(capped["results"]) == 500
    assert "page=2" in capped["next"]


# --- authentication -----------------------------------------------------------------------------------


@pytest.mark.parametrize("url", [*LIST_URLS, "/api/artifacts/1/", "/api/artifacts/1/transitions/"])
def test_anonymous_requests_are_refused(world, url):
    response = APIClient().get(url)
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Token"
    assert "results" not in response.json()


def test_token_authentication(world):
    token = Token.objects.create(user=world.owner)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    payload = get_ok(client, "/api/products/")
    assert [p["slug"] for p in payload["results"]] == ["granted"]
    client.credentials(HTTP_AUTHORIZATION="Token not-a-real-token")
    assert client.get("/api/products/").status_code == 401


def test_session_authentication(world):
    client = APIClient()
    client.force_login(world.partner_user)
    assert [p["slug"] for p in get_ok(client, "/api/products/")["results"]] == ["granted"]


# --- partners -----------------------------------------------------------------------------------------


def test_a_partner_lists_only_its_scope(world):
    client = client_for(world.partner_user)
    assert [p["slug"] for p in get_ok(client, "/api/products/")["results"]] == ["granted"]
    assert [t["name"] for t in get_ok(client, "/api/teams/")["results"]] == ["A team"]
    assert set(keys(get_ok(client, "/api/artifacts/"))) == {
        "A-OWN-CONN",
        "A-OWN-TEAM",
        "LINKED-OUT",
        "LINKED-IN",
        "B-LINKED",
    }
    links = {link["id"] for link in get_ok(client, "/api/links/")["results"]}
    assert links == {
        world.links[name].pk
        for name in ("A-OWN-CONN>LINKED-OUT", "LINKED-IN>A-OWN-TEAM", "B-LINKED>A-OWN-CONN")
    }


FOREIGN = [
    ("product", "other"),
    ("team", "B team"),
    ("team", "Internal team"),
    ("team", "A team elsewhere"),
    ("artifact", "B-OWN"),
    ("artifact", "TWO-HOPS"),
    ("artifact", "INTERNAL"),
    ("artifact", "A-ELSEWHERE"),
    ("artifact", "LINKED-ELSEWHERE"),
    ("link", "INTERNAL>B-OWN"),
    ("link", "LINKED-OUT>TWO-HOPS"),
    ("link", "A-OWN-CONN>LINKED-ELSEWHERE"),
    ("transitions", "B-OWN"),
    ("transitions", "A-ELSEWHERE"),
]


def detail_url(world, kind, name):
    if kind == "product":
        return f"/api/products/{world.other_product.pk if name == 'other' else world.product.pk}/"
    if kind == "team":
        teams = [
            world.internal_team,
            world.partner_team,
            world.other_partner_team,
            world.partner_team_elsewhere,
        ]
        return f"/api/teams/{next(team for team in teams if team.name == name).pk}/"
    if kind == "artifact":
        return f"/api/artifacts/{world.artifacts[name].pk}/"
    if kind == "link":
        return f"/api/links/{world.links[name].pk}/"
    return f"/api/artifacts/{world.artifacts[name].pk}/transitions/"


@pytest.mark.parametrize(("kind", "name"), FOREIGN)
def test_a_partner_gets_404_for_what_is_outside_its_scope(world, kind, name):
    url = detail_url(world, kind, name)
    assert client_for(world.staff).get(url).status_code == 200
    response = client_for(world.partner_user).get(url)
    assert response.status_code == 404
    assert name not in response.content.decode()


@pytest.mark.parametrize(
    ("kind", "name"),
    [
        ("product", "granted"),
        ("team", "A team"),
        ("artifact", "A-OWN-CONN"),
        ("artifact", "LINKED-IN"),
        ("artifact", "B-LINKED"),
        ("link", "B-LINKED>A-OWN-CONN"),
        ("transitions", "LINKED-OUT"),
    ],
)
def test_a_partner_reads_what_is_in_its_scope(world, kind, name):
    assert client_for(world.partner_user).get(detail_url(world, kind, name)).status_code == 200


@pytest.mark.parametrize(
    "url",
    [
        "/api/products/999999/",
        "/api/teams/999999/",
        "/api/artifacts/999999/",
        "/api/links/999999/",
        "/api/artifacts/999999/transitions/",
        "/api/artifacts/abc/",
        "/api/artifacts/abc/transitions/",
    ],
)
def test_unknown_ids_are_404(world, url):
    assert client_for(world.staff).get(url).status_code == 404


def test_a_partner_never_receives_internal_fields_or_the_value(world):
    artifact = world.artifacts["A-OWN-CONN"]
    for user in (world.partner_user, world.other_partner_user):
        client = client_for(user)
        detail = client.get(f"/api/artifacts/{artifact.pk}/")
        listed = client.get("/api/artifacts/", {"key": "A-OWN-CONN"})
        for response in (detail, listed):
            assert response.status_code == 200
            body = response.content.decode()
            assert SECRET_ACCOUNT not in body
            assert str(SECRET_REVENUE) not in body
            assert SECRET_VALUE not in body
        payload = detail.json()
        assert "value" not in payload
        assert payload["fields"] == {"priority": "High", "requested_by": "Pat Requester"}
        assert listed.json()["results"] == [payload]


def test_a_partner_is_told_the_tool_kind_but_no_in_house_tool_or_team_of_what_is_linked_to_its_own(world):
    """LINKED-OUT (in-house Jira, in-house team) is linked from partner A's request: in A's scope, but its
    connection and team answer 404 to A, so the artifact names neither."""
    client = client_for(world.partner_user)
    linked = world.artifacts["LINKED-OUT"]
    detail = get_ok(client, f"/api/artifacts/{linked.pk}/")
    assert (detail["tool"], detail["connection"], detail["connection_name"], detail["team"]) == (
        "jira",
        None,
        None,
        None,
    )
    assert client.get(f"/api/connections/{world.internal_conn.pk}/").status_code == 404
    assert client.get(f"/api/teams/{world.internal_team.pk}/").status_code == 404
    listed = get_ok(client, "/api/artifacts/", {"page_size": 100})["results"]
    by_key = {row["key"]: row for row in listed}
    assert by_key["LINKED-OUT"] == detail
    # Its own connection and team are named; B's, on B-LINKED, are not.
    assert by_key["A-OWN-CONN"]["connection_name"] == "A tool"
    assert by_key["A-OWN-TEAM"]["team"] == world.partner_team.pk
    assert by_key["B-LINKED"]["connection"] is None and by_key["B-LINKED"]["team"] is None
    body = str(listed)
    for name in ("Internal Jira", "B tool"):
        assert name not in body


@pytest.mark.parametrize("role", ["staff", "owner", "leader"])
def test_internal_users_are_told_every_connection_and_team(world, role):
    detail = get_ok(client_for(getattr(world, role)), f"/api/artifacts/{world.artifacts['LINKED-OUT'].pk}/")
    assert (detail["connection"], detail["connection_name"], detail["team"]) == (
        world.internal_conn.pk,
        "Internal Jira",
        world.internal_team.pk,
    )


@pytest.mark.parametrize("role", ["staff", "owner", "leader"])
def test_internal_users_receive_internal_fields_and_the_value(world, role):
    payload = get_ok(client_for(getattr(world, role)), f"/api/artifacts/{world.artifacts['A-OWN-CONN'].pk}/")
    assert payload["value"] == SECRET_VALUE
    assert payload["fields"]["customer_account"] == SECRET_ACCOUNT
    assert payload["fields"]["revenue"] == SECRET_REVENUE
    assert payload["fields"]["deal_breaker"] is True


def test_a_partner_filtering_on_a_product_it_is_not_granted_learns_nothing(world):
    client = client_for(world.partner_user)
    foreign = client.get("/api/artifacts/", {"product": world.other_product.pk})
    unknown = client.get("/api/artifacts/", {"product": 999999})
    assert foreign.status_code == unknown.status_code == 400
    assert foreign.json() == unknown.json()


def test_a_partner_filtering_on_foreign_connections_and_link_ends_learns_nothing(world):
    client = client_for(world.partner_user)
    foreign_connection = world.other_product.artifacts.first().connection
    foreign = client.get("/api/artifacts/", {"connection": foreign_connection.pk})
    unknown = client.get("/api/artifacts/", {"connection": 999999})
    assert foreign.status_code == unknown.status_code == 400
    assert foreign.json() == unknown.json()
    foreign_artifact = world.other_product.artifacts.first()
    for end in ("source", "target"):
        foreign = client.get("/api/links/", {end: foreign_artifact.pk})
        unknown = client.get("/api/links/", {end: 999999})
        assert foreign.status_code == unknown.status_code == 200
        assert foreign.json()["count"] == unknown.json()["count"] == 0


def test_the_artifact_list_does_not_query_per_row(django_assert_max_num_queries):
    template = ArtifactFactory()
    Artifact.objects.bulk_create(
        ArtifactFactory.build(product=template.product, connection=template.connection) for _ in range(49)
    )
    client = client_for(StaffFactory())
    with django_assert_max_num_queries(8):
        payload = get_ok(client, "/api/artifacts/")
    assert len(payload["results"]) == 50


# --- bad input ----------------------------------------------------------------------------------------

BAD_INPUT = [
    ("/api/products/", "q", "bad\x00name"),
    ("/api/products/", "slug", "bad\x00slug"),
    ("/api/teams/", "product", "abc"),
    ("/api/teams/", "partner", "abc"),
    ("/api/artifacts/", "updated_after", "yesterday"),
    ("/api/artifacts/", "updated_before", "2026-13-45T99:00:00Z"),
    ("/api/artifacts/", "flow_state", "sideways"),
    ("/api/artifacts/", "product", "abc"),
    ("/api/artifacts/", "team", "abc"),
    ("/api/artifacts/", "connection", "abc"),
    ("/api/artifacts/", "model", "no-such-model"),
    ("/api/artifacts/", "flow_item_type", "no-such-type"),
    ("/api/artifacts/", "product", "999999"),
    ("/api/artifacts/", "q", "nul\x00byte"),
    ("/api/links/", "kind", "nonsense"),
    ("/api/links/", "origin", "nonsense"),
    ("/api/links/", "artifact", "abc"),
    ("/api/links/", "artifact", "NaN"),
    ("/api/links/", "artifact", "1.5"),
    ("/api/links/", "source", "abc"),
    ("/api/links/", "target", "abc"),
    ("/api/connections/", "kind", "nonsense"),
    ("TRANSITIONS", "at_after", "yesterday"),
    ("TRANSITIONS", "at_before", "not-a-date"),
    ("TRANSITIONS", "to_state", "sideways"),
]


@pytest.fixture
def staff_and_partner():
    """A staff user, and a partner user with one artifact of its own."""
    membership = PartnerMembershipFactory()
    grant = PartnerGrantFactory(partner=membership.partner)
    artifact = ArtifactFactory(
        product=grant.product, connection=ToolConnectionFactory(partner=membership.partner)
    )
    return StaffFactory(), membership.user, artifact


@pytest.mark.parametrize(("url", "param", "value"), BAD_INPUT)
def test_malformed_filters_are_400_naming_the_parameter(staff_and_partner, url, param, value):
    staff, partner_user, artifact = staff_and_partner
    if url == "TRANSITIONS":
        url = f"/api/artifacts/{artifact.pk}/transitions/"
    assert client_for(partner_user).get(url).status_code == 200
    for user in (staff, partner_user):
        response = client_for(user).get(url, {param: value})
        assert response.status_code == 400, response.content
        errors = response.json()
        assert param in errors
        assert errors[param] and all(isinstance(message, str) for message in errors[param])


def test_every_list_endpoint_is_covered_by_bad_input_cases():
    assert {url for url, _, _ in BAD_INPUT} == {*LIST_URLS, "TRANSITIONS"}


def test_huge_fractional_and_negative_ids_are_400_not_a_crash(world):
    client = client_for(world.staff)
    for value in ("99999999999999999999999", "1.5", "-5", "0", "1e400"):
        for param in ("artifact", "source", "target"):
            response = client.get("/api/links/", {param: value})
            assert response.status_code == 400, (param, value)
            assert param in response.json()
    assert client.get("/api/artifacts/", {"product": "99999999999999999999999"}).status_code == 400
    assert client.get("/api/artifacts/99999999999999999999999/").status_code == 404


# --- schema and docs ----------------------------------------------------------------------------------


def test_openapi_schema_and_docs(world):
    client = client_for(world.owner)
    schema = client.get("/api/schema/", {"format": "json"})
    assert schema.status_code == 200
    paths = schema.json()["paths"]
    assert {"/api/products/", "/api/teams/", "/api/artifacts/", "/api/links/"} <= set(paths)
    assert "/api/artifacts/{id}/transitions/" in paths
    artifact_params = {p["name"] for p in paths["/api/artifacts/"]["get"]["parameters"]}
    assert {"updated_after", "updated_before", "flow_state", "product", "q", "page_size"} <= artifact_params
    transition_params = {p["name"] for p in paths["/api/artifacts/{id}/transitions/"]["get"]["parameters"]}
    assert {"at_after", "to_state"} <= transition_params
    docs = client.get("/api/docs/")
    assert docs.status_code == 200
    assert b"swagger" in docs.content.lower()
