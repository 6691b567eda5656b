"""The trace pages: search by key or title, an item's whole chain as a graph and a table, lead time."""

import re

import pytest
from django.test import Client
from django.urls import reverse

from tests.clients import portal_client_for as client_for
from tests.factories import ArtifactLinkFactory, StaffFactory, artifact_model, flow_item
from tests.vsm.portal_worlds import (
    FOREIGN_NAMES,
    add_declined_request,
    add_synced_copy,
    build_portal_world,
    day,
)
from vsm.choices import LinkKind
from vsm.portal import trace as trace_views

pytestmark = pytest.mark.django_db


@pytest.fixture
def world():
    return build_portal_world()


def trace_url(artifact):
    return reverse("portal:trace", args=[artifact.pk])


def graph_keys(html: str) -> list[str]:
    svg = html.split('id="trace-graph"', 1)[1].split("</svg>", 1)[0]
    return re.findall(r'<text x="\d+" y="\d+" class="key">([^<]+)</text>', svg)


def test_a_story_shows_its_whole_chain_from_request_to_release(world):
    response = client_for(world.owner).get(trace_url(world.stories[0]))
    assert response.status_code == 200
    html = response.content.decode()
    expected = {"REQ-1", "FEAT-1", "EPIC-1", "SHOP-1", "SHOP-2", "SHOP-3", "build-42", "deploy-7", "v1.4.0"}
    expected |= {commit.key for commit in world.commits}
    assert set(graph_keys(html)) == expected | {"SHOP-404"}
    assert html.count('class="node ') == len(expected) + 1
    # The request's lead time: created on day 0, delivered by the production deployment on day 21.
    assert "deploy-7</a>: lead time <strong>21.0 days</strong>" in html
    assert "v1.4.0" in html and "SHOP-404 (pending)" in html
    assert 'href="https://' in html  # the boxes open the items in their tools


def test_the_chain_is_the_same_from_any_of_its_items(world):
    client = client_for(world.owner)
    from_request = set(graph_keys(client.get(trace_url(world.request)).content.decode()))
    from_release = set(graph_keys(client.get(trace_url(world.release)).content.decode()))
    assert from_request == from_release


def test_a_cut_chain_says_so(world, monkeypatch):
    monkeypatch.setattr(trace_views, "CHAIN_MAX_NODES", 5)
    html = client_for(world.owner).get(trace_url(world.request)).content.decode()
    assert len(graph_keys(html)) == 5
    assert 'id="chain-cut"' in html


def test_a_chain_deeper_than_the_bound_says_so(world, monkeypatch):
    monkeypatch.setattr(trace_views, "CHAIN_MAX_LEVELS", 2)
    html = client_for(world.owner).get(trace_url(world.request)).content.decode()
    # Two links down from the request: its feature and the epic; the stories are further.
    assert set(graph_keys(html)) == {"REQ-1", "FEAT-1", "EPIC-1"}
    assert 'id="chain-deep"' in html


def test_a_cycle_ends_the_walk(world):
    ArtifactLinkFactory(source=world.request, target=world.release, kind=LinkKind.DERIVED_FROM)
    response = client_for(world.owner).get(trace_url(world.stories[0]))
    assert response.status_code == 200


def test_the_trace_reads_a_bounded_number_of_queries_whatever_the_chain(world, django_assert_max_num_queries):
    for number in range(40):
        story = flow_item(
            world.product,
            created_at=day(5),
            artifact_model=artifact_model("story"),
            connection=world.jira,
            key=f"MORE-{number}",
        )
        ArtifactLinkFactory(source=story, target=world.epic, kind=LinkKind.CHILD_OF)
        ArtifactLinkFactory(source=story, target=world.release, kind=LinkKind.RELEASED_IN)
    client = client_for(world.owner)
    client.get(trace_url(world.commits[0]))  # the session and the user are read once
    with django_assert_max_num_queries(20):
        response = client.get(trace_url(world.commits[0]))
    assert "MORE-39" in response.content.decode()
    partner = client_for(world.partner_user)
    partner.get(trace_url(world.commits[0]))
    with django_assert_max_num_queries(20):
        partner.get(trace_url(world.commits[0]))


def test_a_partner_sees_only_its_part_of_the_chain(world):
    client = client_for(world.partner_user)
    response = client.get(trace_url(world.commits[0]))
    assert response.status_code == 200
    html = response.content.decode()
    # Its own commits and what they link to directly; nothing two hops away (the epic, the request).
    assert set(graph_keys(html)) >= {"c0ffee01", "SHOP-1", "build-42"}
    for hidden in ("REQ-1", "EPIC-1", "FEAT-1", "Delivery Jira", "Sales Salesforce", *FOREIGN_NAMES):
        assert hidden not in html
    for artifact in (world.request, world.epic, world.foreign_request):
        assert client.get(trace_url(artifact)).status_code == 404


def test_search_finds_by_key_or_title_within_reach(world):
    client = client_for(world.owner)
    html = client.get(reverse("portal:trace-search"), {"q": "shop-2"}).content.decode()
    assert "SHOP-2" in html
    html = client.get(reverse("portal:trace-search"), {"q": "invoice"}).content.decode()
    assert "REQ-1" in html
    html = client.get(reverse("portal:trace-search"), {"q": "Foreign"}).content.decode()
    assert "FRN-REQ-1" not in html
    staff = client_for(StaffFactory())
    assert "FRN-REQ-1" in staff.get(reverse("portal:trace-search"), {"q": "FRN"}).content.decode()


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"q": "x"}, "at least 2 characters"),
        ({"q": "x" * 300}, "at most 200 characters"),
        ({"q": "REQ", "product": "foreign"}, "No product &#x27;foreign&#x27;"),
        ({"q": "REQ", "product": "no such/thing"}, "Product:"),
    ],
)
def test_bad_search_input_gives_a_message(world, params, message):
    response = client_for(world.partner_user).get(reverse("portal:trace-search"), params)
    assert response.status_code == 200
    html = response.content.decode()
    assert message in html
    for name in FOREIGN_NAMES:
        assert name not in html


def test_a_partner_search_shows_no_foreign_item(world):
    html = client_for(world.partner_user).get(reverse("portal:trace-search"), {"q": "REQ"}).content.decode()
    assert "REQ-2" in html  # linked to its team's feature
    for hidden in ("REQ-1", "REQ-3", *FOREIGN_NAMES):
        assert hidden not in html


def test_anonymous_users_log_in_first(world):
    assert Client().get(trace_url(world.request)).status_code == 302
    assert Client().get(reverse("portal:trace-search")).status_code == 302


def test_an_unknown_item_answers_404(world):
    assert client_for(world.owner).get(reverse("portal:trace", args=[999999])).status_code == 404


def test_a_deep_chain_stays_within_the_query_bound(world, django_assert_max_num_queries):
    """Fifteen tasks, each the child of the one before: the walk stops at its level bound, and says so."""
    parent = world.stories[0]
    for number in range(15):
        task = flow_item(
            world.product,
            created_at=day(6),
            artifact_model=artifact_model("task"),
            connection=world.jira,
            key=f"DEEP-{number}",
        )
        ArtifactLinkFactory(source=task, target=parent, kind=LinkKind.CHILD_OF)
        parent = task
    client = client_for(world.owner)
    client.get(trace_url(world.request))
    with django_assert_max_num_queries(20):
        html = client.get(trace_url(world.request)).content.decode()
    assert 'id="chain-deep"' in html and "DEEP-5" in html and "DEEP-14" not in html


def test_a_synced_copy_shows_as_its_request_and_a_declined_request_as_closed(world):
    copy = add_synced_copy(world)
    html = client_for(world.owner).get(trace_url(copy)).content.decode()
    assert html.count('class="timeline"') == 1 and 'id="timeline-' + str(world.request.pk) in html

    declined = add_declined_request(world, created=31, declined=40)
    html = client_for(world.owner).get(trace_url(declined)).content.decode()
    assert "Not delivered yet" not in html
    assert "Closed 2026-02-14 09:00 as “Declined”, not delivered, after <strong>9.0 days</strong>" in html
