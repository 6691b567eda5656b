"""Reading settings from the environment, failing start-up with one clear line.

A traceback for a missing variable hides the one fact the operator needs, so configuration errors
print a single line that names the variable and exit.
"""

import sys
from pathlib import Path
from urllib.parse import urlsplit

import environ

ALLOWED_DATABASE_SCHEMES = {"postgres", "postgresql", "pgsql", "sqlite"}


class ConfigError(Exception):
    """A setting is missing or malformed; the message names the variable and how to fix it."""


def exit_on_config_error(error: ConfigError) -> None:
    sys.stderr.write(f"VSM configuration error: {error}\n")
    raise SystemExit(2)


def read_bool(env: environ.Env, name: str, default: bool) -> bool:
    raw = env.str(name, default="")
    if raw == "":
        return default
    lowered = raw.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise ConfigError(f"{name}={raw!r} is not a boolean; use 1/0, true/false, yes/no or on/off")


def read_int(env: environ.Env, name: str, default: int, *, minimum: int | None = None) -> int:
    raw = env.str(name, default="")
    if raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a whole number") from None
    if minimum is not None and value < minimum:
        raise ConfigError(f"{name}={raw!r} is below {minimum}")
    return value


def read_database(env: environ.Env, default_sqlite: Path) -> dict:
    url = env.str("DATABASE_URL", default="")
    if not url:
        return {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": str(default_sqlite),
            "OPTIONS": {"timeout": 20},
        }
    parts = urlsplit(url)
    if parts.scheme not in ALLOWED_DATABASE_SCHEMES:
        raise ConfigError(
            "DATABASE_URL is malformed: expected postgres://USER:PASSWORD@HOST:PORT/NAME "
            "or sqlite:////absolute/path.sqlite3"
        )
    if parts.scheme != "sqlite" and not parts.path.strip("/"):
        raise ConfigError("DATABASE_URL names no database: expected postgres://USER@HOST:PORT/NAME")
    try:
        config = environ.Env.db_url_config(url)
    except Exception as error:  # django-environ raises assorted types for bad URLs
        raise ConfigError(f"DATABASE_URL is malformed ({error.__class__.__name__})") from None
    if config["ENGINE"].endswith("postgresql"):
        # PostgreSQL's JIT compiles every query with a large cost estimate (the portal's scans of a
        # product's ledger) for 0.2-0.3 s, more than most of them take to run.
        options = config.setdefault("OPTIONS", {})
        options["options"] = f"{options.get('options', '')} -c jit=off".strip()
    config["CONN_MAX_AGE"] = read_int(env, "VSM_DB_CONN_MAX_AGE", 60)
    config["CONN_HEALTH_CHECKS"] = True
    return config
