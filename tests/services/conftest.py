"""A real `celery worker` process on the test database, for the production-path tests."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection

from bookstore.celery import app

ROOT = Path(__file__).resolve().parents[2]
CELERY = str(Path(sys.executable).with_name("celery"))
ARTIFACTS = ROOT / "test-artifacts"


def database_url() -> str:
    s = connection.settings_dict
    user = s.get("USER") or "postgres"
    password = f":{s['PASSWORD']}" if s.get("PASSWORD") else ""
    return f"postgres://{user}{password}@{s.get('HOST') or '127.0.0.1'}:{s.get('PORT') or 5432}/{s['NAME']}"


class Worker:
    def __init__(
        self, log: Path, *, concurrency: int = 1, env: dict | None = None, queue: str | None = None,
        kinds: tuple[str, ...] = ("", ".training", ".scoring"),
    ) -> None:  # fmt: skip
        self.log = log
        self.queue = queue or settings.CELERY_TASK_DEFAULT_QUEUE
        # The default queue and the retrain's (tests/settings.py names them after it); a
        # scoring-only worker is kinds=(".scoring",).
        self.queues = ",".join(f"{self.queue}{kind}" for kind in kinds)
        self.concurrency = concurrency
        self.extra_env = env or {}
        self.name = f"w{uuid.uuid4().hex[:6]}@%h"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "tests.settings",
            "DATABASE_URL": database_url(),
            "REDIS_URL": settings.REDIS_URL,
            "TEST_CELERY_QUEUE": self.queue,
            "TEST_CACHE_PREFIX": settings.CACHES["default"].get("KEY_PREFIX", ""),
            "TEST_HEARTBEAT_SECONDS": "1",
            "TEST_MEDIA_ROOT": str(settings.MEDIA_ROOT),
            "TEST_ARTIFACT_ROOT": str(settings.RECOMMENDATIONS["ARTIFACT_ROOT"]),
            **self.extra_env,
        }
        self.proc = subprocess.Popen(
            [CELERY, "-A", "bookstore", "worker", f"--concurrency={self.concurrency}", "--loglevel=INFO", "-n", self.name,
             "-Q", self.queues, "--without-gossip", "--without-mingle", "--without-heartbeat"],
            cwd=ROOT, env=env, stdout=open(self.log, "a"), stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        prefix = self.name.split("@")[0] + "@"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"celery worker exited: {self.log.read_text()[-3000:]}")
            if any(any(k.startswith(prefix) for k in r) for r in app.control.ping(timeout=0.5)):
                return
        raise RuntimeError(f"celery worker did not answer: {self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, 15)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, 9)
                self.proc.wait()


def require_production_path() -> None:
    if connection.vendor != "postgresql" or not settings.REDIS_URL:
        from tests.conftest import missing_service

        missing_service("needs the production path: DATABASE_URL=postgres://… and REDIS_URL=redis://…")


@pytest.fixture(scope="module")
def worker(django_db_setup, django_db_blocker, tmp_path_factory):
    require_production_path()
    ARTIFACTS.mkdir(exist_ok=True)
    w = Worker(ARTIFACTS / f"worker-{uuid.uuid4().hex[:6]}.log")
    with django_db_blocker.unblock():
        w.start()
    yield w
    w.stop()


def wait_for(predicate, timeout: float, what: str, interval: float = 0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
