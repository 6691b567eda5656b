"""Logging in: each role lands where it works, repeated failures lock the login out (django-axes) with a
clear page, and a session ends after SESSION_COOKIE_AGE."""

import time

import pytest
from django.conf import settings
from django.test import Client, override_settings
from django.urls import reverse

from tests.factories import PartnerGrantFactory, ProductFactory, build_scope_world

pytestmark = pytest.mark.django_db

PASSWORD = "pass-word-123"  # tests.factories.UserFactory


@pytest.fixture
def world():
    return build_scope_world()


def log_in(client: Client, username: str, password: str = PASSWORD):
    return client.post(reverse("login"), {"username": username, "password": password}, follow=True)


@pytest.mark.parametrize(
    ("role", "landing"),
    [
        ("staff", "/"),
        ("superuser", "/"),
        ("leader", "/"),
        ("owner", "/"),
        ("viewer", "/"),
        ("outsider", "/"),
        # Granted one product: straight to its flow dashboard.
        ("partner_user", "/products/granted/flow/"),
        # Granted two: the overview, which lists only those two.
        ("other_partner_user", "/"),
    ],
)
def test_each_role_lands_where_it_works(world, role, landing):
    client = Client()
    response = log_in(client, getattr(world, role).username)
    assert response.status_code == 200
    assert response.redirect_chain[0] == (reverse("portal:landing"), 302)
    assert response.request["PATH_INFO"] == landing


def test_a_partner_granted_several_products_sees_only_those_on_the_overview(world):
    response = log_in(Client(), world.other_partner_user.username)
    assert [product.slug for product in response.context["products"]] == ["granted", "other"]


def test_a_partner_granted_nothing_lands_on_the_empty_overview(world):
    world.partner.grants.all().delete()
    response = log_in(Client(), world.partner_user.username)
    assert response.request["PATH_INFO"] == "/"
    assert "No product has been shared with you" in response.content.decode()


def test_the_next_page_wins_over_the_landing(world):
    client = Client()
    target = reverse("portal:items", args=["granted"])
    response = client.post(
        f"{reverse('login')}?next={target}",
        {"username": world.partner_user.username, "password": PASSWORD, "next": target},
    )
    assert response["Location"] == target


def test_the_landing_needs_a_login():
    response = Client().get(reverse("portal:landing"))
    assert response.status_code == 302 and response["Location"].startswith(reverse("login"))


def test_a_new_grant_changes_a_partners_landing(world):
    PartnerGrantFactory(partner=world.partner, product=ProductFactory(slug="second"))
    response = log_in(Client(), world.partner_user.username)
    assert response.request["PATH_INFO"] == "/"


@override_settings(AXES_ENABLED=True, AXES_FAILURE_LIMIT=3)
def test_repeated_failures_lock_the_login_out_with_a_clear_page(world):
    client = Client()
    for _ in range(2):
        response = log_in(client, world.owner.username, "wrong-password")
        assert response.status_code == 200
        assert "did not match" in response.content.decode()
    locked = log_in(client, world.owner.username, "wrong-password")
    assert locked.status_code == 429
    html = locked.content.decode()
    assert "Too many failed logins" in html and "After 3 failed attempts" in html
    assert 'href="/accounts/login/"' in html and "Traceback" not in html
    # Locked out: even the right password does not log in until the cool-off ends.
    again = log_in(client, world.owner.username)
    assert again.status_code == 429
    assert client.get(reverse("portal:home")).status_code == 302
    # Another user from the same address is not locked out (username and address together).
    assert log_in(Client(), world.leader.username).request["PATH_INFO"] == "/"


@override_settings(AXES_ENABLED=True, AXES_FAILURE_LIMIT=3)
def test_a_success_before_the_limit_resets_the_count(world):
    client = Client()
    for _ in range(2):
        log_in(client, world.owner.username, "wrong-password")
    assert log_in(client, world.owner.username).request["PATH_INFO"] == "/"
    client.post(reverse("logout"))
    for _ in range(2):
        assert log_in(client, world.owner.username, "wrong-password").status_code == 200


def test_the_session_lasts_session_cookie_age(world):
    client = Client()
    log_in(client, world.owner.username)
    assert client.cookies[settings.SESSION_COOKIE_NAME]["max-age"] == settings.SESSION_COOKIE_AGE
    assert client.session.get_expiry_age() == settings.SESSION_COOKIE_AGE


@override_settings(SESSION_COOKIE_AGE=1)
def test_an_expired_session_sends_back_to_the_login(world):
    client = Client()
    log_in(client, world.owner.username)
    assert client.get(reverse("portal:home")).status_code == 200
    time.sleep(1.2)
    response = client.get(reverse("portal:home"))
    assert response.status_code == 302
    assert response["Location"] == f"{reverse('login')}?next=/"
