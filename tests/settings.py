"""Test settings: the project's settings as the environment makes them, plus speed-ups.

The default path (no ``DATABASE_URL``, no ``REDIS_URL``) is SQLite and eager tasks; the
production path is whatever ``DATABASE_URL`` and ``REDIS_URL`` name.
"""

import os

os.environ.setdefault("SECRET_KEY", "tests-only-secret-key-not-for-production-use-0123456789")

from bookstore.settings import *  # noqa: E402,F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
SECURE_SSL_REDIRECT = False
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = False
SECURE_HSTS_SECONDS = 0
STORAGES = {**STORAGES, "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}}  # noqa: F405
MEDIA_ROOT = os.environ.get("TEST_MEDIA_ROOT", "/tmp/bookstore-test-media")
STORAGES["default"] = {"BACKEND": "django.core.files.storage.FileSystemStorage", "OPTIONS": {"location": MEDIA_ROOT}}
if CACHES["default"]["BACKEND"].endswith("RedisCache"):  # noqa: F405
    # Keep test keys apart from a running site's, and from earlier test runs (their test
    # databases reused the same ids); a worker started by a test is given the same prefix.
    import uuid

    CACHES["default"]["KEY_PREFIX"] = os.environ.get("TEST_CACHE_PREFIX") or f"bookstore-tests-{uuid.uuid4().hex[:8]}"  # noqa: F405

# Background work in tests: a worker started by a test gets a queue of its own (so that
# nothing else on the shared broker interferes) and beats every second when asked to.
import uuid  # noqa: E402

CELERY_TASK_DEFAULT_QUEUE = os.environ.get("TEST_CELERY_QUEUE") or f"bookstore-tests-{uuid.uuid4().hex[:8]}"
RECOMMENDATIONS = {
    **RECOMMENDATIONS,  # noqa: F405
    "HEARTBEAT_SECONDS": float(os.environ.get("TEST_HEARTBEAT_SECONDS", "30")),
    "STALE_AFTER_SECONDS": float(os.environ.get("TEST_STALE_AFTER_SECONDS", "300")),
    # A short search: the tests check what the search does, not how well it searches.
    "SEARCH": {"trials": 6, "seconds": 600},
    # Tasks through Celery: eager on the default path (deterministic), a real broker and
    # worker on the production path.  The demo itself uses a background thread without Redis.
    "TASKS": "celery",
    # Workers and servers started by tests share it (one folder per database inside).
    "ARTIFACT_ROOT": os.environ.get("TEST_ARTIFACT_ROOT", "/tmp/bookstore-test-artifacts"),
    # The retrain's queues, beside this run's default queue (workers started by tests consume all three).
    "QUEUES": {"training": f"{CELERY_TASK_DEFAULT_QUEUE}.training", "scoring": f"{CELERY_TASK_DEFAULT_QUEUE}.scoring"},
    "SHARD_SIZE": int(os.environ.get("TEST_SHARD_SIZE", "50000")),
}
