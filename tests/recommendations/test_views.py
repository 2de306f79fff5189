"""The JSON endpoints: the signed-in customer's list only, private caching, hostile keys."""

import pytest
from django.core.cache import cache
from django.urls import reverse

from bookstore.models import Book
from recommendations import cache as lists_cache
from recommendations import services
from recommendations.api import popular, recommend_for
from tests.recommendations.helpers import planted_store

pytestmark = pytest.mark.django_db


@pytest.fixture
def live(settings):
    settings.RECOMMENDATIONS = {**settings.RECOMMENDATIONS, "LIGHTFM": {"epochs": 10, "no_components": 16}, "LIST_SIZE": 8}
    store = planted_store(fans=12)
    assert services.retrain(evaluate=False).status == "succeeded"
    cache.clear()
    return store


def test_me_returns_my_list_only(client, live):
    me, other = live["users"]["Alpha"][0], live["users"]["Beta"][0]
    client.force_login(me)
    response = client.get(reverse("recommendations:me"), {"limit": 4})
    assert response.status_code == 200
    data = response.json()
    assert data["user"] == me.username and data["personal"] is True
    assert [i["product"] for i in data["items"]] == [b.product for b in recommend_for(me, 4)]
    theirs = {b.product for b in recommend_for(other, 8)}
    assert not theirs & {i["product"] for i in data["items"]}
    assert [i["rank"] for i in data["items"]] == [1, 2, 3, 4] and data["items"][0]["url"].startswith("/books/")
    assert "private" in response["Cache-Control"] and "Cookie" in response["Vary"]

    # There is no way to ask for someone else's list.
    response = client.get(reverse("recommendations:me"), {"user": other.pk, "username": other.username})
    assert response.json()["user"] == me.username


def test_anonymous_visitors_get_the_popular_list(client, live):
    data = client.get(reverse("recommendations:me")).json()
    assert data["user"] is None and data["personal"] is False
    assert [i["product"] for i in data["items"]] == [b.product for b in popular(6)]


def test_me_is_get_only(client, live):
    assert client.post(reverse("recommendations:me")).status_code == 405


def test_similar(client, live):
    book = live["books"]["Alpha"][0]
    data = client.get(reverse("recommendations:similar", args=[book.product]), {"limit": 3}).json()
    assert data["product"] == book.product and len(data["items"]) == 3
    assert all(i["product"].startswith("A") for i in data["items"])
    assert client.get(reverse("recommendations:similar", args=["nope"])).status_code == 404
    assert client.get(reverse("recommendations:similar", args=[book.product]), {"limit": "x"}).status_code == 200


def test_similar_with_a_malformed_key_is_404(client, live, settings):
    settings.RECOMMENDATIONS = {**settings.RECOMMENDATIONS, "ITEM_KEY": "pk"}
    assert client.get(reverse("recommendations:similar", args=["abc"])).status_code == 404


def test_items_are_keyed_by_the_name_of_item_key(client, live, settings):
    """The demo's ITEM_KEY is "product"; with "pk" the field is the primary key's name."""
    settings.RECOMMENDATIONS = {**settings.RECOMMENDATIONS, "ITEM_KEY": "pk"}
    me = live["users"]["Alpha"][0]
    client.force_login(me)
    items = client.get(reverse("recommendations:me"), {"limit": 3}).json()["items"]
    assert [i["id"] for i in items] == [str(b.pk) for b in recommend_for(me, 3)]
    assert not any("product" in i for i in items)

    book = live["books"]["Alpha"][0]
    data = client.get(reverse("recommendations:similar", args=[book.pk]), {"limit": 2}).json()
    assert data["id"] == str(book.pk) and "product" not in data
    assert [set(i) for i in data["items"]] == [{"rank", "id", "title", "url"}] * 2


def test_an_item_key_through_a_relation_is_named_by_its_last_part(client, live, settings):
    settings.RECOMMENDATIONS = {**settings.RECOMMENDATIONS, "ITEM_KEY": "author__name"}
    data = client.get(reverse("recommendations:me"), {"limit": 2}).json()
    assert [i["name"] for i in data["items"]] == [b.author.name for b in popular(2)]


def test_an_unknown_item_is_a_json_404(client, live, settings):
    response = client.get(reverse("recommendations:similar", args=["nope"]))
    assert response.status_code == 404 and response["Content-Type"] == "application/json"
    assert response.json() == {"error": "No such item."}
    settings.RECOMMENDATIONS = {**settings.RECOMMENDATIONS, "ITEM_KEY": "pk"}
    response = client.get(reverse("recommendations:similar", args=["abc"]))
    assert response.status_code == 404 and response.json() == {"error": "No such item."}


def test_head_answers_like_get(client, live):
    book = live["books"]["Alpha"][0]
    for url in (reverse("recommendations:me"), reverse("recommendations:similar", args=[book.product])):
        get, head = client.get(url), client.head(url)
        assert head.status_code == get.status_code == 200
        assert head["Content-Type"] == get["Content-Type"] == "application/json"
        assert head["Cache-Control"] == get["Cache-Control"]
    assert client.head(reverse("recommendations:similar", args=["nope"])).status_code == 404
    assert client.post(reverse("recommendations:similar", args=[book.product])).status_code == 405


def test_limit_is_clamped(client, live):
    """A limit below 1 or above LIST_SIZE (8 here) is brought back into range; a limit that is
    not a number means the default, 6."""
    book = live["books"]["Alpha"][0]
    url = reverse("recommendations:similar", args=[book.product])
    assert [len(client.get(url, {"limit": n}).json()["items"]) for n in ("0", "-3", "2", "99", "x")] == [1, 1, 2, 8, 6]
    assert len(client.get(reverse("recommendations:me"), {"limit": 99}).json()["items"]) == 8


def test_a_key_no_item_can_have_is_a_json_404(client, live):
    """NUL: PostgreSQL refuses it even in a query; dot segments and an encoded slash name no item."""
    for key in ("\x00", "a\x00b", "..", ".", "x" * 100_000, "\u00b2"):
        response = client.get(reverse("recommendations:similar", args=[key]))
        assert response.status_code == 404 and response.json() == {"error": "No such item."}, key[:20]
    assert client.get("/recommendations/similar/a%2Fb/").status_code == 404


def test_an_item_whose_page_cannot_be_reversed_is_listed_with_a_null_url(client, live):
    """A book whose product id cannot be part of its page's address ("a/b", from before the
    validator or past it) makes get_absolute_url raise NoReverseMatch: listed, url null."""
    first, second = popular(2)
    Book.objects.filter(pk=first.pk).update(product="a/b")
    Book.objects.filter(pk=second.pk).update(product=".")
    lists_cache.catalogue_changed()
    items = client.get(reverse("recommendations:me")).json()["items"]
    assert [(i["product"], i["url"]) for i in items[:2]] == [("a/b", None), (".", None)]
    assert all(i["url"].startswith("/books/") for i in items[2:])
    similar = client.get(reverse("recommendations:similar", args=["."])).json()  # the app takes any key
    assert similar["product"] == "." and similar["items"]
