"""factory_boy factories for the core model; artifact models and flow item types come from migrations."""

from datetime import UTC, datetime, timedelta

import factory
from django.contrib.auth import get_user_model

from connectors.models import ToolConnection
from vsm.choices import FieldType, FlowState, LinkKind, LinkOrigin, ProductRoleName
from vsm.models import (
    Artifact,
    ArtifactLink,
    ArtifactModel,
    FlowItemType,
    ModelField,
    Partner,
    PartnerGrant,
    PartnerMembership,
    Product,
    ProductRole,
    StateTransition,
    Team,
)

BASE_TIME = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda u: f"{u.username}@example.test")
    password = factory.PostGenerationMethodCall("set_password", "pass-word-123")

    @factory.post_generation
    def save_password(obj, create, extracted, **kwargs):
        if create:
            obj.save()


class StaffFactory(UserFactory):
    is_staff = True
    is_superuser = True


class ProductFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Product

    name = factory.Sequence(lambda n: f"Product {n}")
    slug = factory.Sequence(lambda n: f"product-{n}")


class PartnerFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Partner

    name = factory.Sequence(lambda n: f"Partner {n}")
    slug = factory.Sequence(lambda n: f"partner-{n}")


class PartnerGrantFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = PartnerGrant

    partner = factory.SubFactory(PartnerFactory)
    product = factory.SubFactory(ProductFactory)


class PartnerMembershipFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = PartnerMembership

    user = factory.SubFactory(UserFactory)
    partner = factory.SubFactory(PartnerFactory)


class TeamFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Team

    product = factory.SubFactory(ProductFactory)
    name = factory.Sequence(lambda n: f"Team {n}")


class ProductRoleFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = ProductRole

    user = factory.SubFactory(UserFactory)
    product = factory.SubFactory(ProductFactory)
    role = ProductRoleName.MEMBER


class ToolConnectionFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = ToolConnection

    kind = "jira"
    name = factory.Sequence(lambda n: f"Jira {n}")
    base_url = factory.Sequence(lambda n: f"https://jira{n}.example.test")


def artifact_model(slug: str) -> ArtifactModel:
    return ArtifactModel.objects.get(slug=slug)


def flow_item_type(slug: str) -> FlowItemType:
    return FlowItemType.objects.get(slug=slug)


class ArtifactFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Artifact

    product = factory.SubFactory(ProductFactory)
    artifact_model = factory.LazyFunction(lambda: artifact_model("story"))
    flow_item_type = factory.LazyFunction(lambda: flow_item_type("feature"))
    connection = factory.SubFactory(ToolConnectionFactory)
    external_id = factory.Sequence(lambda n: str(10000 + n))
    key = factory.Sequence(lambda n: f"ABC-{n}")
    title = factory.Sequence(lambda n: f"Item number {n}")
    url = factory.LazyAttribute(lambda a: f"{a.connection.base_url}/browse/{a.key}")
    tool_status = "To Do"
    flow_state = FlowState.NEW
    created_at = BASE_TIME
    updated_at = factory.LazyAttribute(lambda a: a.created_at + timedelta(hours=1))


class StateTransitionFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = StateTransition

    artifact = factory.SubFactory(ArtifactFactory)
    at = factory.Sequence(lambda n: BASE_TIME + timedelta(hours=n + 1))
    from_status = "To Do"
    to_status = "In Progress"
    from_state = FlowState.NEW
    to_state = FlowState.ACTIVE


class ArtifactLinkFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = ArtifactLink

    source = factory.SubFactory(ArtifactFactory)
    target = factory.SubFactory(ArtifactFactory)
    kind = LinkKind.CHILD_OF
    origin = LinkOrigin.TOOL


class FlowItemTypeFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = FlowItemType

    name = factory.Sequence(lambda n: f"Flow type {n}")
    slug = factory.Sequence(lambda n: f"flow-type-{n}")
    color = "#59a14f"
    order = factory.Sequence(lambda n: 100 + n)


class ArtifactModelFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = ArtifactModel

    name = factory.Sequence(lambda n: f"Custom model {n}")
    slug = factory.Sequence(lambda n: f"custom-model-{n}")
    default_flow_item_type = factory.LazyFunction(lambda: flow_item_type("feature"))


class ModelFieldFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = ModelField

    artifact_model = factory.SubFactory(ArtifactModelFactory)
    name = factory.Sequence(lambda n: f"field_{n}")
    label = factory.Sequence(lambda n: f"Field {n}")
    field_type = FieldType.TEXT


# --- A world for scoping tests (API, portal, querysets) ---------------------------------------------

SECRET_ACCOUNT = "Globex Secret Account"
SECRET_REVENUE = 4242424
SECRET_VALUE = "98765.43"


def grant_view_all_products(user):
    from django.contrib.auth.models import Permission

    user.user_permissions.add(
        Permission.objects.get(content_type__app_label="vsm", codename="view_all_products")
    )
    return user


def build_scope_world():
    """Two products, two partners, a user of every kind, and artifacts at every distance from partner A.

    Product "granted" is granted to partners A and B; product "other" only to B. Partner A owns the
    connection "A tool" and the team "A team". Artifacts are named by their key:

    - A-OWN-CONN (a Request with internal fields and a value, from A's connection) and A-OWN-TEAM (on A's
      team, from an internal connection): A's own;
    - LINKED-OUT (A-OWN-CONN -> it), LINKED-IN (it -> A-OWN-TEAM), B-LINKED (B's, -> A-OWN-CONN): one hop;
    - TWO-HOPS (LINKED-OUT -> it), INTERNAL (linked only to B-OWN), B-OWN: not in A's scope;
    - A-ELSEWHERE (A's connection, product "other"), LINKED-ELSEWHERE (A-OWN-CONN -> it, product
      "other"), OTHER: in a product A is not granted.
    """
    from types import SimpleNamespace

    w = SimpleNamespace()
    w.product = ProductFactory(name="Granted product", slug="granted")
    w.other_product = ProductFactory(name="Other product", slug="other")
    w.partner = PartnerFactory(name="Partner A", slug="partner-a")
    w.other_partner = PartnerFactory(name="Partner B", slug="partner-b")
    PartnerGrantFactory(partner=w.partner, product=w.product)
    PartnerGrantFactory(partner=w.other_partner, product=w.product)
    PartnerGrantFactory(partner=w.other_partner, product=w.other_product)

    w.internal_conn = ToolConnectionFactory(name="Internal Jira")
    w.partner_conn = ToolConnectionFactory(name="A tool", partner=w.partner)
    w.other_partner_conn = ToolConnectionFactory(name="B tool", partner=w.other_partner)
    w.other_product_conn = ToolConnectionFactory(name="Other Jira")

    w.internal_team = TeamFactory(product=w.product, name="Internal team")
    w.partner_team = TeamFactory(product=w.product, name="A team", partner=w.partner)
    w.other_partner_team = TeamFactory(product=w.product, name="B team", partner=w.other_partner)
    w.other_product_team = TeamFactory(product=w.other_product, name="Other team")
    w.partner_team_elsewhere = TeamFactory(
        product=w.other_product, name="A team elsewhere", partner=w.partner
    )

    def art(key, product, connection, team=None, **kwargs):
        return ArtifactFactory(
            key=key, title=f"{key} title", product=product, connection=connection, team=team, **kwargs
        )

    a = {}
    a["A-OWN-CONN"] = art(
        "A-OWN-CONN",
        w.product,
        w.partner_conn,
        artifact_model=artifact_model("request"),
        flow_item_type=None,
        fields={
            "customer_account": SECRET_ACCOUNT,
            "revenue": SECRET_REVENUE,
            "deal_breaker": True,
            "priority": "High",
            "requested_by": "Pat Requester",
        },
        value=SECRET_VALUE,
    )
    a["A-OWN-TEAM"] = art("A-OWN-TEAM", w.product, w.internal_conn, w.partner_team)
    a["LINKED-OUT"] = art("LINKED-OUT", w.product, w.internal_conn, w.internal_team)
    a["LINKED-IN"] = art("LINKED-IN", w.product, w.internal_conn)
    a["TWO-HOPS"] = art("TWO-HOPS", w.product, w.internal_conn)
    a["INTERNAL"] = art("INTERNAL", w.product, w.internal_conn, w.internal_team)
    a["B-OWN"] = art("B-OWN", w.product, w.other_partner_conn)
    a["B-LINKED"] = art("B-LINKED", w.product, w.other_partner_conn, w.other_partner_team)
    a["A-ELSEWHERE"] = art("A-ELSEWHERE", w.other_product, w.partner_conn, w.partner_team_elsewhere)
    a["LINKED-ELSEWHERE"] = art("LINKED-ELSEWHERE", w.other_product, w.other_product_conn)
    a["OTHER"] = art("OTHER", w.other_product, w.other_product_conn, w.other_product_team)
    w.artifacts = a

    w.links = {}
    for source, target in [
        ("A-OWN-CONN", "LINKED-OUT"),
        ("LINKED-IN", "A-OWN-TEAM"),
        ("LINKED-OUT", "TWO-HOPS"),
        ("B-LINKED", "A-OWN-CONN"),
        ("INTERNAL", "B-OWN"),
        ("A-OWN-CONN", "LINKED-ELSEWHERE"),
        ("OTHER", "LINKED-ELSEWHERE"),
    ]:
        w.links[f"{source}>{target}"] = ArtifactLinkFactory(
            source=a[source], target=a[target], kind=LinkKind.RELATES_TO
        )
    # A fixed time (not the factory's sequence), so tests may place later transitions after it.
    started = BASE_TIME + timedelta(hours=1)
    w.transitions = {
        key: StateTransitionFactory(artifact=artifact, at=started) for key, artifact in a.items()
    }

    w.staff = UserFactory(username="staff", is_staff=True)
    w.superuser = UserFactory(username="superuser", is_superuser=True)
    w.leader = grant_view_all_products(UserFactory(username="leader"))
    w.owner = ProductRoleFactory(product=w.product, role=ProductRoleName.OWNER, user__username="owner").user
    w.viewer = ProductRoleFactory(
        product=w.product, role=ProductRoleName.VIEWER, user__username="viewer"
    ).user
    w.other_owner = ProductRoleFactory(product=w.other_product, user__username="other-owner").user
    w.partner_user = PartnerMembershipFactory(partner=w.partner, user__username="partner-a-user").user
    w.other_partner_user = PartnerMembershipFactory(
        partner=w.other_partner, user__username="partner-b-user"
    ).user
    w.outsider = UserFactory(username="outsider")
    w.inactive = ProductRoleFactory(product=w.product, user__username="inactive", user__is_active=False).user
    return w


# --- connectors ---------------------------------------------------------------------------------------


class ScopeFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = "connectors.Scope"

    connection = factory.SubFactory(ToolConnectionFactory)
    name = factory.Sequence(lambda n: f"Scope {n}")
    query = "ABC"
    product = factory.SubFactory(ProductFactory)


class TypeMappingFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = "connectors.TypeMapping"

    connection = factory.SubFactory(ToolConnectionFactory)
    tool_type = "Story"
    artifact_model = factory.LazyFunction(lambda: artifact_model("story"))


class StatusMappingFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = "connectors.StatusMapping"

    type_mapping = factory.SubFactory(TypeMappingFactory)
    tool_status = factory.Sequence(lambda n: f"Status {n}")
    flow_state = FlowState.ACTIVE


class FieldMappingFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = "connectors.FieldMapping"

    type_mapping = factory.SubFactory(TypeMappingFactory)
    tool_path = "assignee"
    model_field = "assignee"
    transform = "person"


def map_types(connection, types: dict[str, str], statuses: dict[str, str]):
    """Type mappings (tool type -> artifact model slug), each with the same status mappings."""
    from connectors.models import StatusMapping, TypeMapping

    mappings = []
    for tool_type, model_slug in types.items():
        mapping = TypeMapping.objects.create(
            connection=connection, tool_type=tool_type, artifact_model=artifact_model(model_slug)
        )
        StatusMapping.objects.bulk_create(
            StatusMapping(type_mapping=mapping, tool_status=status, flow_state=state)
            for status, state in statuses.items()
        )
        mappings.append(mapping)
    return mappings


class SyncRunFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = "connectors.SyncRun"

    scope = factory.SubFactory(ScopeFactory)
    trigger = "schedule"
    started_at = factory.Sequence(lambda n: BASE_TIME + timedelta(minutes=15 * n))
    finished_at = factory.LazyAttribute(lambda run: run.started_at + timedelta(seconds=30))
    outcome = "success"
    read = 3
    created = 1
    updated = 2


class SyncErrorFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = "connectors.SyncError"

    scope = factory.SubFactory(ScopeFactory)
    connection = factory.SelfAttribute("scope.connection")
    stage = "mapping"
    item_key = factory.Sequence(lambda n: f"ABC-{n}")
    external_id = factory.Sequence(lambda n: str(20000 + n))
    fingerprint = factory.LazyAttribute(lambda error: f"item:{error.external_id}")
    message = "cannot read story_points as number: 'lots'"
    payload = factory.LazyAttribute(lambda error: {"key": error.item_key, "fields": {"summary": "An item"}})
    first_seen_at = BASE_TIME
    last_seen_at = BASE_TIME


# --- metrics ------------------------------------------------------------------------------------------

TOOL_STATUS_OF_STATE = {
    FlowState.NEW: "To Do",
    FlowState.WAITING: "Blocked",
    FlowState.ACTIVE: "In Progress",
    FlowState.DONE: "Done",
    FlowState.CANCELED: "Won't Do",
    FlowState.UNKNOWN: "Triage",
}


def flow_item(product, *moves, created_at=BASE_TIME, flow_type="feature", first_from=FlowState.NEW, **kwargs):
    """An artifact and its ledger: `moves` are (at, to_state), each from the previous move's state.

    Its flow state (and tool status) is the last move's; `flow_type=None` makes a supporting artifact.
    """
    state = first_from
    transitions = []
    for at, to_state in moves:
        transitions.append((at, state, to_state))
        state = to_state
    kwargs.setdefault("flow_state", state)
    kwargs.setdefault("tool_status", TOOL_STATUS_OF_STATE[kwargs["flow_state"]])
    artifact = ArtifactFactory(
        product=product,
        created_at=created_at,
        flow_item_type=flow_item_type(flow_type) if flow_type else None,
        **kwargs,
    )
    StateTransition.objects.bulk_create(
        StateTransition(
            artifact=artifact,
            at=at,
            from_status=TOOL_STATUS_OF_STATE[from_state],
            to_status=TOOL_STATUS_OF_STATE[to_state],
            from_state=from_state,
            to_state=to_state,
        )
        for at, from_state, to_state in transitions
    )
    return artifact


class ProductTargetFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = "metrics.ProductTarget"

    product = factory.SubFactory(ProductFactory)
    allocation = factory.LazyFunction(lambda: {"feature": 0.6, "defect": 0.3, "risk": 0.05, "debt": 0.05})


class LinkRuleFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = "connectors.LinkRule"

    connection = factory.SubFactory(ToolConnectionFactory, kind="github")
    name = factory.Sequence(lambda n: f"Rule {n}")
    source_path = "commit.message"
    pattern = r"(?P<key>[A-Z]+-\d+)"
    key_template = "{key}"
    target_connection = factory.SubFactory(ToolConnectionFactory)
    kind = "committed_in"
    reverse = True


class PersonFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = "connectors.Person"

    name = factory.Sequence(lambda n: f"Person {n}")


class PersonAccountFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = "connectors.PersonAccount"

    person = factory.SubFactory(PersonFactory)
    connection = factory.SubFactory(ToolConnectionFactory)
    account_id = factory.Sequence(lambda n: f"account-{n}")


class IntegrationFactory(factory.django.DjangoModelFactory):
    """Two scopes of two connections, both mapping Story to the story model."""

    class Meta:
        model = "connectors.Integration"

    name = factory.Sequence(lambda n: f"Integration {n}")
    artifact_model = factory.LazyFunction(lambda: artifact_model("story"))
    source_scope = factory.SubFactory(ScopeFactory)
    source_type_mapping = factory.SubFactory(
        TypeMappingFactory,
        connection=factory.SelfAttribute("..source_scope.connection"),
        artifact_model=factory.SelfAttribute("..artifact_model"),
    )
    target_scope = factory.SubFactory(ScopeFactory)
    target_type_mapping = factory.SubFactory(
        TypeMappingFactory,
        connection=factory.SelfAttribute("..target_scope.connection"),
        artifact_model=factory.SelfAttribute("..artifact_model"),
    )


class IntegrationPairFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = "connectors.IntegrationPair"

    integration = factory.SubFactory(IntegrationFactory)
    source = factory.SubFactory(ArtifactFactory)
    target = factory.SubFactory(ArtifactFactory)
    target_external_id = factory.SelfAttribute("target.external_id")
    target_key = factory.SelfAttribute("target.key")
    state = "ok"


class IntegrationRunFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = "connectors.IntegrationRun"

    integration = factory.SubFactory(IntegrationFactory)
    started_at = BASE_TIME
    outcome = "success"
