"""No Docker engine runs here: check that compose.yaml only names entry points that exist."""

import importlib
import shlex
from pathlib import Path

import pytest
import yaml
from django.conf import settings

DOCKER_DIR = Path(settings.BASE_DIR) / "docker"
APP_SERVICES = {"web", "worker", "beat"}


@pytest.fixture(scope="module")
def compose():
    return yaml.safe_load((DOCKER_DIR / "compose.yaml").read_text())


def as_argv(command) -> list[str]:
    return command if isinstance(command, list) else shlex.split(command)


def test_compose_runs_web_worker_beat_postgres_and_redis_with_health_checks(compose):
    services = compose["services"]
    assert set(services) >= APP_SERVICES | {"postgres", "redis"}
    for name in ("web", "worker", "postgres", "redis"):
        assert "healthcheck" in services[name], name
    assert {"postgres-data", "redis-data"} <= set(compose["volumes"])
    for name in APP_SERVICES:
        assert services[name]["depends_on"]["postgres"]["condition"] == "service_healthy"


def test_every_app_command_names_an_entry_point_that_exists(compose):
    for name in APP_SERVICES:
        argv = as_argv(compose["services"][name]["command"])
        if argv[0] == "gunicorn":
            module, attribute = argv[1].split(":")
            assert callable(getattr(importlib.import_module(module), attribute)), name
        elif argv[0] == "celery":
            app_module = argv[argv.index("-A") + 1]
            app = importlib.import_module(app_module).celery_app
            assert app.main == "vsm"
            assert argv[argv.index("-A") + 2] in {"worker", "beat"}
            if "-S" in argv:
                scheduler = argv[argv.index("-S") + 1]
                assert scheduler == "django"
                importlib.import_module("django_celery_beat.schedulers")
        else:
            pytest.fail(f"{name}: unknown command {argv[0]}")


def test_dockerfile_is_slim_non_root_collects_static_and_runs_gunicorn():
    dockerfile = (DOCKER_DIR / "Dockerfile").read_text()
    assert dockerfile.startswith("FROM python:3.11-slim")
    assert "\nUSER vsm\n" in dockerfile
    assert "collectstatic --noinput" in dockerfile
    assert '"gunicorn", "vsm.wsgi:application"' in dockerfile
    for copied in ("vsm", "connectors", "metrics", "templates", "manage.py", "docker/entrypoint.sh"):
        assert (Path(settings.BASE_DIR) / copied).exists(), copied
