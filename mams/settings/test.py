"""Tests: the local settings against the real Postgres and Redis started by `make test`.

Tests use Redis database 1, so a demo worker listening on database 0 never takes their tasks, and
the `openai-compatible` profile, which the suite points at its fake LLM server on loopback.
"""

from .base import env
from .local import *  # noqa: F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
# Database 1 of the configured Redis, unless told otherwise.
REDIS_URL = env.str("MAMS_TEST_REDIS_URL", REDIS_URL.rsplit("/", 1)[0] + "/1")  # noqa: F405
CELERY_BROKER_URL = REDIS_URL
LLM_DEFAULT_PROFILE = "openai-compatible"
# Two suites on one Postgres server (a helper's worktree beside main) need test databases of their own.
DATABASES["default"]["TEST"] = {"NAME": env.str("MAMS_TEST_DB_NAME", "test_" + DATABASES["default"]["NAME"])}  # noqa: F405
# Archives of test runs go under test-output/, never into the clone's .local/archive.
MAMS_ARCHIVE_URL = env.str("MAMS_ARCHIVE_URL", "") or f"file://{BASE_DIR / 'test-output' / 'archive'}"  # noqa: F405
