from django.db import models


class FlowState(models.TextChoices):
    NEW = "new", "New"
    WAITING = "waiting", "Waiting"
    ACTIVE = "active", "Active"
    DONE = "done", "Done"
    CANCELED = "canceled", "Canceled"
    # A tool status that no StatusMapping covers yet: kept, never guessed.
    UNKNOWN = "unknown", "Unknown (unmapped status)"


IN_PROGRESS_STATES = (FlowState.ACTIVE, FlowState.WAITING)


class LinkKind(models.TextChoices):
    DERIVED_FROM = "derived_from", "derived from"
    IMPLEMENTS = "implements", "implements"
    CHILD_OF = "child_of", "child of"
    RELATES_TO = "relates_to", "relates to"
    FIXES = "fixes", "fixes"
    SYNCED_WITH = "synced_with", "synced with"
    COMMITTED_IN = "committed_in", "committed in"
    BUILT_IN = "built_in", "built in"
    RELEASED_IN = "released_in", "released in"
    DEPLOYED_IN = "deployed_in", "deployed in"


class LinkOrigin(models.TextChoices):
    TOOL = "tool", "native link in the tool"
    RULE = "rule", "derived by a linking rule"
    SYNC = "sync", "recorded by an integration"


class ProductRoleName(models.TextChoices):
    OWNER = "owner", "Owner"
    MEMBER = "member", "Member"
    VIEWER = "viewer", "Viewer"


class FieldType(models.TextChoices):
    TEXT = "text", "Text"
    RICH_TEXT = "rich_text", "Rich text"
    NUMBER = "number", "Number"
    MONEY = "money", "Money"
    BOOLEAN = "boolean", "Yes/no"
    DATE = "date", "Date"
    DATETIME = "datetime", "Date and time"
    CHOICE = "choice", "One of the allowed values"
    PERSON = "person", "Person"
    URL = "url", "URL"
