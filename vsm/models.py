"""The central store: products, who may see them, artifact models and the normalised artifacts."""

from django.conf import settings
from django.db import models
from django.db.models import F, Q

from vsm.choices import FieldType, FlowState, LinkKind, LinkOrigin, ProductRoleName
from vsm.querysets import (
    ArtifactLinkQuerySet,
    ArtifactQuerySet,
    ModelFieldQuerySet,
    PartnerQuerySet,
    ProductQuerySet,
    ReferenceDataQuerySet,
    StateTransitionQuerySet,
    TeamQuerySet,
)
from vsm.validators import validate_hex_colour, validate_time_zone


def choices_check(field: str, choices: type[models.TextChoices], name: str) -> models.CheckConstraint:
    return models.CheckConstraint(condition=Q(**{f"{field}__in": choices.values}), name=name)


class Product(models.Model):
    """A value stream: what a company delivers to its customers."""

    name = models.CharField(max_length=200, unique=True)
    slug = models.SlugField(max_length=80, unique=True)
    description = models.TextField(blank=True)
    time_zone = models.CharField(
        max_length=64,
        default="UTC",
        validators=[validate_time_zone],
        help_text="IANA time zone used for day boundaries in metrics.",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    objects = ProductQuerySet.as_manager()

    class Meta:
        ordering = ["name"]
        permissions = [("view_all_products", "Can see every product (leadership)")]

    def __str__(self) -> str:
        return self.name


class Partner(models.Model):
    """An outside organisation that works on some products and sees only its part of them."""

    name = models.CharField(max_length=200, unique=True)
    slug = models.SlugField(max_length=80, unique=True)
    products = models.ManyToManyField(Product, through="PartnerGrant", related_name="partners")

    objects = PartnerQuerySet.as_manager()

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class PartnerGrant(models.Model):
    partner = models.ForeignKey(Partner, on_delete=models.CASCADE, related_name="grants")
    product = models.ForeignKey(Product, on_delete=models.CASCADE, related_name="partner_grants")
    granted_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["partner", "product"], name="partner_grant_unique")]

    def __str__(self) -> str:
        return f"{self.partner} → {self.product}"


class PartnerMembership(models.Model):
    """Makes a user a partner user: its reach is its partner's grants, nothing more."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="partner_membership"
    )
    partner = models.ForeignKey(Partner, on_delete=models.CASCADE, related_name="memberships")

    def __str__(self) -> str:
        return f"{self.user} @ {self.partner}"


class Team(models.Model):
    product = models.ForeignKey(Product, on_delete=models.CASCADE, related_name="teams")
    partner = models.ForeignKey(
        Partner,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="teams",
        help_text="Set when the team belongs to a partner organisation.",
    )
    name = models.CharField(max_length=200)

    objects = TeamQuerySet.as_manager()

    class Meta:
        ordering = ["product__name", "name"]
        constraints = [
            models.UniqueConstraint(fields=["product", "name"], name="team_name_unique_in_product")
        ]

    def __str__(self) -> str:
        return f"{self.product} / {self.name}"


class ProductRole(models.Model):
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="product_roles")
    product = models.ForeignKey(Product, on_delete=models.CASCADE, related_name="roles")
    role = models.CharField(max_length=16, choices=ProductRoleName.choices)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "product"], name="product_role_one_per_user"),
            choices_check("role", ProductRoleName, "product_role_valid"),
        ]

    def __str__(self) -> str:
        return f"{self.user}: {self.role} of {self.product}"


class FlowItemType(models.Model):
    """Feature, Defect, Risk or Debt: the work that flow metrics count."""

    name = models.CharField(max_length=40, unique=True)
    slug = models.SlugField(max_length=40, unique=True)
    color = models.CharField(
        max_length=7, default="#4e79a7", validators=[validate_hex_colour], help_text="Chart colour, #rrggbb."
    )
    order = models.PositiveSmallIntegerField(default=0)

    objects = ReferenceDataQuerySet.as_manager()

    class Meta:
        ordering = ["order", "name"]

    def __str__(self) -> str:
        return self.name


class ArtifactModel(models.Model):
    """A normalised kind of work item (Request, Epic, Commit...) that tools map to once."""

    name = models.CharField(max_length=60, unique=True)
    slug = models.SlugField(max_length=60, unique=True)
    description = models.TextField(blank=True)
    default_flow_item_type = models.ForeignKey(
        FlowItemType,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        help_text="Empty for supporting artifacts (commits, builds), which flow metrics leave out.",
    )
    is_standard = models.BooleanField(default=False, editable=False)

    objects = ReferenceDataQuerySet.as_manager()

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class ModelField(models.Model):
    artifact_model = models.ForeignKey(ArtifactModel, on_delete=models.CASCADE, related_name="fields")
    name = models.SlugField(max_length=60, help_text="Key in the artifact's normalised fields.")
    label = models.CharField(max_length=100)
    field_type = models.CharField(max_length=16, choices=FieldType.choices, default=FieldType.TEXT)
    required = models.BooleanField(default=False)
    allowed_values = models.JSONField(default=list, blank=True, help_text="For choice fields: a list.")
    partner_visible = models.BooleanField(
        default=True,
        help_text="Off for internal fields (customer account, revenue): partners never see them.",
    )

    objects = ModelFieldQuerySet.as_manager()

    class Meta:
        ordering = ["artifact_model__name", "name"]
        constraints = [
            models.UniqueConstraint(fields=["artifact_model", "name"], name="model_field_unique_name"),
            choices_check("field_type", FieldType, "model_field_type_valid"),
        ]

    def __str__(self) -> str:
        return f"{self.artifact_model}.{self.name}"


class Artifact(models.Model):
    """One tool item, normalised; unique per (connection, external id)."""

    product = models.ForeignKey(Product, on_delete=models.PROTECT, related_name="artifacts")
    artifact_model = models.ForeignKey(ArtifactModel, on_delete=models.PROTECT, related_name="artifacts")
    flow_item_type = models.ForeignKey(
        FlowItemType, on_delete=models.PROTECT, null=True, blank=True, related_name="artifacts"
    )
    connection = models.ForeignKey(
        "connectors.ToolConnection", on_delete=models.PROTECT, related_name="artifacts"
    )
    team = models.ForeignKey(Team, on_delete=models.SET_NULL, null=True, blank=True, related_name="artifacts")
    external_id = models.CharField(max_length=255, help_text="The tool's own id.")
    key = models.CharField(max_length=255, help_text="What people call it in the tool: ABC-123, #12, a SHA.")
    title = models.CharField(max_length=1000, blank=True)
    url = models.URLField(max_length=1000, blank=True)
    tool_status = models.CharField(max_length=200, blank=True)
    flow_state = models.CharField(max_length=16, choices=FlowState.choices, default=FlowState.NEW)
    created_at = models.DateTimeField()
    first_started_at = models.DateTimeField(null=True, blank=True)
    done_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField()
    deleted_at = models.DateTimeField(
        null=True, blank=True, help_text="Set when the item vanished from the tool."
    )
    fields = models.JSONField(default=dict, blank=True)
    field_times = models.JSONField(
        default=dict,
        blank=True,
        help_text="When the title, the flow state and each field last changed (ISO instants): "
        "integrations settle “latest wins” field by field.",
    )
    value = models.DecimalField(
        max_digits=16, decimal_places=2, null=True, blank=True, help_text="Revenue at stake (internal)."
    )

    objects = ArtifactQuerySet.as_manager()

    class Meta:
        ordering = ["-updated_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["connection", "external_id"], name="artifact_unique_per_connection"
            ),
            choices_check("flow_state", FlowState, "artifact_flow_state_valid"),
        ]
        indexes = [
            models.Index(fields=["product", "flow_item_type", "done_at"], name="artifact_product_type_done"),
            models.Index(fields=["product", "flow_state"], name="artifact_product_state"),
            models.Index(fields=["updated_at"], name="artifact_updated"),
            models.Index(fields=["key"], name="artifact_key"),
        ]

    def __str__(self) -> str:
        return f"{self.key} {self.title}"[:120]


class StateTransition(models.Model):
    """One status change from the tool's changelog, at its exact time (UTC)."""

    artifact = models.ForeignKey(Artifact, on_delete=models.CASCADE, related_name="transitions")
    at = models.DateTimeField()
    from_status = models.CharField(max_length=200, blank=True)
    to_status = models.CharField(max_length=200)
    from_state = models.CharField(max_length=16, choices=FlowState.choices, blank=True)
    to_state = models.CharField(max_length=16, choices=FlowState.choices)
    author = models.CharField(max_length=200, blank=True)

    objects = StateTransitionQuerySet.as_manager()

    class Meta:
        ordering = ["artifact_id", "at", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["artifact", "at", "from_status", "to_status"], name="transition_unique_per_change"
            ),
            models.CheckConstraint(
                condition=Q(from_state="") | Q(from_state__in=FlowState.values),
                name="transition_from_state_valid",
            ),
            choices_check("to_state", FlowState, "transition_to_state_valid"),
        ]
        indexes = [models.Index(fields=["artifact", "at"], name="transition_artifact_at")]

    def __str__(self) -> str:
        return (
            f"{self.artifact_id}: {self.from_status or '∅'} → {self.to_status} at {self.at:%Y-%m-%d %H:%M:%S}"
        )


class ArtifactLink(models.Model):
    source = models.ForeignKey(Artifact, on_delete=models.CASCADE, related_name="outgoing_links")
    target = models.ForeignKey(Artifact, on_delete=models.CASCADE, related_name="incoming_links")
    kind = models.CharField(max_length=16, choices=LinkKind.choices)
    origin = models.CharField(max_length=8, choices=LinkOrigin.choices, default=LinkOrigin.TOOL)
    created_at = models.DateTimeField(auto_now_add=True)

    objects = ArtifactLinkQuerySet.as_manager()

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["source", "target", "kind"], name="link_unique"),
            models.CheckConstraint(condition=~Q(source=F("target")), name="link_not_self"),
            choices_check("kind", LinkKind, "link_kind_valid"),
            choices_check("origin", LinkOrigin, "link_origin_valid"),
        ]
        indexes = [models.Index(fields=["target", "kind"], name="link_target_kind")]

    def __str__(self) -> str:
        return f"{self.source_id} {self.kind} {self.target_id}"
