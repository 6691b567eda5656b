"""Django settings, read from the environment only (prefix VSM_, plus DATABASE_URL).

Defaults are the embedded mode: SQLite under var/, Celery tasks run in-process. With VSM_DEBUG off
(the default) a secret key is required.
"""

from pathlib import Path
from urllib.parse import urlsplit

import environ

from vsm.config import ConfigError, exit_on_config_error, read_bool, read_database, read_int

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(environ.Env().str("VSM_VAR_DIR", default=str(BASE_DIR / "var")))

env = environ.Env()
# The embedded SQLite database and collected static files live here; make sure it exists.
(VAR_DIR / "static").mkdir(parents=True, exist_ok=True)

try:
    DEBUG = read_bool(env, "VSM_DEBUG", False)
    SECRET_KEY = env.str("VSM_SECRET_KEY", default="")
    if not SECRET_KEY:
        if not DEBUG:
            raise ConfigError(
                "VSM_SECRET_KEY is not set; set it to a long random string (or VSM_DEBUG=1 for local use)"
            )
        SECRET_KEY = "insecure-local-development-key-only-used-with-VSM_DEBUG-on"  # noqa: S105
    DATABASES = {"default": read_database(env, VAR_DIR / "vsm.sqlite3")}
    ALLOWED_HOSTS = env.list("VSM_ALLOWED_HOSTS", default=["127.0.0.1", "localhost"] if DEBUG else [])
    CSRF_TRUSTED_ORIGINS = env.list("VSM_CSRF_TRUSTED_ORIGINS", default=[])
    SECURE_SSL_REDIRECT = read_bool(env, "VSM_SECURE_SSL_REDIRECT", not DEBUG)
    SECURE_HSTS_SECONDS = read_int(env, "VSM_HSTS_SECONDS", 0 if DEBUG else 31536000)
    BEHIND_TLS_PROXY = read_bool(env, "VSM_BEHIND_TLS_PROXY", False)
    CELERY_BROKER_URL = env.str("VSM_CELERY_BROKER_URL", default="")
    TASK_QUEUE_PREFIX = env.str("VSM_TASK_QUEUE_PREFIX", default="")
    RATE_LIMIT_REDIS_URL = env.str(
        "VSM_RATE_LIMIT_REDIS_URL", default=CELERY_BROKER_URL if CELERY_BROKER_URL.startswith("redis") else ""
    )
    SESSION_COOKIE_AGE = read_int(env, "VSM_SESSION_SECONDS", 8 * 3600)
    LOG_LEVEL = env.str("VSM_LOG_LEVEL", default="INFO").upper()
    CREDENTIALS_KEY = env.str("VSM_CREDENTIALS_KEY", default="")
    AXES_FAILURE_LIMIT = read_int(env, "VSM_LOGIN_FAILURE_LIMIT", 5)
    # Reverse proxies in front of the app that append to X-Forwarded-For (vsm.security.client_address).
    TRUSTED_PROXIES = read_int(env, "VSM_TRUSTED_PROXIES", 0, minimum=0)
    # The OpenAPI schema and its docs page answer anonymous requests only when opened here.
    API_SCHEMA_PUBLIC = read_bool(env, "VSM_API_SCHEMA_PUBLIC", False)
    # The first wait before an integration retries an item that failed; it doubles per attempt.
    SYNC_RETRY_SECONDS = read_int(env, "VSM_SYNC_RETRY_SECONDS", 30)
    # How many items an integration creates in a tool at once (the connection's rate cap still holds).
    SYNC_CONCURRENT_WRITES = read_int(env, "VSM_SYNC_CONCURRENT_WRITES", 4)
except ConfigError as error:
    exit_on_config_error(error)

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_celery_beat",
    "django_celery_results",
    "axes",
    "csp",
    "vsm",
    "connectors",
    "metrics",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    # After WhiteNoise, which answers static files itself: those stay cacheable, nothing else is.
    "vsm.security.NoStoreMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "csp.middleware.CSPMiddleware",
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "vsm.urls"
WSGI_APPLICATION = "vsm.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "portal:landing"  # where each role works (vsm.portal.views.landing)
LOGOUT_REDIRECT_URL = "login"

AXES_COOLOFF_TIME = 1  # hours
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_TEMPLATE = "portal/locked_out.html"
AXES_CLIENT_IP_CALLABLE = "vsm.security.client_address"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
STATICFILES_DIRS = [BASE_DIR / "vsm" / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            "django.contrib.staticfiles.storage.StaticFilesStorage"
            if DEBUG
            else "whitenoise.storage.CompressedManifestStaticFilesStorage"
        )
    },
}
MEDIA_ROOT = VAR_DIR / "media"

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Security: production defaults, each overridable from the environment above.
SESSION_COOKIE_SECURE = not DEBUG
CSRF_COOKIE_SECURE = not DEBUG
SESSION_COOKIE_HTTPONLY = True
SECURE_HSTS_INCLUDE_SUBDOMAINS = SECURE_HSTS_SECONDS > 0
SECURE_HSTS_PRELOAD = SECURE_HSTS_SECONDS > 0
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
# Content Security Policy (django-csp): scripts and styles only from our own static files, no inline
# code (pages pass data to scripts in <script type="application/json"> islands), never framed.
SELF, NONE = "'self'", "'none'"
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF],
        "style-src": [SELF],
        "img-src": [SELF, "data:"],
        "font-src": [SELF],
        "connect-src": [SELF],
        "object-src": [NONE],
        "base-uri": [SELF],
        "form-action": [SELF],
        "frame-ancestors": [NONE],
    }
}
if BEHIND_TLS_PROXY:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        # Token first, so an unauthenticated request answers 401 with WWW-Authenticate.
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_FILTER_BACKENDS": [
        "django_filters.rest_framework.DjangoFilterBackend",
        "rest_framework.filters.OrderingFilter",
    ],
    "DEFAULT_PAGINATION_CLASS": "vsm.api.pagination.StandardPagination",
    "PAGE_SIZE": 50,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "vsm.api.exceptions.api_exception_handler",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Value stream portal API",
    "DESCRIPTION": "Products, artifacts across tools, their state transitions and trace links.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "ENUM_NAME_OVERRIDES": {"FlowStateEnum": "vsm.choices.FlowState"},
    "SERVE_PERMISSIONS": ["vsm.api.permissions.SchemaAccess"],
}

# Computed figures (metrics.selectors.cached_per_reach): with a Redis broker, db 3 of its server, shared
# by the web workers; embedded, each process's memory.
CACHES = {
    "default": (
        {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": urlsplit(CELERY_BROKER_URL)._replace(path="/3").geturl(),
        }
        if CELERY_BROKER_URL.startswith("redis")
        else {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}
    )
}

# Celery: without a broker, tasks run in-process (the embedded mode).
CELERY_TASK_ALWAYS_EAGER = not CELERY_BROKER_URL
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_BROKER_URL = CELERY_BROKER_URL or "memory://"
CELERY_RESULT_BACKEND = "django-db"
CELERY_RESULT_EXTENDED = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
# Besides the per-scope schedules (edited in admin), the safety nets: the integrations' pass over all
# their items, and a full scan (deletions) of each scope once a day.
CELERY_BEAT_SCHEDULE = {
    "integrations-sweep": {"task": "connectors.tasks.integrations_sweep_task", "schedule": 10 * 60},
    "scopes-full-scan": {"task": "connectors.tasks.scopes_full_scan_sweep_task", "schedule": 60 * 60},
}
CELERY_TIMEZONE = "UTC"
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Queues, so that a long full scan never holds up a webhook or a write to a tool: ingest (reading tools,
# relinking, and the metrics rollups that follow each ingest page), propagation (integrations writing
# to tools), webhooks (a delivery's targeted re-read), and the default queue for the rest. The prefix
# lets deployments (or test runs) share one Redis.
CELERY_TASK_DEFAULT_QUEUE = f"{TASK_QUEUE_PREFIX}celery"
CELERY_TASK_ROUTES = {
    task: {"queue": f"{TASK_QUEUE_PREFIX}{queue}"}
    for task, queue in {
        "connectors.tasks.scope_sync_task": "ingest",
        "connectors.tasks.scope_full_scan_task": "ingest",
        "connectors.tasks.scopes_full_scan_sweep_task": "ingest",
        "connectors.tasks.sync_error_retry_task": "ingest",
        "connectors.tasks.connection_relink_task": "ingest",
        "metrics.tasks.*": "ingest",
        "connectors.tasks.integration*": "propagation",
        "connectors.tasks.webhook_delivery_task": "webhooks",
    }.items()
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django.db.backends": {"level": "INFO"},
        "axes": {"level": "WARNING"},
        # httpx logs whole URLs at INFO; some tools (Targetprocess) carry tokens in the query string.
        "httpx": {"level": "WARNING"},
        "httpcore": {"level": "WARNING"},
    },
}
