"""Fixtures for the fault tests: the real worker, a throwaway Redis, the real site."""

from __future__ import annotations

import subprocess
import threading
import time

import pytest
from django.db import connection

from tests.e2e.conftest import Site, free_port  # noqa: F401
from tests.services.conftest import ARTIFACTS, worker  # noqa: F401


def at_once(n: int, fn, timeout: float = 120) -> list:
    """Call ``fn(i)`` in ``n`` threads released together, each with a database connection of
    its own; each thread's result or exception."""
    barrier = threading.Barrier(n)
    results: list = [None] * n

    def work(i: int) -> None:
        try:
            barrier.wait()
            results[i] = fn(i)
        except Exception as exc:  # noqa: BLE001 - the result is what we check
            results[i] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=work, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout)
    assert not any(t.is_alive() for t in threads), "a thread hung"
    return results


class ThrowawayRedis:
    """A redis-server of our own on a free port, to stop and start at will (never the shared one)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        ARTIFACTS.mkdir(exist_ok=True)
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=open(ARTIFACTS / f"redis-{self.port}.log", "a"), stderr=subprocess.STDOUT,
        )  # fmt: skip
        import redis

        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                redis.Redis(port=self.port, socket_connect_timeout=0.5).ping()
                return
            except redis.RedisError:
                time.sleep(0.1)
        raise RuntimeError("throwaway redis-server did not start")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


@pytest.fixture
def throwaway_redis():
    import shutil

    if not shutil.which("redis-server"):
        from tests.conftest import missing_service

        missing_service("needs redis-server on PATH")
    r = ThrowawayRedis()
    r.start()
    yield r
    r.stop()
