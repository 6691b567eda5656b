"""The portal pages: who sees which products and artifacts, what a partner never sees, and query counts."""

from datetime import UTC, datetime, timedelta

import pytest
from django.test import Client
from django.urls import reverse

from tests.factories import (
    BASE_TIME,
    SECRET_ACCOUNT,
    SECRET_REVENUE,
    SECRET_VALUE,
    ArtifactFactory,
    ArtifactLinkFactory,
    ProductFactory,
    StateTransitionFactory,
    build_scope_world,
)
from vsm.choices import FlowState
from vsm.models import Artifact

pytestmark = pytest.mark.django_db

PARTNER_A_ARTIFACTS = {"A-OWN-CONN", "A-OWN-TEAM", "LINKED-OUT", "LINKED-IN", "B-LINKED"}
GRANTED_ARTIFACTS = PARTNER_A_ARTIFACTS | {"TWO-HOPS", "INTERNAL", "B-OWN"}


@pytest.fixture
def world():
    return build_scope_world()


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def product_url(slug):
    return reverse("portal:product", args=[slug])


def artifact_url(artifact):
    return reverse("portal:artifact", args=[artifact.pk])


# --- login --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("page", ["home", "product", "artifact"])
def test_anonymous_users_are_sent_to_the_login_page(world, page):
    url = {
        "home": reverse("portal:home"),
        "product": product_url("granted"),
        "artifact": artifact_url(world.artifacts["A-OWN-CONN"]),
    }[page]
    response = Client().get(url)
    assert response.status_code == 302
    assert response["Location"] == f"{reverse('login')}?next={url}"


def test_the_login_page_renders():
    assert Client().get(reverse("login")).status_code == 200


# --- home ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("role", "expected"),
    [
        ("staff", ["granted", "other"]),
        ("superuser", ["granted", "other"]),
        ("leader", ["granted", "other"]),
        ("owner", ["granted"]),
        ("other_owner", ["other"]),
        ("partner_user", ["granted"]),
        ("other_partner_user", ["granted", "other"]),
        ("outsider", []),
    ],
)
def test_home_lists_exactly_the_products_the_user_may_see(world, role, expected):
    response = client_for(getattr(world, role)).get(reverse("portal:home"))
    assert response.status_code == 200
    assert [product.slug for product in response.context["products"]] == expected
    html = response.content.decode()
    for slug, name in [("granted", "Granted product"), ("other", "Other product")]:
        assert (name in html) == (slug in expected)
        assert (f'href="{product_url(slug)}"' in html) == (slug in expected)
    assert ("No product has been shared with you" in html) == (not expected)


def test_home_counts_only_the_artifacts_the_user_may_see(world):
    ArtifactFactory(
        product=world.product, connection=world.partner_conn, deleted_at=BASE_TIME + timedelta(days=3)
    )
    counts = {
        role: {
            p.slug: p.artifact_count for p in client_for(getattr(world, role)).get("/").context["products"]
        }
        for role in ("staff", "partner_user")
    }
    assert counts["staff"] == {"granted": len(GRANTED_ARTIFACTS), "other": 3}
    assert counts["partner_user"] == {"granted": len(PARTNER_A_ARTIFACTS)}


# --- product page -------------------------------------------------------------------------------------


def page_keys(response) -> set[str]:
    return {artifact.key for artifact in response.context["page"]}


def test_the_product_page_shows_its_artifacts(world):
    response = client_for(world.owner).get(product_url("granted"))
    assert response.status_code == 200
    assert page_keys(response) == GRANTED_ARTIFACTS
    html = response.content.decode()
    assert "<h1>Granted product</h1>" in html
    assert "A-OWN-TEAM title" in html
    assert f'href="{artifact_url(world.artifacts["A-OWN-TEAM"])}"' in html
    assert "Internal Jira" in html
    assert "OTHER" not in page_keys(response)


def test_a_partner_sees_only_its_scope_on_the_product_page(world):
    response = client_for(world.partner_user).get(product_url("granted"))
    assert response.status_code == 200
    assert page_keys(response) == PARTNER_A_ARTIFACTS
    html = response.content.decode()
    for hidden in ("TWO-HOPS", "INTERNAL title", "B-OWN"):
        assert hidden not in html


def test_deleted_artifacts_are_left_off_the_product_page(world):
    Artifact.objects.filter(key="INTERNAL").update(deleted_at=BASE_TIME + timedelta(days=2))
    response = client_for(world.owner).get(product_url("granted"))
    assert page_keys(response) == GRANTED_ARTIFACTS - {"INTERNAL"}


def test_the_product_page_pages_by_50(world):
    Artifact.objects.bulk_create(
        ArtifactFactory.build(product=world.product, connection=world.internal_conn) for _ in range(50)
    )
    client = client_for(world.owner)
    first = client.get(product_url("granted"))
    second = client.get(product_url("granted"), {"page": 2})
    assert len(first.context["page"]) == 50
    assert len(second.context["page"]) == len(GRANTED_ARTIFACTS)
    assert "Page 2 of 2" in second.content.decode()
    assert client.get(product_url("granted"), {"page": "abc"}).status_code == 200


@pytest.mark.parametrize("slug", ["other", "no-such-product"])
def test_a_partner_gets_404_for_a_foreign_product(world, slug):
    assert client_for(world.partner_user).get(product_url(slug)).status_code == 404


def test_a_role_holder_gets_404_for_another_product(world):
    assert client_for(world.owner).get(product_url("other")).status_code == 404
    assert client_for(world.other_owner).get(product_url("other")).status_code == 200


# --- artifact page ------------------------------------------------------------------------------------


def test_the_artifact_page_shows_facts_transitions_and_links(world):
    artifact = world.artifacts["LINKED-OUT"]
    StateTransitionFactory(
        artifact=artifact,
        at=datetime(2026, 2, 3, 4, 5, 6, tzinfo=UTC),
        from_status="In Progress",
        to_status="Shipped",
        from_state=FlowState.ACTIVE,
        to_state=FlowState.DONE,
        author="release-bot",
    )
    response = client_for(world.owner).get(artifact_url(artifact))
    assert response.status_code == 200
    html = response.content.decode()
    assert "LINKED-OUT LINKED-OUT title" in html
    assert "Story" in html
    assert "Internal Jira" in html
    assert "2026-02-03 04:05:06" in html
    assert "Shipped" in html
    assert "release-bot" in html
    # Both directions: A-OWN-CONN -> LINKED-OUT -> TWO-HOPS.
    assert f'href="{artifact_url(world.artifacts["A-OWN-CONN"])}"' in html
    assert f'href="{artifact_url(world.artifacts["TWO-HOPS"])}"' in html
    assert {link.pk for link in response.context["links"]} == {
        world.links["A-OWN-CONN>LINKED-OUT"].pk,
        world.links["LINKED-OUT>TWO-HOPS"].pk,
    }


def test_a_partner_does_not_see_links_to_what_is_outside_its_scope(world):
    response = client_for(world.partner_user).get(artifact_url(world.artifacts["LINKED-OUT"]))
    assert response.status_code == 200
    html = response.content.decode()
    assert f'href="{artifact_url(world.artifacts["A-OWN-CONN"])}"' in html
    assert "TWO-HOPS" not in html
    response = client_for(world.partner_user).get(artifact_url(world.artifacts["A-OWN-CONN"]))
    assert "LINKED-ELSEWHERE" not in response.content.decode()


@pytest.mark.parametrize("key", ["B-OWN", "TWO-HOPS", "INTERNAL", "A-ELSEWHERE", "LINKED-ELSEWHERE", "OTHER"])
def test_a_partner_gets_404_for_a_foreign_artifact(world, key):
    url = artifact_url(world.artifacts[key])
    assert client_for(world.staff).get(url).status_code == 200
    assert client_for(world.partner_user).get(url).status_code == 404


def test_an_unknown_artifact_is_404(world):
    assert client_for(world.staff).get(reverse("portal:artifact", args=[999999])).status_code == 404


@pytest.mark.parametrize("role", ["partner_user", "other_partner_user"])
def test_a_partners_artifact_page_has_no_internal_values(world, role):
    response = client_for(getattr(world, role)).get(artifact_url(world.artifacts["A-OWN-CONN"]))
    assert response.status_code == 200
    html = response.content.decode()
    assert SECRET_ACCOUNT not in html
    assert str(SECRET_REVENUE) not in html
    assert SECRET_VALUE not in html
    for name in ("customer_account", "revenue", "deal_breaker"):
        assert name not in html
    # The partner-visible fields are there.
    assert "Pat Requester" in html
    assert "<dt>priority</dt><dd>High</dd>" in html


@pytest.mark.parametrize("role", ["staff", "owner", "leader"])
def test_an_internal_users_artifact_page_has_the_internal_values(world, role):
    response = client_for(getattr(world, role)).get(artifact_url(world.artifacts["A-OWN-CONN"]))
    html = response.content.decode()
    assert SECRET_ACCOUNT in html
    assert str(SECRET_REVENUE) in html
    assert f"<dt>Value</dt><dd>{SECRET_VALUE}</dd>" in html
    assert "Pat Requester" in html


# --- no query per row ---------------------------------------------------------------------------------


@pytest.fixture
def crowd(world):
    """50 artifacts in partner A's scope, each with a transition and a link to one hub artifact."""
    hub = world.artifacts["A-OWN-CONN"]
    artifacts = Artifact.objects.bulk_create(
        ArtifactFactory.build(product=world.product, connection=world.partner_conn, team=world.partner_team)
        for _ in range(50)
    )
    for artifact in artifacts:
        StateTransitionFactory(artifact=hub)
        ArtifactLinkFactory(source=artifact, target=hub)
    for product in ProductFactory.create_batch(5):
        ArtifactFactory(product=product, connection=world.internal_conn)
    return hub


MAX_QUERIES = 12


@pytest.mark.parametrize("role", ["staff", "owner", "partner_user"])
def test_no_page_runs_a_query_per_row(world, crowd, role, django_assert_max_num_queries):
    client = client_for(getattr(world, role))
    with django_assert_max_num_queries(MAX_QUERIES):
        home = client.get(reverse("portal:home"))
    with django_assert_max_num_queries(MAX_QUERIES):
        product = client.get(product_url("granted"))
    with django_assert_max_num_queries(MAX_QUERIES):
        artifact = client.get(artifact_url(crowd))
    assert home.status_code == product.status_code == artifact.status_code == 200
    assert len(product.context["page"]) == 50
    assert len(artifact.context["transitions"]) == 51
    assert len(artifact.context["links"]) >= 50
