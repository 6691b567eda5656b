"""Tool connections, what they read (scopes), how their items map to artifact models, and sync records."""

from django.db import models
from django.db.models import F, Q

from connectors.credentials import EncryptedSecretsField, Secrets
from connectors.querysets import IntegrationQuerySet, ScopeQuerySet, SyncErrorQuerySet, SyncRunQuerySet
from vsm.choices import FlowState, LinkKind, LinkOrigin
from vsm.querysets import ToolConnectionQuerySet


class ToolConnection(models.Model):
    """One tool instance the portal reads from or writes to (a Jira site, a GitHub org...)."""

    kind = models.SlugField(max_length=40, help_text="The connector's slug: jira, github, jenkins...")
    name = models.CharField(max_length=200, unique=True)
    base_url = models.URLField(max_length=500)
    partner = models.ForeignKey(
        "vsm.Partner",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="connections",
        help_text="Set when a partner organisation owns the tool: its items are in the partner's scope.",
    )
    credentials = EncryptedSecretsField(default=Secrets, blank=True, editable=False)
    options = models.JSONField(default=dict, blank=True, help_text="Non-secret settings of the connector.")
    requests_per_second = models.FloatField(
        default=10.0, help_text="Cap on requests to this tool, to stay inside its rate limits."
    )
    last_success_at = models.DateTimeField(null=True, blank=True, editable=False)
    last_error_at = models.DateTimeField(null=True, blank=True, editable=False)
    last_error = models.TextField(blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)

    objects = ToolConnectionQuerySet.as_manager()

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def healthy(self) -> bool | None:
        if self.last_success_at is None and self.last_error_at is None:
            return None
        if self.last_error_at is None:
            return True
        return self.last_success_at is not None and self.last_success_at > self.last_error_at


class Scope(models.Model):
    """What to read from a connection (a Jira project or JQL, a repository, a job) and what it feeds."""

    connection = models.ForeignKey(ToolConnection, on_delete=models.CASCADE, related_name="scopes")
    name = models.CharField(max_length=200)
    query = models.CharField(
        max_length=2000, help_text="In the tool's terms: a Jira project key or JQL, a repository, a job..."
    )
    product = models.ForeignKey("vsm.Product", on_delete=models.PROTECT, related_name="scopes")
    team = models.ForeignKey(
        "vsm.Team",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="scopes",
        help_text="The team its items belong to, if one team owns them.",
    )
    enabled = models.BooleanField(default=True)
    interval_minutes = models.PositiveIntegerField(default=15, help_text="How often the schedule syncs it.")
    overlap_seconds = models.PositiveIntegerField(
        default=120,
        help_text="Re-read this much before the cursor: tool queries are not exact to the second.",
    )
    page_size = models.PositiveSmallIntegerField(default=100)
    cursor = models.DateTimeField(
        null=True, blank=True, help_text="The newest change already stored; the next sync reads from here."
    )
    last_full_scan_at = models.DateTimeField(null=True, blank=True, editable=False)
    periodic_task = models.OneToOneField(
        "django_celery_beat.PeriodicTask", on_delete=models.SET_NULL, null=True, blank=True, editable=False
    )
    # A lease instead of a long transaction: a sync commits page by page, and only the holder syncs.
    lease_token = models.CharField(max_length=64, blank=True, editable=False)
    lease_expires_at = models.DateTimeField(null=True, blank=True, editable=False)

    objects = ScopeQuerySet.as_manager()

    class Meta:
        ordering = ["connection__name", "name"]
        constraints = [models.UniqueConstraint(fields=["connection", "name"], name="scope_name_unique")]

    def __str__(self) -> str:
        return f"{self.connection} / {self.name}"


class TypeMapping(models.Model):
    """A tool item type -> an artifact model and flow item type, optionally only when a field matches."""

    connection = models.ForeignKey(ToolConnection, on_delete=models.CASCADE, related_name="type_mappings")
    tool_type = models.CharField(max_length=200, help_text="The tool's type name, e.g. Story or Bug.")
    condition_path = models.CharField(
        max_length=200, blank=True, help_text="Optional: a field path, e.g. fields.labels, that must match."
    )
    condition_value = models.CharField(
        max_length=200, blank=True, help_text="The value the field must equal (or contain, for lists)."
    )
    artifact_model = models.ForeignKey("vsm.ArtifactModel", on_delete=models.PROTECT, related_name="+")
    flow_item_type = models.ForeignKey(
        "vsm.FlowItemType",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        help_text="Empty: the artifact model's default.",
    )
    priority = models.PositiveSmallIntegerField(
        default=100, help_text="Lower wins when several mappings of one type match."
    )

    class Meta:
        ordering = ["connection__name", "tool_type", "priority"]
        constraints = [
            models.UniqueConstraint(
                fields=["connection", "tool_type", "condition_path", "condition_value"],
                name="type_mapping_unique",
            ),
        ]

    def __str__(self) -> str:
        condition = f" when {self.condition_path}={self.condition_value}" if self.condition_path else ""
        return f"{self.connection}: {self.tool_type}{condition} → {self.artifact_model}"


class Transform(models.TextChoices):
    NONE = "none", "as is"
    TEXT = "text", "text"
    NUMBER = "number", "number"
    DATETIME = "datetime", "date and time"
    DATE = "date", "date"
    PERSON = "person", "person (display name)"
    NAMES = "names", "list of names"
    RICH_TEXT = "rich_text", "rich text (kept as Markdown)"


class FieldMapping(models.Model):
    type_mapping = models.ForeignKey(TypeMapping, on_delete=models.CASCADE, related_name="field_mappings")
    tool_path = models.CharField(
        max_length=300, help_text="Dotted path in the tool item, e.g. fields.priority.name"
    )
    model_field = models.SlugField(max_length=60, help_text="A field of the type mapping's artifact model.")
    value_map = models.JSONField(
        default=dict, blank=True, help_text='Optional translation of values, e.g. {"P1": "Highest"}.'
    )
    transform = models.CharField(max_length=16, choices=Transform.choices, default=Transform.NONE)

    class Meta:
        ordering = ["model_field"]
        constraints = [
            models.UniqueConstraint(
                fields=["type_mapping", "model_field"], name="field_mapping_one_per_field"
            ),
            models.CheckConstraint(
                condition=Q(transform__in=Transform.values), name="field_mapping_transform"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.tool_path} → {self.model_field}"


class StatusMapping(models.Model):
    type_mapping = models.ForeignKey(TypeMapping, on_delete=models.CASCADE, related_name="status_mappings")
    tool_status = models.CharField(max_length=200)
    flow_state = models.CharField(
        max_length=16, choices=[c for c in FlowState.choices if c[0] != FlowState.UNKNOWN]
    )
    preferred = models.BooleanField(
        default=False,
        help_text="The status integrations move an item to when it must reach this flow state "
        "(several statuses may map to one state); without one, the first mapped.",
    )

    class Meta:
        ordering = ["tool_status"]
        constraints = [
            models.UniqueConstraint(
                fields=["type_mapping", "tool_status"], name="status_mapping_one_per_status"
            ),
            models.CheckConstraint(
                condition=Q(flow_state__in=[v for v in FlowState.values if v != FlowState.UNKNOWN]),
                name="status_mapping_state_valid",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.tool_status} → {self.get_flow_state_display()}"


class SyncOutcome(models.TextChoices):
    RUNNING = "running", "running"
    SUCCESS = "success", "success"
    PARTIAL = "partial", "done with item errors"
    FAILED = "failed", "failed"


class SyncTrigger(models.TextChoices):
    SCHEDULE = "schedule", "schedule"
    MANUAL = "manual", "manual"
    WEBHOOK = "webhook", "webhook"
    FULL_SCAN = "full_scan", "full scan"
    INTEGRATION = "integration", "read back after an integration wrote"


class SyncRun(models.Model):
    scope = models.ForeignKey(Scope, on_delete=models.CASCADE, related_name="runs")
    trigger = models.CharField(max_length=16, choices=SyncTrigger.choices, default=SyncTrigger.SCHEDULE)
    started_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)
    outcome = models.CharField(max_length=16, choices=SyncOutcome.choices, default=SyncOutcome.RUNNING)
    read = models.PositiveIntegerField(default=0)
    created = models.PositiveIntegerField(default=0)
    updated = models.PositiveIntegerField(default=0)
    unchanged = models.PositiveIntegerField(default=0)
    failed = models.PositiveIntegerField(default=0)
    deleted = models.PositiveIntegerField(default=0)
    cursor_before = models.DateTimeField(null=True, blank=True)
    cursor_after = models.DateTimeField(null=True, blank=True)
    message = models.TextField(blank=True)

    objects = SyncRunQuerySet.as_manager()

    class Meta:
        ordering = ["-started_at", "-id"]
        indexes = [models.Index(fields=["scope", "-started_at"], name="syncrun_scope_started")]

    def __str__(self) -> str:
        return f"{self.scope} at {self.started_at:%Y-%m-%d %H:%M}: {self.outcome}"


class SyncStage(models.TextChoices):
    READ = "read", "reading from the tool"
    MAPPING = "mapping", "mapping to the model"
    STORE = "store", "storing"
    WRITE = "write", "writing to the tool"


class SyncError(models.Model):
    """Something that went wrong with one item (or one mapping gap); stays until resolved."""

    connection = models.ForeignKey(ToolConnection, on_delete=models.CASCADE, related_name="sync_errors")
    scope = models.ForeignKey(Scope, on_delete=models.CASCADE, null=True, blank=True, related_name="errors")
    run = models.ForeignKey(SyncRun, on_delete=models.SET_NULL, null=True, blank=True, related_name="errors")
    stage = models.CharField(max_length=16, choices=SyncStage.choices)
    fingerprint = models.CharField(
        max_length=400, help_text="What the error is about; one open error per fingerprint and scope."
    )
    item_key = models.CharField(max_length=255, blank=True)
    external_id = models.CharField(max_length=255, blank=True)
    message = models.TextField()
    payload = models.JSONField(null=True, blank=True, help_text="The item as the tool sent it.")
    attempts = models.PositiveIntegerField(default=1)
    first_seen_at = models.DateTimeField()
    last_seen_at = models.DateTimeField()
    next_retry_at = models.DateTimeField(null=True, blank=True)
    resolved_at = models.DateTimeField(null=True, blank=True)

    objects = SyncErrorQuerySet.as_manager()

    class Meta:
        ordering = ["-last_seen_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["connection", "scope", "fingerprint"],
                condition=Q(resolved_at__isnull=True),
                name="sync_error_one_open_per_fingerprint",
            ),
        ]
        indexes = [models.Index(fields=["connection", "resolved_at"], name="syncerror_open")]

    def __str__(self) -> str:
        return f"{self.item_key or self.fingerprint}: {self.message[:80]}"


class RawRecord(models.Model):
    """The last payload read for each item: for replay, audit and to skip unchanged items cheaply."""

    connection = models.ForeignKey(ToolConnection, on_delete=models.CASCADE, related_name="raw_records")
    scope = models.ForeignKey(Scope, on_delete=models.SET_NULL, null=True, related_name="raw_records")
    external_id = models.CharField(max_length=255)
    key = models.CharField(max_length=255)
    item_type = models.CharField(max_length=200, blank=True, help_text="The tool's type of the item.")
    payload = models.JSONField()
    digest = models.CharField(max_length=64, help_text="Hash of the payload and the mappings applied to it.")
    fetched_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["connection", "external_id"], name="raw_record_unique"),
        ]
        indexes = [models.Index(fields=["scope"], name="rawrecord_scope")]

    def __str__(self) -> str:
        return self.key


class PendingLink(models.Model):
    """A link whose target is not in the store yet; resolved when the target arrives, kept visible until."""

    source = models.ForeignKey("vsm.Artifact", on_delete=models.CASCADE, related_name="pending_links")
    target_connection = models.ForeignKey(ToolConnection, on_delete=models.CASCADE, related_name="+")
    target_key = models.CharField(max_length=255)
    kind = models.CharField(max_length=16, choices=LinkKind.choices)
    origin = models.CharField(max_length=8, choices=LinkOrigin.choices, default=LinkOrigin.TOOL)
    reverse = models.BooleanField(
        default=False, help_text="The link runs from the awaited item to `source` rather than the other way."
    )
    first_seen_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["source", "target_connection", "target_key", "kind", "reverse"],
                name="pending_link_unique",
            ),
        ]
        indexes = [models.Index(fields=["target_connection", "target_key"], name="pendinglink_target")]

    def __str__(self) -> str:
        return f"{self.source_id} {self.kind} {self.target_key} (pending)"


class LinkRule(models.Model):
    """Derives trace links from what an item says: a key in a commit message, a SHA in a build.

    Every value found at `source_path` in the raw payload of the connection's items (a `*` step fans out
    over lists) is searched with `pattern`; each match, formatted by `key_template`, names an item of
    `target_connection` by its key. `reverse` makes the link run from the named item to this one (a
    commit that mentions a story: the story is committed in the commit).
    """

    connection = models.ForeignKey(ToolConnection, on_delete=models.CASCADE, related_name="link_rules")
    name = models.CharField(max_length=200)
    item_types = models.CharField(
        max_length=400, blank=True, help_text="Comma-separated tool types it reads (empty: all)."
    )
    source_path = models.CharField(
        max_length=300,
        help_text="Dotted path in the raw payload, e.g. commit.message or changeSets.*.items.*.commitId",
    )
    pattern = models.CharField(
        max_length=500,
        blank=True,
        help_text="A regular expression; named groups feed the template. Empty: the whole value is the key.",
    )
    key_template = models.CharField(
        max_length=300,
        blank=True,
        help_text="How a match becomes a key, e.g. {scope}#{number}; empty: the whole match. "
        "Placeholders: the pattern's named groups, {scope} (the scope's query) and {match}.",
    )
    target_connection = models.ForeignKey(ToolConnection, on_delete=models.CASCADE, related_name="+")
    kind = models.CharField(max_length=16, choices=LinkKind.choices)
    reverse = models.BooleanField(default=False, help_text="The link runs from the named item to this one.")
    enabled = models.BooleanField(default=True)

    class Meta:
        ordering = ["connection__name", "name"]
        constraints = [models.UniqueConstraint(fields=["connection", "name"], name="link_rule_unique_name")]

    def __str__(self) -> str:
        return f"{self.connection}: {self.name}"


class WebhookDelivery(models.Model):
    """A webhook delivery a connection's tool sent to /hooks/<connection id>/: recorded once, read once.

    `delivery_id` is the tool's id of the delivery, the same on the tool's retries (or `sha256:<hex>` of
    the body when the tool sends none), so a delivery seen again is answered without doing anything.
    """

    connection = models.ForeignKey(
        ToolConnection, on_delete=models.CASCADE, related_name="webhook_deliveries"
    )
    delivery_id = models.CharField(max_length=200)
    event = models.CharField(max_length=100, help_text="The tool's event name, e.g. issues.edited.")
    item_keys = models.JSONField(default=list, blank=True, help_text="The items the delivery names.")
    received_at = models.DateTimeField()
    processed_at = models.DateTimeField(
        null=True, blank=True, help_text="When its items were read again; empty while queued."
    )
    message = models.TextField(blank=True, help_text="What reading its items again left to say.")

    class Meta:
        ordering = ["-received_at", "-id"]
        verbose_name_plural = "webhook deliveries"
        constraints = [
            models.UniqueConstraint(fields=["connection", "delivery_id"], name="webhook_delivery_unique"),
        ]
        indexes = [models.Index(fields=["connection", "-received_at"], name="webhookdelivery_received")]

    def __str__(self) -> str:
        return f"{self.connection}: {self.event} {self.delivery_id}"


class FieldFlow(models.TextChoices):
    NONE = "none", "none"
    TO_TARGET = "to_target", "source → target"
    TO_SOURCE = "to_source", "target → source"
    BOTH = "both", "both ways"


class FlowTiming(models.TextChoices):
    CREATE = "create", "on creation only"
    ALWAYS = "always", "always"


class ConflictPolicy(models.TextChoices):
    SOURCE_WINS = "source_wins", "source wins"
    TARGET_WINS = "target_wins", "target wins"
    LATEST_WINS = "latest_wins", "latest change wins"
    FLAG = "flag", "stop and flag for a person"


class FilterReach(models.TextChoices):
    CREATE = "create", "creation only"
    ALWAYS = "always", "creation and updates"


class Integration(models.Model):
    """Work flowing between two tools through one artifact model: which items, where, which fields.

    Both sides are a scope and a type mapping of that scope's connection; both type mappings map to
    `artifact_model`, which is what makes the integration point-to-model rather than point-to-point.
    """

    name = models.CharField(max_length=200, unique=True)
    enabled = models.BooleanField(default=True)
    artifact_model = models.ForeignKey("vsm.ArtifactModel", on_delete=models.PROTECT, related_name="+")
    source_scope = models.ForeignKey(Scope, on_delete=models.PROTECT, related_name="integrations_out")
    source_type_mapping = models.ForeignKey(TypeMapping, on_delete=models.PROTECT, related_name="+")
    target_scope = models.ForeignKey(Scope, on_delete=models.PROTECT, related_name="integrations_in")
    target_type_mapping = models.ForeignKey(TypeMapping, on_delete=models.PROTECT, related_name="+")
    default_container = models.CharField(
        max_length=200,
        blank=True,
        help_text="Where a new target item goes when no route matches (a Jira project key, a "
        "Targetprocess project id); empty: the target scope's query.",
    )
    filter_reach = models.CharField(
        max_length=8,
        choices=FilterReach.choices,
        default=FilterReach.CREATE,
        help_text="Whether the filter decides only which items are created, or also which are updated.",
    )
    status_flow = models.CharField(max_length=12, choices=FieldFlow.choices, default=FieldFlow.BOTH)
    link_kind = models.CharField(max_length=16, choices=LinkKind.choices, default=LinkKind.SYNCED_WITH)
    conflict_policy = models.CharField(
        max_length=12, choices=ConflictPolicy.choices, default=ConflictPolicy.FLAG
    )
    write_back_link = models.BooleanField(
        default=True,
        help_text="Add a link to the target item on the source item where the tool allows (a Jira remote "
        "link, a Zendesk note).",
    )
    write_back_path = models.CharField(
        max_length=300,
        blank=True,
        help_text="Optional: a native field of the source item that receives the target's key, e.g. "
        "Jira_Key__c in Salesforce.",
    )
    max_attempts = models.PositiveSmallIntegerField(
        default=5, help_text="Failed writes of one item are retried with backoff this often, then wait."
    )
    last_run_at = models.DateTimeField(null=True, blank=True, editable=False)
    lease_token = models.CharField(max_length=64, blank=True, editable=False)
    lease_expires_at = models.DateTimeField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)

    objects = IntegrationQuerySet.as_manager()

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(
                condition=Q(status_flow__in=FieldFlow.values), name="integration_status_flow_valid"
            ),
            models.CheckConstraint(
                condition=Q(conflict_policy__in=ConflictPolicy.values), name="integration_conflict_valid"
            ),
            models.CheckConstraint(
                condition=~Q(source_scope=F("target_scope")), name="integration_two_scopes"
            ),
        ]

    def __str__(self) -> str:
        return self.name


class IntegrationField(models.Model):
    """How one model field flows between the sides; fields without a row do not flow."""

    integration = models.ForeignKey(Integration, on_delete=models.CASCADE, related_name="field_flows")
    model_field = models.SlugField(max_length=60, help_text="A field of the integration's model, or `title`.")
    flow = models.CharField(max_length=12, choices=FieldFlow.choices, default=FieldFlow.TO_TARGET)
    timing = models.CharField(max_length=8, choices=FlowTiming.choices, default=FlowTiming.ALWAYS)

    class Meta:
        ordering = ["model_field"]
        constraints = [
            models.UniqueConstraint(fields=["integration", "model_field"], name="integration_field_once"),
            models.CheckConstraint(condition=Q(flow__in=FieldFlow.values), name="integration_field_flow"),
        ]

    def __str__(self) -> str:
        return f"{self.model_field}: {self.get_flow_display()}"


class IntegrationRoute(models.Model):
    """A new target item goes to `container` when the source's model field equals `value`."""

    integration = models.ForeignKey(Integration, on_delete=models.CASCADE, related_name="routes")
    position = models.PositiveSmallIntegerField(default=0, help_text="The first matching route wins.")
    model_field = models.SlugField(max_length=60)
    value = models.CharField(max_length=200)
    container = models.CharField(
        max_length=200, help_text="A Jira project key, a Targetprocess project id..."
    )

    class Meta:
        ordering = ["position", "id"]

    def __str__(self) -> str:
        return f"{self.model_field} = {self.value} → {self.container}"


class FilterOperator(models.TextChoices):
    EQUALS = "equals", "equals"
    NOT_EQUALS = "not_equals", "does not equal"
    ONE_OF = "one_of", "is one of (comma-separated)"
    IS_SET = "is_set", "is set"
    IS_TRUE = "is_true", "is yes"


class IntegrationFilter(models.Model):
    """A condition on the source's model fields; an item takes part when all conditions hold."""

    integration = models.ForeignKey(Integration, on_delete=models.CASCADE, related_name="filters")
    model_field = models.SlugField(max_length=60)
    operator = models.CharField(max_length=12, choices=FilterOperator.choices, default=FilterOperator.EQUALS)
    value = models.CharField(max_length=500, blank=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(operator__in=FilterOperator.values), name="integration_filter_operator"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.model_field} {self.get_operator_display()} {self.value}".strip()


class PairState(models.TextChoices):
    CREATING = "creating", "creating the target item"
    OK = "ok", "in step"
    RETRYING = "retrying", "failed, will retry"
    WAITING = "waiting", "failed, waits for a person"
    CONFLICT = "conflict", "conflict, waits for a person"
    TARGET_GONE = "target_gone", "target item deleted in its tool, waits for a person"
    UNLINKED = "unlinked", "unlinked: no longer kept in step"


class IntegrationPair(models.Model):
    """One source item and the target item the integration made for it, with what both last agreed.

    `source_values` / `target_values` are each side's model values as last seen or written by the
    engine: a side has changed a field when its current value differs from its own baseline, so what
    the engine wrote reads back as no change (no echo), and a field changed on both sides is a conflict.
    """

    integration = models.ForeignKey(Integration, on_delete=models.CASCADE, related_name="pairs")
    source = models.ForeignKey("vsm.Artifact", on_delete=models.CASCADE, related_name="+")
    target = models.ForeignKey(
        "vsm.Artifact", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    target_external_id = models.CharField(max_length=255, blank=True)
    target_key = models.CharField(max_length=255, blank=True)
    state = models.CharField(max_length=12, choices=PairState.choices, default=PairState.CREATING)
    source_values = models.JSONField(default=dict, blank=True)
    target_values = models.JSONField(default=dict, blank=True)
    conflicts = models.JSONField(
        default=dict, blank=True, help_text="Field -> {source, target} values waiting for a person."
    )
    pending = models.JSONField(
        default=dict,
        blank=True,
        help_text="Side -> {field: value} being written, kept until the write is known to have succeeded.",
    )
    attempts = models.PositiveSmallIntegerField(default=0)
    next_retry_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    create_started_at = models.DateTimeField(null=True, blank=True)
    create_marker = models.CharField(
        max_length=40,
        blank=True,
        help_text="Made for each attempt to create the target item and kept on it where the tool can: "
        "a retry after a lost answer finds that item instead of making a second one.",
    )
    last_synced_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["integration_id", "id"]
        constraints = [
            models.UniqueConstraint(fields=["integration", "source"], name="integration_pair_per_source"),
            models.UniqueConstraint(
                fields=["integration", "target"],
                condition=Q(target__isnull=False),
                name="integration_pair_per_target",
            ),
            models.CheckConstraint(condition=Q(state__in=PairState.values), name="integration_pair_state"),
        ]
        indexes = [models.Index(fields=["integration", "state"], name="integrationpair_state")]

    def __str__(self) -> str:
        return f"{self.integration}: {self.source_id} → {self.target_key or '…'}"


class IntegrationBacklog(models.Model):
    """An item changed while a run of its integration was going on: that run takes it before it ends."""

    integration = models.ForeignKey(Integration, on_delete=models.CASCADE, related_name="backlog")
    artifact = models.ForeignKey("vsm.Artifact", on_delete=models.CASCADE, related_name="+")
    queued_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["integration", "artifact"], name="integration_backlog_once"),
        ]

    def __str__(self) -> str:
        return f"{self.integration}: {self.artifact_id}"


class IntegrationRun(models.Model):
    integration = models.ForeignKey(Integration, on_delete=models.CASCADE, related_name="runs")
    trigger = models.CharField(max_length=16, choices=SyncTrigger.choices, default=SyncTrigger.SCHEDULE)
    started_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)
    outcome = models.CharField(max_length=16, choices=SyncOutcome.choices, default=SyncOutcome.RUNNING)
    examined = models.PositiveIntegerField(default=0)
    created = models.PositiveIntegerField(default=0)
    updated = models.PositiveIntegerField(default=0)
    unchanged = models.PositiveIntegerField(default=0)
    failed = models.PositiveIntegerField(default=0)
    conflicts = models.PositiveIntegerField(default=0)
    gone = models.PositiveIntegerField(
        default=0, help_text="Pairs whose target item was deleted in its tool."
    )
    writes = models.PositiveIntegerField(default=0, help_text="Calls that changed a tool.")
    message = models.TextField(blank=True)

    class Meta:
        ordering = ["-started_at", "-id"]
        indexes = [models.Index(fields=["integration", "-started_at"], name="integrationrun_started")]

    def __str__(self) -> str:
        return f"{self.integration} at {self.started_at:%Y-%m-%d %H:%M}: {self.outcome}"


class Person(models.Model):
    """One human across tools: their accounts in each tool, matched by email, username or id."""

    name = models.CharField(max_length=200)
    email = models.EmailField(blank=True)
    is_default = models.BooleanField(
        default=False,
        help_text="Stands in when a person field names someone with no account in the other tool.",
    )

    class Meta:
        ordering = ["name"]
        verbose_name_plural = "people"
        constraints = [
            models.UniqueConstraint(
                fields=["is_default"],
                condition=Q(is_default=True),
                name="one_default_person",
                violation_error_message="Another person is already the default; untick it there first.",
            ),
        ]

    def __str__(self) -> str:
        return self.name


class PersonAccount(models.Model):
    person = models.ForeignKey(Person, on_delete=models.CASCADE, related_name="accounts")
    connection = models.ForeignKey(ToolConnection, on_delete=models.CASCADE, related_name="person_accounts")
    account_id = models.CharField(
        max_length=200, help_text="What the tool takes to set a person field: an account id, a user id."
    )
    username = models.CharField(max_length=200, blank=True)
    email = models.EmailField(blank=True)
    display_name = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["connection__name", "display_name"]
        constraints = [
            models.UniqueConstraint(fields=["connection", "account_id"], name="person_account_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.connection}: {self.display_name or self.username or self.account_id}"
