"""Settings for the test suite: the real settings, with a throwaway key and fast password hashing.

The database still comes from DATABASE_URL, so the same suite runs on SQLite or PostgreSQL.
"""

import os

os.environ.setdefault("VSM_SECRET_KEY", "test-suite-only-key-" + "x" * 40)

from vsm.settings import *  # noqa: F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
STORAGES = {
    **STORAGES,  # noqa: F405
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
SECURE_SSL_REDIRECT = False
AXES_ENABLED = False
