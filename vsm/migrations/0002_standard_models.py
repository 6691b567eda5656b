"""The standard artifact models and the four flow item types; admins may edit or extend them."""

from django.db import migrations

FLOW_ITEM_TYPES = [
    # name, slug, colour, order
    ("Feature", "feature", "#4e79a7", 1),
    ("Defect", "defect", "#e15759", 2),
    ("Risk", "risk", "#f28e2b", 3),
    ("Debt", "debt", "#76b7b2", 4),
]

PRIORITIES = ["Highest", "High", "Medium", "Low", "Lowest"]
SEVERITIES = ["Critical", "Major", "Minor", "Trivial"]

# name, slug, default flow item type slug (None: supporting artifact), description, fields
# fields: (name, label, type, required, allowed values, partner visible)
STANDARD_MODELS = [
    (
        "Request",
        "request",
        None,
        "A customer's request for a capability, with the revenue at stake.",
        [
            ("description", "Description", "rich_text", False, [], True),
            ("customer_account", "Customer account", "text", False, [], False),
            ("revenue", "Revenue at stake", "money", False, [], False),
            ("deal_breaker", "Deal-breaker", "boolean", False, [], False),
            ("requested_by", "Requested by", "person", False, [], True),
            ("priority", "Priority", "choice", False, PRIORITIES, True),
        ],
    ),
    (
        "Feature",
        "feature",
        "feature",
        "A capability the product delivers.",
        [
            ("description", "Description", "rich_text", False, [], True),
            ("priority", "Priority", "choice", False, PRIORITIES, True),
            ("owner", "Owner", "person", False, [], True),
            ("release", "Release", "text", False, [], True),
        ],
    ),
    (
        "Epic",
        "epic",
        "feature",
        "A large body of work, broken into stories.",
        [
            ("description", "Description", "rich_text", False, [], True),
            ("priority", "Priority", "choice", False, PRIORITIES, True),
            ("assignee", "Assignee", "person", False, [], True),
            ("release", "Release", "text", False, [], True),
        ],
    ),
    (
        "Story",
        "story",
        "feature",
        "A slice of a feature a team delivers in days.",
        [
            ("description", "Description", "rich_text", False, [], True),
            ("assignee", "Assignee", "person", False, [], True),
            ("story_points", "Story points", "number", False, [], True),
            ("release", "Release", "text", False, [], True),
        ],
    ),
    (
        "Task",
        "task",
        "feature",
        "A unit of work below a story.",
        [
            ("description", "Description", "rich_text", False, [], True),
            ("assignee", "Assignee", "person", False, [], True),
        ],
    ),
    (
        "Defect",
        "defect",
        "defect",
        "Something that does not work as it should.",
        [
            ("description", "Description", "rich_text", False, [], True),
            ("severity", "Severity", "choice", False, SEVERITIES, True),
            ("assignee", "Assignee", "person", False, [], True),
            ("release", "Fixed in release", "text", False, [], True),
        ],
    ),
    (
        "Case",
        "case",
        None,
        "A customer's support case.",
        [
            ("description", "Description", "rich_text", False, [], True),
            ("customer_account", "Customer account", "text", False, [], False),
            ("requester", "Requester", "person", False, [], False),
            ("priority", "Priority", "choice", False, PRIORITIES, True),
        ],
    ),
    (
        "Risk",
        "risk",
        "risk",
        "Security, compliance or governance work.",
        [
            ("description", "Description", "rich_text", False, [], True),
            ("likelihood", "Likelihood", "choice", False, ["High", "Medium", "Low"], True),
            ("impact", "Impact", "choice", False, ["High", "Medium", "Low"], True),
        ],
    ),
    (
        "Debt",
        "debt",
        "debt",
        "Work that improves the architecture or removes impediments.",
        [
            ("description", "Description", "rich_text", False, [], True),
            ("assignee", "Assignee", "person", False, [], True),
        ],
    ),
    (
        "Commit",
        "commit",
        None,
        "A change in a source repository.",
        [
            ("sha", "Commit id", "text", True, [], True),
            ("repository", "Repository", "text", False, [], True),
            ("author", "Author", "person", False, [], True),
            ("message", "Message", "text", False, [], True),
        ],
    ),
    (
        "Pull request",
        "pull-request",
        None,
        "A proposed change (pull or merge request).",
        [
            ("number", "Number", "number", True, [], True),
            ("repository", "Repository", "text", False, [], True),
            ("source_branch", "Source branch", "text", False, [], True),
            ("author", "Author", "person", False, [], True),
            ("merged_at", "Merged at", "datetime", False, [], True),
        ],
    ),
    (
        "Build",
        "build",
        None,
        "A CI build or pipeline run.",
        [
            ("job", "Job", "text", True, [], True),
            ("number", "Build number", "number", False, [], True),
            ("result", "Result", "choice", False, ["SUCCESS", "FAILURE", "UNSTABLE", "ABORTED"], True),
            ("revision", "Built revision", "text", False, [], True),
        ],
    ),
    (
        "Release",
        "release",
        None,
        "A named version shipped to customers.",
        [
            ("version", "Version", "text", True, [], True),
            ("released_at", "Released at", "datetime", False, [], True),
        ],
    ),
    (
        "Deployment",
        "deployment",
        None,
        "A deployment of a build to an environment.",
        [
            ("environment", "Environment", "text", True, [], True),
            ("result", "Result", "choice", False, ["SUCCESS", "FAILURE"], True),
        ],
    ),
    (
        "Incident",
        "incident",
        None,
        "A production incident.",
        [
            ("severity", "Severity", "choice", False, SEVERITIES, True),
            ("resolved_at", "Resolved at", "datetime", False, [], True),
        ],
    ),
]


def create_standard_models(apps, schema_editor):
    FlowItemType = apps.get_model("vsm", "FlowItemType")
    ArtifactModel = apps.get_model("vsm", "ArtifactModel")
    ModelField = apps.get_model("vsm", "ModelField")
    types = {}
    for name, slug, color, order in FLOW_ITEM_TYPES:
        types[slug], _ = FlowItemType.objects.get_or_create(
            slug=slug, defaults={"name": name, "color": color, "order": order}
        )
    for name, slug, type_slug, description, fields in STANDARD_MODELS:
        model, _ = ArtifactModel.objects.get_or_create(
            slug=slug,
            defaults={
                "name": name,
                "description": description,
                "default_flow_item_type": types.get(type_slug),
                "is_standard": True,
            },
        )
        for field_name, label, field_type, required, allowed, partner_visible in fields:
            ModelField.objects.get_or_create(
                artifact_model=model,
                name=field_name,
                defaults={
                    "label": label,
                    "field_type": field_type,
                    "required": required,
                    "allowed_values": allowed,
                    "partner_visible": partner_visible,
                },
            )


class Migration(migrations.Migration):
    dependencies = [("vsm", "0001_initial")]

    operations = [migrations.RunPython(create_standard_models, migrations.RunPython.noop)]
