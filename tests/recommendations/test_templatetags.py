"""The template tags, rendered as a template would: markup, fallbacks, and query counts."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import AnonymousUser
from django.core.cache import cache
from django.template import Context, Engine, Template, TemplateSyntaxError

from bookstore.models import Order, OrderLine, User
from recommendations import services
from recommendations.api import popular, recommend_for, similar_to
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
    assert "Customers also liked" in html and html.count('class="card"') == 3 and "Alpha book" not in html
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


def card(book) -> str:
    """A book's link in a box: exact, where "Alpha book 1" would also match "Alpha book 10"."""
    return f'href="{book.get_absolute_url()}"'


def excluding(kind: str, items: list):
    """``exclude=`` as an item, a primary key or a list of both; and the items it leaves out."""
    if kind == "list":
        return [items[0], items[2].pk], [items[0], items[2]]
    return (items[0] if kind == "item" else items[0].pk), items[:1]


@pytest.mark.parametrize("cached_html", [True, False], ids=["html-cached", "lists-cached"])
@pytest.mark.parametrize("kind", ["item", "pk", "list"])
def test_exclude_leaves_items_out_and_keeps_the_limit(live, settings, kind, cached_html, django_assert_num_queries):
    settings.RECOMMENDATIONS = {**settings.RECOMMENDATIONS, "CACHE_RENDERED_BOXES": cached_html}
    fan = live["users"]["Alpha"][0]
    picks = recommend_for(fan, 6)
    out, left_out = excluding(kind, picks)
    source = "{% you_might_like user limit=4 exclude=out %}"
    with django_assert_num_queries(1):
        html = render(source, user=fan, out=out)
    assert html.count('class="card"') == 4 and "You might like" in html
    assert all(card(b) in html for b in [b for b in picks if b not in left_out][:4])
    assert not any(card(b) in html for b in left_out)
    with django_assert_num_queries(0):
        assert render(source, user=fan, out=out) == html

    source = "{% recommendations_for user limit=3 exclude=out as recs %}{% for b in recs %}[{{ b.pk }}]{% endfor %}"
    expected = "".join(f"[{b.pk}]" for b in [b for b in picks if b not in left_out][:3])
    with django_assert_num_queries(1):  # limit=3: not the list the box above read
        assert render(source, user=fan, out=out) == expected
    with django_assert_num_queries(0):
        assert render(source, user=fan, out=out) == expected

    book = live["books"]["Beta"][0]
    alike = similar_to(book, 6)
    out, left_out = excluding(kind, alike)
    source = "{% similar_items book limit=3 exclude=out %}"
    with django_assert_num_queries(1):
        html = render(source, book=book, out=out)
    assert html.count('class="card"') == 3
    assert all(card(b) in html for b in [b for b in alike if b not in left_out][:3])
    assert not any(card(b) in html for b in left_out)
    with django_assert_num_queries(0):
        assert render(source, book=book, out=out) == html


@pytest.mark.parametrize("cached_html", [True, False], ids=["html-cached", "lists-cached"])
def test_exclusions_share_the_cached_list_not_the_cached_box(live, settings, cached_html, django_assert_num_queries):
    """Book pages that each exclude their own book read one cached list (of limit + 1)."""
    settings.RECOMMENDATIONS = {**settings.RECOMMENDATIONS, "CACHE_RENDERED_BOXES": cached_html}
    fan = live["users"]["Alpha"][0]
    picks = recommend_for(fan, 5)
    source = "{% you_might_like user limit=4 exclude=out %}"
    with django_assert_num_queries(1):
        one = render(source, user=fan, out=picks[0])
    with django_assert_num_queries(0):
        other = render(source, user=fan, out=picks[1])
    assert card(picks[0]) not in one and card(picks[1]) in one
    assert card(picks[1]) not in other and card(picks[0]) in other
    assert one.count('class="card"') == other.count('class="card"') == 4

    book = live["books"]["Beta"][0]
    alike = similar_to(book, 5)
    source = "{% similar_items book limit=4 exclude=out %}"
    with django_assert_num_queries(1):
        one = render(source, book=book, out=alike[0])
    with django_assert_num_queries(0):
        other = render(source, book=book, out=alike[1])
    assert card(alike[0]) not in one and card(alike[1]) in one
    assert card(alike[1]) not in other and card(alike[0]) in other


def test_exclude_takes_a_queryset_and_empty_values_exclude_nothing(live):
    from bookstore.models import Book

    fan = live["users"]["Alpha"][0]
    picks = recommend_for(fan, 6)
    out = Book.objects.filter(pk__in=[b.pk for b in picks[:2]])
    html = render("{% you_might_like user limit=4 exclude=out %}", user=fan, out=out)
    assert html.count('class="card"') == 4 and not any(card(b) in html for b in picks[:2])
    for nothing in (None, "", []):
        assert render("{% you_might_like user limit=4 exclude=out %}", user=fan, out=nothing).count('class="card"') == 4
    html = render("{% you_might_like user limit=4 exclude=missing %}", user=fan)  # a variable that does not resolve
    assert all(card(b) in html for b in picks[:4])


def test_heading_replaces_the_default(live):
    fan, book = live["users"]["Alpha"][0], live["books"]["Beta"][0]
    html = render('{% you_might_like user limit=3 heading="Picked for you" %}', user=fan)
    assert "Picked for you" in html and "You might like" not in html
    html = render('{% you_might_like user limit=3 heading="Picked for you" %}', user=AnonymousUser())
    assert "Picked for you" in html and "Popular right now" not in html and html.count('class="card"') == 3
    html = render('{% similar_items book limit=3 heading="Readers also liked" %}', book=book)
    assert "Readers also liked" in html and "Customers also liked" not in html
    # Cached apart: the box without heading= keeps its default.
    assert "You might like" in render("{% you_might_like user limit=3 %}", user=fan)
    assert "Customers also liked" in render("{% similar_items book limit=3 %}", book=book)


def _engine(debug: bool = False, **templates) -> Engine:
    """An engine of the app alone (its own templates, not the demo's overrides), or with the
    given templates in front."""
    loaders = ["django.template.loaders.app_directories.Loader"]
    if templates:
        overrides = {f"recommendations/{name}.html": source for name, source in templates.items()}
        loaders.insert(0, ("django.template.loaders.locmem.Loader", overrides))
    library = "recommendations.templatetags.recommendations"
    return Engine(debug=debug, loaders=loaders, libraries={"recommendations": library})


def test_the_apps_own_templates_use_neutral_wording(live):
    engine = _engine()

    def render_app(source, **context):
        return engine.from_string("{% load recommendations %}" + source).render(Context(context))

    fan, book = live["users"]["Alpha"][0], live["books"]["Beta"][0]
    boxes = [
        render_app("{% you_might_like user limit=3 %}", user=fan),
        render_app("{% you_might_like user limit=3 %}", user=AnonymousUser()),
        render_app("{% similar_items book limit=3 %}", book=book),
    ]
    assert "You might like" in boxes[0] and "Popular right now" in boxes[1] and "Customers also liked" in boxes[2]
    assert all('<section class="recommendations' in box and box.count("<li>") == 3 for box in boxes)
    assert not any("Readers" in box for box in boxes)


BROKEN = {
    "you_might_like": "{% if items %}{{ items|no_such_filter }}{% endif %}",
    "similar_items": "{% if items %}{% url 'no-such-page' %}{% endif %}",
}


def test_an_error_in_a_box_template_is_raised_under_debug(live, settings, caplog):
    fan, book = live["users"]["Alpha"][0], live["books"]["Beta"][0]

    def render_with(engine, source, **context):
        return engine.from_string("{% load recommendations %}" + source).render(Context(context))

    production, debugging = _engine(**BROKEN), _engine(debug=True, **BROKEN)

    # Production: logged, and the page renders without the box.
    assert render_with(production, "{% you_might_like user %}", user=fan).strip() == ""
    assert render_with(production, "{% similar_items book %}", book=book).strip() == ""
    assert "no_such_filter" in caplog.text and "no-such-page" in caplog.text
    assert render_with(production, '{% you_might_like user limit="many" %}', user=fan).strip() == ""

    # The engine's debug option, or DEBUG: the developer sees the error.
    from django.urls import NoReverseMatch

    with pytest.raises(TemplateSyntaxError, match="no_such_filter"):
        render_with(debugging, "{% you_might_like user %}", user=fan)
    with pytest.raises(NoReverseMatch):
        render_with(debugging, "{% similar_items book %}", book=book)
    settings.DEBUG = True
    with pytest.raises(TemplateSyntaxError, match="no_such_filter"):
        render_with(production, "{% you_might_like user %}", user=fan)
    with pytest.raises(ValueError):
        render('{% you_might_like user limit="many" %}', user=fan)


def test_the_python_api_takes_exclude_too(live, django_assert_num_queries):
    fan, book = live["users"]["Alpha"][0], live["books"]["Beta"][0]
    picks, alike, top = recommend_for(fan, 6), similar_to(book, 6), popular(6)
    with django_assert_num_queries(3):
        assert recommend_for(fan, 4, exclude=[picks[0], picks[2].pk]) == [picks[1], *picks[3:6]]
        assert similar_to(book, 4, exclude=alike[1]) == [alike[0], *alike[2:5]]
        assert popular(4, exclude=top[0].pk) == top[1:5]
