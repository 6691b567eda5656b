"""vsm.security: the client address behind trusted proxies (and django-axes locking by it), no-store on
everything but static files, and the API schema behind a login unless opened."""

import pytest
from django.test import Client, RequestFactory, override_settings
from django.urls import reverse

from tests.clients import api_client_for, portal_client_for
from tests.factories import build_scope_world
from vsm.security import client_address

pytestmark = pytest.mark.django_db

PASSWORD = "pass-word-123"  # tests.factories.UserFactory
PROXY = "10.0.0.2"


@pytest.fixture
def world():
    return build_scope_world()


def request_from(remote: str, forwarded: str | None = None):
    headers = {"HTTP_X_FORWARDED_FOR": forwarded} if forwarded is not None else {}
    return RequestFactory().get("/", REMOTE_ADDR=remote, **headers)


@pytest.mark.parametrize(
    ("proxies", "forwarded", "expected"),
    [
        (0, None, PROXY),
        (0, "203.0.113.5", PROXY),  # no proxy trusted: a header anyone can send is ignored
        (1, "203.0.113.5", "203.0.113.5"),
        (1, "198.51.100.1, 203.0.113.5", "203.0.113.5"),  # the left part is the client's own claim
        (2, "198.51.100.1, 203.0.113.5, 10.0.0.1", "203.0.113.5"),
        (2, "203.0.113.5", PROXY),  # fewer hops than proxies: not through them
        (1, "", PROXY),
        (1, "not-an-address", PROXY),
        (1, "2001:db8::1", "2001:db8::1"),
        (1, " 203.0.113.5 ,", "203.0.113.5"),
    ],
)
def test_the_client_is_the_address_the_outermost_trusted_proxy_saw(proxies, forwarded, expected):
    with override_settings(TRUSTED_PROXIES=proxies):
        assert client_address(request_from(PROXY, forwarded)) == expected


def log_in_from(username: str, address: str, password: str = "wrong-password"):  # noqa: S107
    return Client(REMOTE_ADDR=PROXY, HTTP_X_FORWARDED_FOR=address).post(
        reverse("login"), {"username": username, "password": password}
    )


@override_settings(AXES_ENABLED=True, AXES_FAILURE_LIMIT=3, TRUSTED_PROXIES=1)
def test_behind_a_proxy_failures_from_one_client_do_not_lock_the_user_out_for_the_others(world):
    for _ in range(3):
        log_in_from(world.owner.username, "203.0.113.5")
    assert log_in_from(world.owner.username, "203.0.113.5", PASSWORD).status_code == 429
    # The same user, from another client behind the same proxy, still logs in.
    response = log_in_from(world.owner.username, "198.51.100.7", PASSWORD)
    assert response.status_code == 302
    assert response["Location"] == reverse("portal:landing")


@override_settings(AXES_ENABLED=True, AXES_FAILURE_LIMIT=3, TRUSTED_PROXIES=1)
def test_an_attacker_cannot_dodge_the_lockout_by_forging_addresses_on_the_left(world):
    for forged in ("1.1.1.1", "2.2.2.2", "3.3.3.3"):
        log_in_from(world.owner.username, f"{forged}, 203.0.113.5")
    assert log_in_from(world.owner.username, "4.4.4.4, 203.0.113.5", PASSWORD).status_code == 429


@override_settings(AXES_ENABLED=True, AXES_FAILURE_LIMIT=3, TRUSTED_PROXIES=0)
def test_without_a_trusted_proxy_a_forwarded_header_changes_nothing(world):
    for forged in ("1.1.1.1", "2.2.2.2", "3.3.3.3"):
        log_in_from(world.owner.username, forged)
    assert log_in_from(world.owner.username, "4.4.4.4", PASSWORD).status_code == 429


# --- caching ---------------------------------------------------------------------------------------------


def assert_no_store(response):
    assert "no-store" in response["Cache-Control"], response.get("Cache-Control")
    assert "private" in response["Cache-Control"]


@pytest.mark.parametrize(
    "url",
    [
        "/",
        "/products/granted/",
        "/products/granted/flow/",
        "/products/granted/flow/velocity.csv",
        "/requests/requests.csv",
        "/landscape/",
    ],
)
def test_pages_and_csv_exports_are_never_stored(world, url):
    response = portal_client_for(world.owner).get(url)
    assert response.status_code == 200
    assert_no_store(response)


@pytest.mark.parametrize("url", ["/api/artifacts/", "/api/metrics/items/?format=csv", "/api/schema/"])
def test_api_answers_are_never_stored(world, url):
    response = api_client_for(world.owner).get(url)
    assert response.status_code == 200
    assert_no_store(response)


@override_settings(WHITENOISE_USE_FINDERS=True, WHITENOISE_AUTOREFRESH=True)
def test_static_files_stay_cacheable():
    response = Client().get("/static/vsm/charts.js")  # served by WhiteNoise, before NoStoreMiddleware
    assert response.status_code == 200
    assert "no-store" not in response.get("Cache-Control", "")


# --- the API schema and docs -----------------------------------------------------------------------------


def test_the_schema_and_docs_need_a_login(world):
    schema = Client().get(reverse("api-schema"))
    assert schema.status_code == 401
    docs = Client().get(reverse("api-docs"))
    assert docs.status_code == 302
    assert docs["Location"] == f"{reverse('login')}?next={reverse('api-docs')}"
    assert portal_client_for(world.partner_user).get(reverse("api-docs")).status_code == 200
    assert api_client_for(world.partner_user).get(reverse("api-schema")).status_code == 200


@override_settings(API_SCHEMA_PUBLIC=True)
def test_a_setting_opens_the_schema_and_docs_to_anyone():
    assert Client().get(reverse("api-schema")).status_code == 200
    assert Client().get(reverse("api-docs")).status_code == 200
