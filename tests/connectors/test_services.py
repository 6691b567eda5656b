import json

import pytest
from django.core.management import CommandError, call_command
from django_celery_beat.models import PeriodicTask

from connectors.services import SCOPE_SYNC_TASK, scope_delete, scope_schedule_save
from tests.factories import ScopeFactory

pytestmark = pytest.mark.django_db


def test_a_scope_schedule_becomes_one_periodic_task_kept_in_step():
    scope = ScopeFactory(interval_minutes=15)
    task = scope_schedule_save(scope)
    assert task.task == SCOPE_SYNC_TASK
    assert json.loads(task.args) == [scope.pk]
    assert (task.interval.every, task.interval.period, task.enabled) == (15, "minutes", True)

    scope.interval_minutes = 5
    scope.enabled = False
    scope_schedule_save(scope)
    assert PeriodicTask.objects.filter(task=SCOPE_SYNC_TASK).count() == 1
    task.refresh_from_db()
    assert (task.interval.every, task.enabled) == (5, False)


def test_sync_command_names_an_unknown_scope():
    with pytest.raises(CommandError, match="no scope with id or name 'nope'"):
        call_command("sync", "nope")


def test_deleting_a_scope_deletes_its_schedule():
    scope = ScopeFactory()
    task = scope_schedule_save(scope)
    scope_delete(scope)
    assert not PeriodicTask.objects.filter(pk=task.pk).exists()
