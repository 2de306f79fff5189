"""`celery -A bookstore worker` and `celery -A bookstore beat` start against the real Redis."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bookstore.celery import app

ROOT = Path(__file__).resolve().parent.parent
CELERY = str(Path(sys.executable).with_name("celery"))

pytestmark = [pytest.mark.services, pytest.mark.slow]


def start(*args: str, tmp_path: Path) -> subprocess.Popen:
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings"}
    log = open(tmp_path / f"{args[0]}.log", "w")
    return subprocess.Popen([CELERY, "-A", "bookstore", *args], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def test_worker_answers_a_ping(redis_url, tmp_path):
    name = f"ping-{os.getpid()}@%h"
    worker = start("worker", "--concurrency=1", "--without-gossip", "--without-mingle", "-n", name, tmp_path=tmp_path)
    try:
        deadline = time.monotonic() + 60
        replies = []
        while time.monotonic() < deadline and not replies:
            replies = [r for r in app.control.ping(timeout=1.0) if any(k.startswith(f"ping-{os.getpid()}@") for k in r)]
        assert replies, (tmp_path / "worker.log").read_text()
    finally:
        stop(worker)


def test_beat_starts(redis_url, tmp_path):
    beat = start("beat", "--schedule", str(tmp_path / "schedule"), "--loglevel=INFO", tmp_path=tmp_path)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and "beat: Starting" not in (tmp_path / "beat.log").read_text():
            time.sleep(0.3)
        assert beat.poll() is None, (tmp_path / "beat.log").read_text()
        assert "beat: Starting" in (tmp_path / "beat.log").read_text()
    finally:
        stop(beat)
