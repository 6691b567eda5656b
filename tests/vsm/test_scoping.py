"""`visible_to(user)` for every role on every model that has it, over one world (see build_scope_world)."""

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AnonymousUser, Group, Permission

from connectors.models import ToolConnection
from tests.factories import (
    ArtifactFactory,
    ArtifactLinkFactory,
    PartnerGrantFactory,
    ProductRoleFactory,
    UserFactory,
    build_scope_world,
)
from vsm.models import (
    Artifact,
    ArtifactLink,
    ArtifactModel,
    FlowItemType,
    ModelField,
    Partner,
    Product,
    StateTransition,
    Team,
)
from vsm.scoping import reach_of

pytestmark = pytest.mark.django_db

ALL = "everything in the database"
PUBLIC_FIELDS = "the partner-visible model fields"

ARTIFACTS_ALL = {
    "A-OWN-CONN",
    "A-OWN-TEAM",
    "LINKED-OUT",
    "LINKED-IN",
    "TWO-HOPS",
    "INTERNAL",
    "B-OWN",
    "B-LINKED",
    "A-ELSEWHERE",
    "LINKED-ELSEWHERE",
    "OTHER",
}
OTHER_ARTIFACTS = {"A-ELSEWHERE", "LINKED-ELSEWHERE", "OTHER"}
GRANTED_ARTIFACTS = ARTIFACTS_ALL - OTHER_ARTIFACTS
PARTNER_A_ARTIFACTS = {"A-OWN-CONN", "A-OWN-TEAM", "LINKED-OUT", "LINKED-IN", "B-LINKED"}
PARTNER_B_ARTIFACTS = {"B-OWN", "B-LINKED", "A-OWN-CONN", "INTERNAL"}


def label(obj) -> str:
    """How the tables below name an object of any scoped model."""
    if isinstance(obj, Product | Partner | ArtifactModel | FlowItemType):
        return obj.slug
    if isinstance(obj, Team | ToolConnection):
        return obj.name
    if isinstance(obj, Artifact):
        return obj.key
    if isinstance(obj, StateTransition):
        return obj.artifact.key
    if isinstance(obj, ArtifactLink):
        return f"{obj.source.key}>{obj.target.key}"
    if isinstance(obj, ModelField):
        return f"{obj.artifact_model.slug}.{obj.name}"
    raise TypeError(obj)


def labels(queryset) -> set[str]:
    found = [label(obj) for obj in queryset]
    assert len(found) == len(set(found)), f"duplicates in {found}"
    return set(found)


MODELS = {
    "product": Product,
    "partner": Partner,
    "team": Team,
    "artifact_model": ArtifactModel,
    "model_field": ModelField,
    "flow_item_type": FlowItemType,
    "artifact": Artifact,
    "transition": StateTransition,
    "link": ArtifactLink,
    "connection": ToolConnection,
}

NOTHING = {name: set() for name in MODELS}
EVERYTHING = dict.fromkeys(MODELS, ALL)
ROLE_HOLDER_OF_GRANTED = {
    "product": {"granted"},
    "partner": {"partner-a", "partner-b"},
    "team": {"Internal team", "A team", "B team"},
    "artifact_model": ALL,
    "model_field": ALL,
    "flow_item_type": ALL,
    "artifact": GRANTED_ARTIFACTS,
    "transition": GRANTED_ARTIFACTS,
    # A link is visible when both ends are: A-OWN-CONN>LINKED-ELSEWHERE crosses into "other".
    "link": {
        "A-OWN-CONN>LINKED-OUT",
        "LINKED-IN>A-OWN-TEAM",
        "LINKED-OUT>TWO-HOPS",
        "B-LINKED>A-OWN-CONN",
        "INTERNAL>B-OWN",
    },
    "connection": {"Internal Jira", "A tool", "B tool"},
}

EXPECTED = {
    "staff": EVERYTHING,
    "superuser": EVERYTHING,
    "leader": EVERYTHING,
    "owner": ROLE_HOLDER_OF_GRANTED,
    "viewer": ROLE_HOLDER_OF_GRANTED,
    "other_owner": {
        "product": {"other"},
        "partner": {"partner-b"},
        "team": {"Other team", "A team elsewhere"},
        "artifact_model": ALL,
        "model_field": ALL,
        "flow_item_type": ALL,
        "artifact": OTHER_ARTIFACTS,
        "transition": OTHER_ARTIFACTS,
        "link": {"OTHER>LINKED-ELSEWHERE"},
        "connection": {"A tool", "Other Jira"},
    },
    "partner_user": {
        "product": {"granted"},
        "partner": {"partner-a"},
        # Not "A team elsewhere": that team works in a product partner A is not granted.
        "team": {"A team"},
        "artifact_model": ALL,
        "model_field": PUBLIC_FIELDS,
        "flow_item_type": ALL,
        # Own (connection or team) plus one hop either way; not TWO-HOPS, not B-OWN or INTERNAL, not
        # A-ELSEWHERE (own connection, but a product not granted) nor LINKED-ELSEWHERE (linked, same).
        "artifact": PARTNER_A_ARTIFACTS,
        "transition": PARTNER_A_ARTIFACTS,
        "link": {"A-OWN-CONN>LINKED-OUT", "LINKED-IN>A-OWN-TEAM", "B-LINKED>A-OWN-CONN"},
        "connection": {"A tool"},
    },
    "other_partner_user": {
        "product": {"granted", "other"},
        "partner": {"partner-b"},
        "team": {"B team"},
        "artifact_model": ALL,
        "model_field": PUBLIC_FIELDS,
        "flow_item_type": ALL,
        "artifact": PARTNER_B_ARTIFACTS,
        "transition": PARTNER_B_ARTIFACTS,
        "link": {"B-LINKED>A-OWN-CONN", "INTERNAL>B-OWN"},
        "connection": {"B tool"},
    },
    "outsider": {
        **NOTHING,
        "artifact_model": ALL,
        "model_field": ALL,
        "flow_item_type": ALL,
    },
    "inactive": NOTHING,
    "anonymous": NOTHING,
}


@pytest.fixture
def world():
    return build_scope_world()


def user_for(world, role):
    if role == "anonymous":
        return AnonymousUser()
    # A fresh instance: reach_of caches on the user object.
    return get_user_model().objects.get(pk=getattr(world, role).pk)


@pytest.mark.parametrize("role", list(EXPECTED))
def test_visible_to_on_every_model(world, role):
    user = user_for(world, role)
    wrong = {}
    for model_name, model in MODELS.items():
        expected = EXPECTED[role][model_name]
        if expected is ALL:
            expected = labels(model.objects.all())
        elif expected is PUBLIC_FIELDS:
            expected = labels(ModelField.objects.filter(partner_visible=True))
        assert expected or role in {"anonymous", "inactive", "outsider"}, (
            f"the world gives {role} no {model_name}"
        )
        visible = labels(model.objects.visible_to(user))
        if visible != expected:
            wrong[model_name] = {"unexpected": visible - expected, "missing": expected - visible}
    assert wrong == {}


def test_the_world_has_something_of_every_model_to_hide():
    """Guards the table above: a partner's view of scoped data is a strict subset of what exists."""
    world = build_scope_world()
    user = user_for(world, "partner_user")
    for model in set(MODELS.values()) - {ArtifactModel, FlowItemType}:  # shared vocabulary
        assert model.objects.visible_to(user).count() < model.objects.count(), model


def test_internal_model_fields_are_hidden_from_partners_only(world):
    internal = {
        "request.customer_account",
        "request.revenue",
        "request.deal_breaker",
        "case.customer_account",
    }
    partner_sees = labels(ModelField.objects.visible_to(user_for(world, "partner_user")))
    owner_sees = labels(ModelField.objects.visible_to(user_for(world, "owner")))
    assert internal <= owner_sees
    assert not internal & partner_sees
    assert "request.priority" in partner_sees


def test_leadership_permission_through_a_group_sees_every_product(world):
    user = UserFactory()
    group = Group.objects.create(name="leadership")
    group.permissions.add(Permission.objects.get(content_type__app_label="vsm", codename="view_all_products"))
    user.groups.add(group)
    fresh = get_user_model().objects.get(pk=user.pk)
    assert labels(Product.objects.visible_to(fresh)) == {"granted", "other"}
    assert labels(Artifact.objects.visible_to(fresh)) == ARTIFACTS_ALL


def test_a_new_grant_is_seen_by_a_freshly_loaded_user(world):
    user = user_for(world, "partner_user")
    assert labels(Product.objects.visible_to(user)) == {"granted"}
    PartnerGrantFactory(partner=world.partner, product=world.other_product)
    # The reach is cached on the instance for the length of a request...
    assert labels(Product.objects.visible_to(user)) == {"granted"}
    # ...and a new request (a fresh user) sees the grant, and A's artifacts in the newly granted product.
    fresh = user_for(world, "partner_user")
    assert labels(Product.objects.visible_to(fresh)) == {"granted", "other"}
    assert labels(Artifact.objects.visible_to(fresh)) == PARTNER_A_ARTIFACTS | {
        "A-ELSEWHERE",
        "LINKED-ELSEWHERE",
    }


def test_a_revoked_role_is_seen_by_a_freshly_loaded_user(world):
    assert labels(Product.objects.visible_to(user_for(world, "owner"))) == {"granted"}
    world.owner.product_roles.all().delete()
    fresh = user_for(world, "owner")
    assert labels(Product.objects.visible_to(fresh)) == set()
    assert labels(Artifact.objects.visible_to(fresh)) == set()


def test_roles_on_two_products_see_both(world):
    ProductRoleFactory(user=world.other_owner, product=world.product)
    assert labels(Product.objects.visible_to(user_for(world, "other_owner"))) == {"granted", "other"}
    assert labels(Artifact.objects.visible_to(user_for(world, "other_owner"))) == ARTIFACTS_ALL


def test_a_partner_artifact_linked_twice_to_its_scope_appears_once(world):
    """Two links into the scope must not duplicate the artifact in the partner's list."""
    ArtifactLinkFactory(source=world.artifacts["A-OWN-TEAM"], target=world.artifacts["LINKED-OUT"])
    ArtifactLinkFactory(source=world.artifacts["LINKED-OUT"], target=world.artifacts["A-OWN-CONN"])
    assert labels(Artifact.objects.visible_to(user_for(world, "partner_user"))) == PARTNER_A_ARTIFACTS


def test_a_partner_team_artifact_from_another_partners_connection_is_in_both_scopes(world):
    shared = ArtifactFactory(
        key="SHARED", product=world.product, connection=world.other_partner_conn, team=world.partner_team
    )
    for role in ("partner_user", "other_partner_user"):
        assert shared in Artifact.objects.visible_to(user_for(world, role))


def test_reach_of_anonymous_inactive_and_none_is_nothing(world):
    for user in (None, AnonymousUser(), user_for(world, "inactive")):
        reach = reach_of(user)
        assert not reach.everything
        assert not reach.product_ids
        assert not reach.is_partner


@pytest.mark.parametrize("role", ["owner", "partner_user"])
def test_a_links_ends_are_tested_row_by_row(world, role):
    """Scoped links test each end with EXISTS. With `source IN (visible) AND target IN (visible)` SQLite
    probed every pair of a product's artifacts: the demo's DORA page took over three minutes."""
    sql = str(ArtifactLink.objects.visible_to(user_for(world, role)).filter(kind="built_in").query)
    assert sql.count("EXISTS") == 2
    for end in ("source_id", "target_id"):
        assert f'"vsm_artifactlink"."{end}" IN (SELECT' not in sql
