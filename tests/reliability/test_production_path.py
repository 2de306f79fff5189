"""The production path as documented, and as operators break it (RELIABILITY 13.3, 13.4):
pages before ``collectstatic``; persistent connections the database dropped."""

from __future__ import annotations

import re

import pytest
from django.conf import settings

from tests.reliability.http import Session

pytestmark = [pytest.mark.slow]


def test_pages_render_with_debug_off_before_collectstatic(tmp_path):
    """Reproduced: every HTML page answered 500 with DEBUG=0 until collectstatic had run."""
    from tests.reliability.conftest import Site

    site = Site(tmp_path, production=False, size=(60, 40, 2000), collect_static=False)
    try:
        site.start()
        visitor = Session(site.url)
        status, html, _, _ = visitor.request("/")
        assert status == 200, html[-2000:]
        css = re.search(r'href="([^"]+\.css)"', html).group(1)
        status, body, _, _ = visitor.request(css)
        assert status == 200 and "{" in body, css
        status, _, _, _ = visitor.request("/books/")
        assert status == 200
    finally:
        site.stop()


@pytest.mark.services
def test_a_dropped_database_connection_costs_no_request(tmp_path):
    """Reproduced: all backends terminated, then 40 requests: 8 answered 500 (one per
    persistent connection).  With CONN_HEALTH_CHECKS each is checked before use."""
    if not settings.REDIS_URL:
        from tests.conftest import missing_service

        missing_service("needs the production path (PostgreSQL and Redis)")
    from tests.reliability.conftest import Site

    site = Site(tmp_path, production=True, size=(60, 40, 2000), worker=False)
    try:
        site.start()
        visitor = Session(site.url)
        for _ in range(40):  # every worker thread holds a persistent connection
            assert visitor.request("/books/")[0] == 200
        terminated = site.query(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )[0][0]
        assert terminated >= 1
        statuses = [visitor.request("/books/")[0] for _ in range(40)]
        assert statuses == [200] * 40, statuses
    finally:
        site.stop()
