"""Redis stops (RELIABILITY 4): pages keep rendering with their boxes, and the admin's
"Retrain now" says the broker is unreachable instead of failing, and records the attempt.
The site runs in gunicorn on PostgreSQL against a throwaway redis-server."""

from __future__ import annotations

import pytest
from django.conf import settings

from tests.reliability.http import Session, box_products

pytestmark = [pytest.mark.services, pytest.mark.slow]


def test_pages_render_and_the_admin_reports_the_broker_when_redis_is_down(tmp_path, throwaway_redis):
    if not settings.REDIS_URL:
        from tests.conftest import missing_service

        missing_service("needs the production path (PostgreSQL and Redis)")
    from tests.reliability.conftest import Site

    site = Site(tmp_path, production=True, redis_url=throwaway_redis.url, worker=False)
    try:
        site.start()
        customer, staff, visitor = Session(site.url), Session(site.url), Session(site.url)
        customer.sign_in("demo", "demo-reader")
        staff.sign_in("staff", "staff-admin", "/admin/login/")
        status, html, _, _ = customer.request("/")
        before = box_products(html)
        assert status == 200 and before and "You might like" in html

        throwaway_redis.stop()

        status, html, _, _ = customer.request("/")
        assert status == 200 and box_products(html) == before, "the box is read from the database"
        product = before[0]
        status, html, _, _ = visitor.request(f"/books/{product}/")
        assert status == 200 and box_products(html), "visitors get the popular list"
        status, html, _, _ = customer.request(f"/recommendations/me/")
        assert status == 200

        # A purchase and "Retrain now" wait for the broker at most PUBLISH_TIMEOUT (2 s), not
        # for kombu's reconnection attempts (6 s per rescore, 19 s per click before).
        status, _, bought_in, _ = customer.post(f"/books/{product}/buy/", follow=False)
        assert status in (302, 303) and bought_in < 5, (status, bought_in)
        status, html, clicked_in, head = staff.post("/admin/recommendations/trainingrun/retrain/", follow=False)
        assert status == 302 and clicked_in < 5, (status, clicked_in)
        status, html, _, _ = staff.request(head["Location"])
        assert status == 200, html[-2000:]
        assert "the task broker is unreachable" in html
        rows = site.query("SELECT status, error FROM recommendations_trainingrun ORDER BY id DESC LIMIT 1")
        assert rows[0][0] == "failed" and "unreachable" in rows[0][1], rows

        throwaway_redis.start()
        status, html, _, _ = staff.post("/admin/recommendations/trainingrun/retrain/")
        assert status == 200 and "Retrain queued" in html, "the failed attempt does not block the next one"
    finally:
        site.stop()
