"""The demo site as a user meets it: a real server process (gunicorn, production settings),
its own database, a real worker on the production path, and headless Chromium (Debian's
chromium and chromium-driver) driven by Selenium."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

import pytest
from django.conf import settings

from tests.conftest import missing_service
from tests.services.conftest import ARTIFACTS

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Site:
    """migrate, seed_demo, a first training, then gunicorn (and a worker when REDIS_URL is set)."""

    def __init__(self, workdir: Path, production: bool, *, redis_url: str | None = None, worker: bool = True,
                 size: tuple[int, int, int] = (600, 400, 20000), env: dict | None = None,
                 collect_static: bool = True) -> None:  # fmt: skip
        self.workdir, self.production, self.with_worker, self.size = workdir, production, worker, size
        self.collect_static = collect_static
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.processes: list[subprocess.Popen] = []
        self.pg_name = f"e2e_{uuid.uuid4().hex[:8]}"
        self.env = {
            **{k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL", "DJANGO_SETTINGS_MODULE"}},
            "DJANGO_SETTINGS_MODULE": "bookstore.settings",
            "DEBUG": "0",
            "SECRET_KEY": "e2e-" + uuid.uuid4().hex * 2,
            "ALLOWED_HOSTS": "127.0.0.1,localhost",
            "SECURE_SSL_REDIRECT": "0",
            "SECURE_COOKIES": "0",
            "MEDIA_ROOT": str(workdir / "media"),
            "RECOMMENDATIONS_ARTIFACT_ROOT": str(workdir / "artifacts"),
            "STATIC_ROOT": str(workdir / "static"),
            "CELERY_QUEUE": f"e2e-{uuid.uuid4().hex[:8]}",
            "CACHE_KEY_PREFIX": f"e2e-{uuid.uuid4().hex[:8]}",  # a fresh database: fresh ids, so fresh keys
        }
        self.env.update(env or {})
        if production:
            self.env["DATABASE_URL"] = f"postgres://postgres@127.0.0.1:5432/{self.pg_name}"
            self.env["REDIS_URL"] = redis_url or settings.REDIS_URL
        else:
            self.env["DATABASE_URL"] = f"sqlite:///{workdir / 'site.sqlite3'}"

    def manage(self, *args: str) -> str:
        result = subprocess.run([str(BIN / "python"), "manage.py", *args], cwd=ROOT, env=self.env,
                                capture_output=True, text=True, timeout=600)  # fmt: skip
        assert result.returncode == 0, result.stdout + result.stderr
        return result.stdout

    def start(self) -> None:
        if self.production:
            import psycopg

            with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True) as conn:
                conn.execute(f'CREATE DATABASE "{self.pg_name}"')
        self.manage("migrate", "--noinput")
        if self.collect_static:
            self.manage("collectstatic", "--noinput")  # DEBUG off: static files as a deployment has them
        users, books, interactions = self.size
        self.manage("seed_demo", "--users", str(users), "--books", str(books), "--interactions", str(interactions))
        self.manage("retrain_recommendations", "--sync", "--no-evaluate")
        (ARTIFACTS / "e2e").mkdir(parents=True, exist_ok=True)
        log = open(ARTIFACTS / "e2e" / "server.log", "a")
        self.processes.append(subprocess.Popen(
            [str(BIN / "gunicorn"), "bookstore.wsgi", "-b", f"127.0.0.1:{self.port}", "--workers", "2",
             "--threads", "4", "--timeout", "300"],
            cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        ))  # fmt: skip
        if self.production and self.with_worker:
            self.processes.append(subprocess.Popen(
                [str(BIN / "celery"), "-A", "bookstore", "worker", "--concurrency=1", "--loglevel=INFO",
                 "-Q", ",".join(f"{self.env['CELERY_QUEUE']}{kind}" for kind in ("", ".training", ".scoring")), "-n", f"e2e-{uuid.uuid4().hex[:6]}@%h", "--without-gossip", "--without-mingle"],
                cwd=ROOT, env=self.env, stdout=open(ARTIFACTS / "e2e" / "worker.log", "a"), stderr=subprocess.STDOUT,
                start_new_session=True,
            ))  # fmt: skip
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(self.url + "/", timeout=5) as response:
                    if response.status == 200:
                        return
            except OSError:
                time.sleep(0.3)
        raise RuntimeError("the site did not start; see test-artifacts/e2e/server.log")

    def query(self, sql: str, params: tuple = ()) -> list[tuple]:
        """Read the site's database directly (``%s`` placeholders)."""
        if self.production:
            import psycopg

            with psycopg.connect(f"postgresql://postgres@127.0.0.1:5432/{self.pg_name}") as conn:
                return conn.execute(sql, params).fetchall()
        import sqlite3

        with sqlite3.connect(self.workdir / "site.sqlite3", timeout=30) as conn:
            return conn.execute(sql.replace("%s", "?"), params).fetchall()

    def stop(self) -> None:
        for proc in self.processes:
            if proc.poll() is None:
                os.killpg(proc.pid, 15)
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, 9)
        if self.production:
            import psycopg

            with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{self.pg_name}" WITH (FORCE)')


@pytest.fixture
def shots() -> Path:
    folder = ARTIFACTS / "e2e"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture
def site(tmp_path, shots):
    production = bool(settings.REDIS_URL)
    if production:
        import redis

        try:
            redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=2).ping()
        except redis.RedisError as exc:
            missing_service(f"Redis at {settings.REDIS_URL} does not answer: {exc}")
    s = Site(tmp_path, production)
    try:
        s.start()
        yield s
    finally:
        s.stop()


@pytest.fixture
def browser():
    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
        missing_service("needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="chromium-e2e-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
                 f"--user-data-dir={profile}", "--window-size=1280,1500"):  # fmt: skip
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    yield driver
    driver.quit()
    shutil.rmtree(profile, ignore_errors=True)
