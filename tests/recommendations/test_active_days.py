"""Stored lists for recent customers only (ACTIVE_DAYS): everyone else the run knows is scored
when they first ask, within the box's budget of one query (none when cached); a customer new
since the run who buys is rescored and served from their stored list."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pytest
from django.utils import timezone

from bookstore.models import Access, Order, OrderLine, User
from recommendations import cache, services
from recommendations.api import recommend_for
from recommendations.models import Recommendation, TrainingRun
from tests.recommendations.helpers import planted_store

pytestmark = pytest.mark.django_db


@pytest.fixture
def store(settings, tmp_path):
    settings.RECOMMENDATIONS = {
        **settings.RECOMMENDATIONS, "LIGHTFM": {"epochs": 10, "no_components": 16}, "LIST_SIZE": 8,
        "ARTIFACT_ROOT": str(tmp_path / "artifacts"), "ACTIVE_DAYS": 365,
    }  # fmt: skip
    store = planted_store(fans=20)
    gone = store["users"]["Beta"]  # their last visit was more than a year ago
    long_ago = timezone.now() - timedelta(days=500)
    Access.objects.filter(user__in=gone).update(first_seen=long_ago, last_seen=long_ago)
    Order.objects.filter(user__in=gone).update(created=long_ago)
    return store


@pytest.fixture
def live(store, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):  # the run goes live as in production
        run = services.retrain(evaluate=False)
    assert run.status == "succeeded", run.error
    return run


def test_only_recent_customers_get_stored_lists(store, live):
    recent, gone = store["users"]["Alpha"], store["users"]["Beta"]
    assert live.counts["customers_stored"] == len(recent) and live.counts["customers_on_demand"] == len(gone)
    stored = set(Recommendation.objects.filter(run=live, user__isnull=False).values_list("user_id", flat=True))
    assert stored == {u.pk for u in recent}
    assert live.counts["recommendations"] == Recommendation.objects.filter(run=live, user__isnull=False).count()


def test_a_customer_without_a_stored_list_gets_personal_picks_in_one_query(store, live, django_assert_num_queries):
    fan = store["users"]["Beta"][0]
    owned = set(OrderLine.objects.filter(order__user=fan).values_list("book_id", flat=True))
    services.on_demand_picks(live.pk, live.artifact, live.artifact_record, fan.pk)  # the process loads the model once
    with django_assert_num_queries(1):
        items, personal = cache.recommendations_for(fan, 6)
    assert personal and len(items) == 6
    assert {b.genres.get().name for b in items} == {"Beta"}, "the fan's own genre, as a stored list would show"
    assert not owned & {b.pk for b in items}, "never what they bought"
    with django_assert_num_queries(0):
        assert cache.recommendations_for(fan, 6) == (items, True)
    assert [b.pk for b in recommend_for(fan, 6)] == [b.pk for b in items], "the Python API agrees"

    keys, scores = services.on_demand_picks(live.pk, live.artifact, live.artifact_record, fan.pk)
    assert [b.pk for b in items] == [k for k in keys.tolist() if k not in owned][:6]
    assert np.all(np.diff(scores) <= 1e-6), "best first"


def test_a_purchase_since_the_run_is_left_out_at_once(store, live):
    fan = store["users"]["Beta"][0]
    first = cache.recommendations_for(fan, 6)[0][0]
    OrderLine.objects.create(order=Order.objects.create(user=fan), book=first, quantity=1, unit_price=first.price)
    items, personal = cache.recommendations_for(fan, 6)
    assert personal and first not in items


def test_the_json_of_a_customer_without_a_stored_list_is_personal(client, store, live):
    fan = store["users"]["Beta"][1]
    client.force_login(fan)
    data = client.get("/recommendations/me/?limit=4").json()
    assert data["personal"] is True and len(data["items"]) == 4, data


def test_the_box_falls_back_to_popular_only_for_customers_the_run_does_not_know(store, live):
    stranger = User.objects.create(username="stranger")
    items, personal = cache.recommendations_for(stranger, 6)
    assert not personal and items, "no history: the popular list"


def test_a_customer_new_since_the_run_who_buys_is_served_from_a_stored_list(
    store, live, django_assert_max_num_queries, django_capture_on_commit_callbacks
):
    newcomer = User.objects.create(username="newcomer")
    for book in store["books"]["Alpha"][:3]:
        with django_capture_on_commit_callbacks(execute=True):  # rescored once committed (an eager task)
            order = Order.objects.create(user=newcomer)
            OrderLine.objects.create(order=order, book=book, quantity=1, unit_price=book.price)
    assert Recommendation.objects.live().filter(user=newcomer).exists()
    with django_assert_max_num_queries(1):
        items, personal = cache.recommendations_for(newcomer, 6)
    assert personal and {b.genres.get().name for b in items} == {"Alpha"}


def test_without_active_days_every_customer_is_stored_and_nothing_is_loaded_to_serve(store, settings, tmp_path):
    settings.RECOMMENDATIONS = {**settings.RECOMMENDATIONS, "ACTIVE_DAYS": None}
    run = services.retrain(evaluate=False)
    assert run.counts["customers_on_demand"] == 0 and run.counts["customers_stored"] == run.counts["users"]
    assert "stored" not in run.artifact_record["arrays"]
    assert TrainingRun.objects.live().get() == run


def test_a_purchase_of_a_customer_scored_on_demand_writes_no_stored_list(store, live):
    fan = store["users"]["Beta"][2]
    assert services.rescore_user(fan.pk) == 0
    assert not Recommendation.objects.filter(run=live, user=fan).exists()
