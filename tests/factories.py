"""factory_boy factories for the core model; artifact models and flow item types come from migrations."""

from datetime import UTC, datetime, timedelta

import factory
from django.contrib.auth import get_user_model

from connectors.models import ToolConnection
from vsm.choices import FlowState, LinkKind, LinkOrigin, ProductRoleName
from vsm.models import (
    Artifact,
    ArtifactLink,
    ArtifactModel,
    FlowItemType,
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
