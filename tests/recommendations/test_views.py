"""The JSON endpoints: the signed-in customer's list only, private caching."""

import pytest
from django.core.cache import cache
from django.urls import reverse

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
