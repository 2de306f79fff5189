"""An import killed midway leaves nothing behind (RELIABILITY 15), on PostgreSQL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest

from tests.services.conftest import require_production_path

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.services, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

COUNT_SQL = "SELECT (SELECT count(*) FROM bookstore_access), (SELECT count(*) FROM bookstore_orderline), " \
            "(SELECT count(*) FROM bookstore_book), (SELECT count(*) FROM bookstore_importedinteraction)"  # fmt: skip


def test_sigkill_during_the_write_leaves_no_partial_import(tmp_path):
    require_production_path()
    from django.db import connection

    s = connection.settings_dict
    url = f"postgres://{s.get('USER') or 'postgres'}@{s['HOST'] or '127.0.0.1'}:{s['PORT'] or 5432}/{s['NAME']}"
    export = tmp_path / "export.csv"
    subprocess.run(
        [sys.executable, "bench/make_export.py", str(export), "--users", "20000", "--books", "3000", "--interactions", "300000"],
        cwd=ROOT, check=True, capture_output=True,
    )  # fmt: skip
    env = {**os.environ, "DATABASE_URL": url, "DJANGO_SETTINGS_MODULE": "tests.settings"}
    proc = subprocess.Popen([sys.executable, "manage.py", "import_interactions", str(export)], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)  # fmt: skip
    with psycopg.connect(url.replace("postgres://", "postgresql://"), autocommit=True) as watcher:
        deadline = time.monotonic() + 120
        writing = False
        while time.monotonic() < deadline and proc.poll() is None:
            # The second pass writes page views: the transaction is open and half full.
            writing = watcher.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND query ILIKE '%%bookstore_importedinteraction%%' AND pid <> pg_backend_pid()"
            ).fetchone()[0] > 0
            if writing:
                break
            time.sleep(0.05)
        assert writing, "the import never reached its write pass"
        time.sleep(0.5)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(30)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # PostgreSQL notices the dead connection and rolls back
            if not watcher.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                                   "AND pid <> pg_backend_pid() AND state <> 'idle'").fetchone()[0]:  # fmt: skip
                break
            time.sleep(0.2)
        assert watcher.execute(COUNT_SQL).fetchone() == (0, 0, 0, 0)

    done = subprocess.run([sys.executable, "manage.py", "import_interactions", str(export)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "rows already imported: 0" in done.stdout
