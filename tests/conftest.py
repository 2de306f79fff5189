"""Shared fixtures: factories, and access to the real services of the production path.

A test that needs a service skips when the service is absent, unless ``CI`` is set: then it
fails, so that a CI run cannot pass by skipping what it was meant to prove.
"""

from __future__ import annotations

import os

import pytest
from django.conf import settings
from django.db import connection

IN_CI = bool(os.environ.get("CI"))

# tests/otherhost/ is a second host project with its own settings; tests/test_other_host.py
# runs it in a process of its own.
collect_ignore = [] if os.environ.get("DJANGO_SETTINGS_MODULE") == "tests.otherhost.settings" else ["otherhost"]


def missing_service(reason: str) -> None:
    if IN_CI:
        pytest.fail(f"{reason} (CI is set, so this is a failure, not a skip)")
    pytest.skip(reason)


@pytest.fixture
def postgres(db):
    """The test database, when it is PostgreSQL (the production path)."""
    if connection.vendor != "postgresql":
        missing_service("needs PostgreSQL: set DATABASE_URL=postgres://… (the production path)")
    return connection


@pytest.fixture
def redis_url() -> str:
    """The Redis of the production path, answering."""
    url = settings.REDIS_URL
    if not url:
        missing_service("needs Redis: set REDIS_URL=redis://… (the production path)")
    import redis

    try:
        redis.Redis.from_url(url, socket_connect_timeout=2).ping()
    except redis.RedisError as exc:
        missing_service(f"Redis at {url} does not answer: {exc}")
    return url


@pytest.fixture(autouse=True)
def _fresh_local_cache():
    """Each test starts with an empty local-memory cache: SQLite reuses the ids of rolled-back
    rows, so a run or a customer of one test could otherwise meet another test's entries.
    (A Redis cache is left alone: it also carries the broker's messages.)"""
    from django.core.cache import caches

    for alias in settings.CACHES:
        if settings.CACHES[alias]["BACKEND"].endswith("LocMemCache"):
            caches[alias].clear()


@pytest.fixture(autouse=True)
def _fresh_process_state():
    """Each test starts without a remembered broker failure or loaded model artifact."""
    from recommendations import dispatch, services

    dispatch.broker_recovered()
    services._live_model.cache_clear()
