from celery import shared_task

from vsm import services
from vsm.models import Artifact


@shared_task(acks_late=True)
def artifact_refresh_flow_dates(artifact_id: int) -> None:
    artifact = Artifact.objects.filter(pk=artifact_id).first()
    if artifact is None:
        return
    services.artifact_refresh_flow_dates(artifact)
