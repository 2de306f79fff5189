"""Bad numbers in the database (RELIABILITY 10), determinism (13), view flooding (17)."""

from __future__ import annotations

import pytest
from django.db import connection

from bookstore.models import Access, Book, User
from recommendations import services
from recommendations.api import popular
from recommendations.models import Recommendation, TrainingRun
from tests.recommendations.helpers import planted_store

FAST = {"LIGHTFM": {"epochs": 10, "no_components": 16}, "LIST_SIZE": 8}


@pytest.fixture
def fast(settings):
    settings.RECOMMENDATIONS = {**settings.RECOMMENDATIONS, **FAST}


@pytest.mark.services
@pytest.mark.parametrize("value", ["NaN"])  # numeric(10, 2) cannot hold Infinity
def test_a_non_finite_price_in_postgresql_fails_the_run_and_names_the_book(postgres, fast, value):
    planted_store(fans=12)
    previous = services.retrain(evaluate=False)
    book = Book.objects.order_by("pk").first()
    with connection.cursor() as cursor:
        # PostgreSQL's numeric has NaN (and, since 14, Infinity), which the ORM cannot write
        # and which pass "price >= 0" (NaN sorts above every number).
        cursor.execute("UPDATE bookstore_book SET price = %s::numeric WHERE id = %s", [value, book.pk])
    run = services.retrain(evaluate=False)
    assert run.status == "failed"
    assert "bookstore.Book" in run.error and repr(book.pk) in run.error and "'price'" in run.error and "finite" in run.error
    previous.refresh_from_db()
    assert previous.is_live


@pytest.mark.django_db
def test_one_thread_and_a_fixed_seed_give_the_same_lists(fast):
    planted_store(fans=12)
    lists = []
    for _ in range(2):
        run = services.retrain()
        assert run.status == "succeeded"
        lists.append(list(Recommendation.objects.filter(run=run).order_by("user_id", "kind", "rank").values_list("user_id", "item_id", "rank")))
        assert run.metrics["model"]
    assert lists[0] == lists[1]
    runs = TrainingRun.objects.order_by("pk")
    strip = lambda cs: [{k: v for k, v in c.items() if k != "seconds"} for c in cs]  # noqa: E731
    assert strip(runs[0].metrics["trials"]) == strip(runs[1].metrics["trials"])


def lists_with_visitor_views(target, count: int) -> tuple[list, list]:
    Access.objects.filter(user__username="visitor").delete()
    visitor = User.objects.get_or_create(username="visitor")[0]
    Access.objects.create(user=visitor, book=target, count=count)
    services.retrain(evaluate=False)
    lists = list(Recommendation.objects.live().filter(user__isnull=False).exclude(user=visitor)
                 .order_by("user_id", "rank").values_list("user_id", "item_id"))  # fmt: skip
    return lists, [b.pk for b in popular(5)]


@pytest.mark.django_db
def test_a_session_reloading_a_page_a_thousand_times_counts_once(fast, client):
    store = planted_store(fans=12)
    target = store["books"]["Beta"][-1]
    visitor = User.objects.create(username="visitor")
    client.force_login(visitor)
    for _ in range(1000):
        assert client.get(target.get_absolute_url()).status_code == 200
    assert Access.objects.get(user=visitor, book=target).count == 1
    assert lists_with_visitor_views(target, 1000 // 1000) == lists_with_visitor_views(target, 1)


@pytest.mark.django_db
def test_an_imported_flood_weighs_no_more_than_the_heaviest_genuine_interest(fast):
    """A million views from one customer (an import, a bot) counts no more than a thousand:
    no pair weighs more than the heaviest 1 % of pairs, and popularity counts customers."""
    store = planted_store(fans=12)
    target = store["books"]["Beta"][-1]
    thousand = lists_with_visitor_views(target, 1000)
    million = lists_with_visitor_views(target, 1_000_000)
    assert million == thousand
