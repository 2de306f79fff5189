"""Settings come from the environment: DATABASE_URL, REDIS_URL, SECRET_KEY, DEBUG, ALLOWED_HOSTS."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PROBE = """
import json, django
from django.conf import settings
django.setup()
print(json.dumps({
    "engine": settings.DATABASES["default"]["ENGINE"],
    "name": str(settings.DATABASES["default"]["NAME"]),
    "host": settings.DATABASES["default"].get("HOST"),
    "cache": settings.CACHES["default"]["BACKEND"],
    "broker": settings.CELERY_BROKER_URL,
    "eager": settings.CELERY_TASK_ALWAYS_EAGER,
    "debug": settings.DEBUG,
    "hosts": settings.ALLOWED_HOSTS,
    "accept": settings.CELERY_ACCEPT_CONTENT,
    "prefetch": settings.CELERY_WORKER_PREFETCH_MULTIPLIER,
    "acks_late": settings.CELERY_TASK_ACKS_LATE,
}))
"""


def run(code: str, *args: str, **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL", "SECRET_KEY", "DEBUG", "ALLOWED_HOSTS"}}
    clean.update(env, DJANGO_SETTINGS_MODULE="bookstore.settings")
    return subprocess.run(
        [sys.executable, *(["-c", code] if code else []), *args], cwd=ROOT, env=clean, capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip


def probe(**env: str) -> tuple[dict, str]:
    result = run(PROBE, **env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1]), result.stderr


def test_defaults_are_sqlite_eager_tasks_and_local_memory_cache():
    values, log = probe(DEBUG="1")
    assert values["engine"] == "django.db.backends.sqlite3"
    assert values["name"] == str(ROOT / "db.sqlite3")
    assert values["eager"] is True
    assert values["cache"].endswith("LocMemCache")
    assert "REDIS_URL is not set" in log, "one log line says tasks run eagerly"
    assert values["debug"] is True


def test_database_and_redis_urls():
    values, log = probe(
        DEBUG="0", SECRET_KEY="x" * 60, DATABASE_URL="postgres://shop@db.internal:5432/shop",
        REDIS_URL="redis://cache.internal:6379/2", ALLOWED_HOSTS="shop.example.com, www.shop.example.com",
    )  # fmt: skip
    assert values["engine"] == "django.db.backends.postgresql"
    assert (values["name"], values["host"]) == ("shop", "db.internal")
    assert values["broker"] == "redis://cache.internal:6379/2"
    assert values["eager"] is False and values["cache"].endswith("RedisCache")
    assert "REDIS_URL is not set" not in log
    assert values["hosts"] == ["shop.example.com", "www.shop.example.com"]
    assert values["debug"] is False


def test_celery_queue_hygiene():
    values, _ = probe(DEBUG="1")
    assert values["accept"] == ["json"] and values["prefetch"] == 1 and values["acks_late"] is True


def test_secret_key_is_required_without_debug():
    result = run(PROBE, DEBUG="0")
    assert result.returncode != 0 and "SECRET_KEY is not set" in result.stderr


def test_bad_boolean_is_named():
    result = run(PROBE, DEBUG="maybe")
    assert result.returncode != 0 and "DEBUG='maybe'" in result.stderr


@pytest.mark.slow
def test_production_configuration_passes_check_deploy(tmp_path):
    env = {"DEBUG": "0", "SECRET_KEY": "a-long-random-production-secret-key-0123456789-abcdefghij-XYZ!",
           "ALLOWED_HOSTS": "shop.example.com", "STATIC_ROOT": str(tmp_path / "static")}  # fmt: skip
    check = ("", "manage.py", "check", "--deploy", "--fail-level", "WARNING")
    # Before collectstatic, the check says what to run (pages still render: see
    # tests/reliability/test_production_path.py).
    before = run(*check, **env)
    assert before.returncode != 0 and "bookstore.W001" in before.stderr and "collectstatic --noinput" in before.stderr
    assert run("", "manage.py", "collectstatic", "--noinput", **env).returncode == 0
    result = run(*check, **env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout
