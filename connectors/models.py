from django.db import models

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
    created_at = models.DateTimeField(auto_now_add=True)

    objects = ToolConnectionQuerySet.as_manager()

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name
