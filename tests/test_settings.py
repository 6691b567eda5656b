"""Start-up from the environment: the embedded default, production refusals, and check --deploy."""

import os
import subprocess
import sys

import pytest
from django.conf import settings

PRODUCTION_KEY = "k3Y-" + "9fQx7Lm2Pz8Rt5Vw1Ys4Bn6Hj0Dc3Ge" * 2


def run_django(command: list[str], extra_env: dict[str, str], tmp_path) -> subprocess.CompletedProcess:
    env = {name: value for name, value in os.environ.items() if not name.startswith("VSM_")}
    env.pop("DATABASE_URL", None)
    env.update({"DJANGO_SETTINGS_MODULE": "vsm.settings", "VSM_VAR_DIR": str(tmp_path), **extra_env})
    return subprocess.run(
        [sys.executable, *command],
        cwd=settings.BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


SETUP = ["-c", "import django; django.setup(); print('started')"]


def test_production_without_a_secret_key_refuses_to_start_with_one_line(tmp_path):
    result = run_django(SETUP, {}, tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0
    assert "VSM_SECRET_KEY" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("url", ["mysql//oops", "postgres://", "http://example.com/db", "nonsense"])
def test_malformed_database_url_names_the_variable(tmp_path, url):
    result = run_django(SETUP, {"VSM_SECRET_KEY": PRODUCTION_KEY, "DATABASE_URL": url}, tmp_path)
    assert result.returncode == 2
    assert "DATABASE_URL" in result.stderr
    assert "Traceback" not in result.stderr


def test_malformed_boolean_names_the_variable(tmp_path):
    result = run_django(SETUP, {"VSM_DEBUG": "maybe"}, tmp_path)
    assert result.returncode == 2
    assert "VSM_DEBUG" in result.stderr


def test_embedded_default_uses_sqlite_under_var_and_runs_tasks_in_process(tmp_path):
    probe = (
        "import django; django.setup(); from django.conf import settings as s; "
        "print(s.DATABASES['default']['ENGINE'], s.DATABASES['default']['NAME'], s.CELERY_TASK_ALWAYS_EAGER)"
    )
    result = run_django(["-c", probe], {"VSM_DEBUG": "1"}, tmp_path)
    assert result.returncode == 0, result.stderr
    engine, name, eager = result.stdout.split()
    assert engine == "django.db.backends.sqlite3"
    assert name == str(tmp_path / "vsm.sqlite3")
    assert eager == "True"


def test_database_url_and_broker_select_postgresql_and_redis(tmp_path):
    probe = (
        "import django; django.setup(); from django.conf import settings as s; "
        "print(s.DATABASES['default']['ENGINE'], s.DATABASES['default']['NAME'], s.CELERY_TASK_ALWAYS_EAGER, "
        "s.CELERY_BROKER_URL)"
    )
    extra = {
        "VSM_SECRET_KEY": PRODUCTION_KEY,
        "DATABASE_URL": "postgres://vsm:secret@db.internal:5433/portal",
        "VSM_CELERY_BROKER_URL": "redis://cache.internal:6379/1",
    }
    result = run_django(["-c", probe], extra, tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [
        "django.db.backends.postgresql",
        "portal",
        "False",
        "redis://cache.internal:6379/1",
    ]


def test_postgresql_connections_run_without_jit(tmp_path):
    """JIT compiling costs the portal's large scans more than it saves; options in the URL are kept."""
    probe = (
        "import django; django.setup(); from django.conf import settings as s; "
        "print(s.DATABASES['default']['OPTIONS'])"
    )
    url = "postgres://vsm@db.internal/portal?options=-c%20statement_timeout%3D5000"
    result = run_django(["-c", probe], {"VSM_SECRET_KEY": PRODUCTION_KEY, "DATABASE_URL": url}, tmp_path)
    assert result.returncode == 0, result.stderr
    assert "'options': '-c statement_timeout=5000 -c jit=off'" in result.stdout


def test_check_deploy_is_clean_with_a_production_environment(tmp_path):
    extra = {
        "VSM_SECRET_KEY": PRODUCTION_KEY,
        "VSM_ALLOWED_HOSTS": "vsm.example.com",
        "DATABASE_URL": f"sqlite:///{tmp_path}/prod.sqlite3",
    }
    result = run_django(["manage.py", "check", "--deploy", "--fail-level", "WARNING"], extra, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


def test_makemigrations_needs_no_secret_key_but_serving_and_migrating_still_do(tmp_path):
    checked = run_django(["manage.py", "makemigrations", "--check", "--dry-run"], {}, tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "No changes detected" in checked.stdout
    for command in (["manage.py", "migrate"], ["manage.py", "runserver", "--noreload", "127.0.0.1:0"]):
        refused = run_django(command, {}, tmp_path)
        assert refused.returncode == 2 and "VSM_SECRET_KEY" in refused.stderr, command
