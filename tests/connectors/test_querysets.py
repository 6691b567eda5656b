"""connectors.querysets: scopes, their runs and errors, and integrations, visible by what scopes feed."""

import pytest
from django.contrib.auth.models import AnonymousUser

from connectors.models import Integration, Scope, SyncError, SyncRun
from tests.factories import (
    IntegrationFactory,
    ScopeFactory,
    SyncErrorFactory,
    SyncRunFactory,
    TypeMappingFactory,
    build_scope_world,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def world():
    """build_scope_world, plus scopes: "granted" read from the internal Jira and from partner A's tool,
    "other" from the internal Jira; an integration inside each product and one across the two."""
    w = build_scope_world()
    w.scopes = {
        "granted-internal": ScopeFactory(
            name="granted-internal", connection=w.internal_conn, product=w.product
        ),
        "granted-a": ScopeFactory(name="granted-a", connection=w.partner_conn, product=w.product),
        "granted-a-2": ScopeFactory(name="granted-a-2", connection=w.partner_conn, product=w.product),
        "other-internal": ScopeFactory(
            name="other-internal", connection=w.internal_conn, product=w.other_product
        ),
    }
    for scope in w.scopes.values():
        SyncRunFactory(scope=scope, message=scope.name)
        SyncErrorFactory(scope=scope, connection=scope.connection, message=scope.name)
    SyncErrorFactory(scope=None, connection=w.internal_conn, message="no scope")
    stories = {conn.pk: TypeMappingFactory(connection=conn) for conn in (w.internal_conn, w.partner_conn)}
    for name, source, target in [
        ("in granted", "granted-internal", "granted-a"),
        ("in A's tool", "granted-a", "granted-a-2"),
        ("in other", "other-internal", "granted-internal"),
    ]:
        source, target = w.scopes[source], w.scopes[target]
        IntegrationFactory(
            name=name,
            source_scope=source,
            source_type_mapping=stories[source.connection_id],
            target_scope=target,
            target_type_mapping=stories[target.connection_id],
        )
    return w


ALL_SCOPES = {"granted-internal", "granted-a", "granted-a-2", "other-internal"}


@pytest.mark.parametrize(
    ("role", "scopes", "integrations"),
    [
        ("staff", ALL_SCOPES, {"in granted", "in A's tool", "in other"}),
        ("leader", ALL_SCOPES, {"in granted", "in A's tool", "in other"}),
        ("owner", {"granted-internal", "granted-a", "granted-a-2"}, {"in granted", "in A's tool"}),
        ("other_owner", {"other-internal"}, set()),  # its integration also feeds "granted"
        ("partner_user", {"granted-a", "granted-a-2"}, {"in A's tool"}),
        ("other_partner_user", set(), set()),
        ("outsider", set(), set()),
        ("anonymous", set(), set()),
    ],
)
def test_each_role_sees_the_scopes_it_reaches_and_what_hangs_off_them(world, role, scopes, integrations):
    user = (
        AnonymousUser() if role == "anonymous" else type(world.staff).objects.get(pk=getattr(world, role).pk)
    )
    assert {scope.name for scope in Scope.objects.visible_to(user)} == scopes
    assert {run.message for run in SyncRun.objects.visible_to(user)} == scopes
    errors = {error.message for error in SyncError.objects.visible_to(user)}
    assert errors == (scopes | {"no scope"} if role in ("staff", "leader") else scopes)
    assert {integration.name for integration in Integration.objects.visible_to(user)} == integrations
