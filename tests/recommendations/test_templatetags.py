"""The template tags, rendered as a template would: markup, fallbacks, and query counts."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import AnonymousUser
from django.core.cache import cache
from django.template import Context, Template

from bookstore.models import Order, OrderLine, User
from recommendations import services
from recommendations.api import popular
from tests.recommendations.helpers import planted_store

pytestmark = pytest.mark.django_db


@pytest.fixture
def live(settings):
    settings.RECOMMENDATIONS = {**settings.RECOMMENDATIONS, "LIGHTFM": {"epochs": 10, "no_components": 16}, "LIST_SIZE": 8}
    store = planted_store(fans=12)
    run = services.retrain(evaluate=False)
    assert run.status == "succeeded"
    cache.clear()
    return store


def render(source: str, **context) -> str:
    return Template("{% load recommendations %}" + source).render(Context(context))


def test_you_might_like_renders_the_customers_picks(live, django_assert_max_num_queries, django_assert_num_queries):
    fan = live["users"]["Alpha"][0]
    with django_assert_max_num_queries(1):
        html = render("{% you_might_like user limit=4 %}", user=fan)
    assert "You might like" in html and html.count('class="card"') == 4
    assert "Alpha book" in html and "Beta book" not in html
    with django_assert_num_queries(0):
        assert render("{% you_might_like user limit=4 %}", user=fan) == html


def test_anonymous_visitors_get_the_popular_list(live, django_assert_max_num_queries, django_assert_num_queries):
    with django_assert_max_num_queries(1):
        html = render("{% you_might_like user limit=3 %}", user=AnonymousUser())
    assert "Popular right now" in html and html.count('class="card"') == 3
    for book in popular(3):
        assert book.title in html
    with django_assert_num_queries(0):
        render("{% you_might_like user limit=3 %}", user=AnonymousUser())


def test_a_customer_without_a_list_gets_the_popular_list(live, django_assert_max_num_queries):
    newcomer = User.objects.create(username="newcomer")
    with django_assert_max_num_queries(1):
        html = render("{% you_might_like user limit=3 %}", user=newcomer)
    assert "Popular right now" in html and html.count('class="card"') == 3


def test_a_book_bought_after_the_run_leaves_the_box(live):
    fan = live["users"]["Alpha"][0]
    from recommendations.api import recommend_for

    first = recommend_for(fan, 4)[0]
    html = render("{% you_might_like user limit=4 %}", user=fan)  # now cached
    assert first.title in html
    order = Order.objects.create(user=fan)
    OrderLine.objects.create(order=order, book=first, quantity=1, unit_price=1)  # the save drops the cache
    html = render("{% you_might_like user limit=4 %}", user=fan)
    assert first.title not in html and html.count('class="card"') == 4


def test_similar_items_and_recommendations_for(live, django_assert_max_num_queries, django_assert_num_queries):
    book = live["books"]["Beta"][0]
    with django_assert_max_num_queries(1):
        html = render("{% similar_items book limit=3 %}", book=book)
    assert "Readers also liked" in html and html.count('class="card"') == 3 and "Alpha book" not in html
    with django_assert_num_queries(0):
        render("{% similar_items book limit=3 %}", book=book)
    fan = live["users"]["Beta"][0]
    html = render("{% recommendations_for user limit=2 as recs %}{% for b in recs %}[{{ b.product }}]{% endfor %}", user=fan)
    assert html.count("[") == 2


def test_unknown_book_and_no_live_run_render_nothing(db, django_assert_max_num_queries):
    from tests.factories import BookFactory, UserFactory

    book = BookFactory()
    with django_assert_max_num_queries(1):
        assert render("{% similar_items book %}", book=book).strip() == ""
    assert render("{% you_might_like user %}", user=UserFactory()).strip() == ""


def test_an_error_inside_the_tag_renders_the_fallback_not_an_error_page(live, monkeypatch, caplog):
    from recommendations import cache as rcache

    real = rcache._load_for_user

    def broken(user, limit):
        if user is not None:
            raise RuntimeError("injected failure")
        return real(user, limit)

    monkeypatch.setattr(rcache, "_load_for_user", broken)
    html = render("{% you_might_like user limit=3 %}", user=live["users"]["Alpha"][0])
    assert "Popular right now" in html
    assert "injected failure" in caplog.text
    monkeypatch.setattr(rcache, "_load_similar", lambda *a: (_ for _ in ()).throw(RuntimeError("boom")))
    assert render("{% similar_items book %}", book=live["books"]["Alpha"][0]).strip() == ""


def test_without_cached_html_the_lists_are_still_cached(live, settings, django_assert_num_queries):
    settings.RECOMMENDATIONS = {**settings.RECOMMENDATIONS, "CACHE_RENDERED_BOXES": False}
    fan = live["users"]["Alpha"][0]
    html = render("{% you_might_like user limit=4 %}", user=fan)
    with django_assert_num_queries(0):
        assert render("{% you_might_like user limit=4 %}", user=fan) == html


def test_the_cache_is_per_customer_and_per_run(live):
    a, b = live["users"]["Alpha"][0], live["users"]["Beta"][0]
    html_a = render("{% you_might_like user limit=4 %}", user=a)
    html_b = render("{% you_might_like user limit=4 %}", user=b)
    assert html_a != html_b
    assert render("{% you_might_like user limit=4 %}", user=a) == html_a
    run = services.retrain(evaluate=False)  # a new run goes live: old cached lists are not served
    from recommendations.models import Recommendation

    fresh = Recommendation.objects.for_user(a).top(4)
    assert all(r.run_id == run.pk for r in fresh)
    html = render("{% you_might_like user limit=4 %}", user=a)
    assert all(r.item.title in html for r in fresh)


def test_cache_errors_are_survived(live, settings):
    settings.CACHES = {
        **settings.CACHES,
        "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": "redis://127.0.0.1:1/0"},
    }
    html = render("{% you_might_like user limit=3 %}", user=live["users"]["Alpha"][0])
    assert "You might like" in html


def test_a_book_made_unavailable_leaves_cached_boxes(live):
    fan = live["users"]["Alpha"][0]
    html = render("{% you_might_like user limit=4 %}", user=fan)
    from recommendations.api import recommend_for

    first = recommend_for(fan, 4)[0]
    assert first.title in html
    first.available = False
    first.save()  # the save drops every cached box
    html = render("{% you_might_like user limit=4 %}", user=fan)
    assert first.title not in html and html.count('class="card"') == 4
