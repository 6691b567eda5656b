"""Writes to the core domain."""

from django.db import transaction

from vsm.flow import derive_flow_dates
from vsm.models import Artifact


@transaction.atomic
def artifact_refresh_flow_dates(artifact: Artifact) -> Artifact:
    """Recompute first-started and done times from the artifact's transition ledger."""
    artifact = Artifact.objects.select_for_update().get(pk=artifact.pk)
    ledger = artifact.transitions.order_by("at", "id").values_list("at", "to_state")
    dates = derive_flow_dates(ledger, artifact.flow_state)
    if (artifact.first_started_at, artifact.done_at) != (dates.first_started_at, dates.done_at):
        artifact.first_started_at = dates.first_started_at
        artifact.done_at = dates.done_at
        artifact.save(update_fields=["first_started_at", "done_at"])
    return artifact
