"""The cache holds plain values only: a JSON serializer works, and a pickle planted in Redis
runs nothing (RELIABILITY: a shared cache is not trusted to run code)."""

from __future__ import annotations

import json
import pickle
import uuid
from pathlib import Path

import pytest
from django.contrib.auth.models import AnonymousUser
from django.core.cache import cache as default_cache
from django.template import Context, Template
from django.test import Client

from recommendations import cache, services
from tests.recommendations.helpers import planted_store

pytestmark = pytest.mark.django_db


class JSONOnly:
    """A cache that stores what a JSON serializer would store, and fails on anything else."""

    def __init__(self) -> None:
        self.data: dict[str, str] = {}

    def get_many(self, keys):
        return {k: json.loads(self.data[k]) for k in keys if k in self.data}

    def get(self, key, default=None):
        return json.loads(self.data[key]) if key in self.data else default

    def set(self, key, value, timeout=None):
        self.data[key] = json.dumps(value)  # TypeError for a model instance

    def add(self, key, value, timeout=None):
        if key in self.data:
            return False
        self.set(key, value)
        return True


@pytest.fixture
def live(settings):
    settings.RECOMMENDATIONS = {**settings.RECOMMENDATIONS, "LIGHTFM": {"epochs": 10, "no_components": 16}, "LIST_SIZE": 8}
    store = planted_store(fans=12)
    assert services.retrain(evaluate=False).status == "succeeded"
    return store


def render(source: str, **context) -> str:
    return Template("{% load recommendations %}" + source).render(Context(context))


@pytest.mark.parametrize("rendered_boxes", [True, False])
def test_lists_and_boxes_are_cached_as_plain_values(live, settings, monkeypatch, rendered_boxes,
                                                    django_assert_num_queries):  # fmt: skip
    settings.RECOMMENDATIONS = {**settings.RECOMMENDATIONS, "CACHE_RENDERED_BOXES": rendered_boxes}
    store = JSONOnly()
    monkeypatch.setattr(cache, "_cache", lambda: store)
    fan, book = live["users"]["Alpha"][0], live["books"]["Alpha"][0]
    page = "{% you_might_like user limit=4 %}{% similar_items book limit=3 %}{% recommendations_for user limit=5 as recs %}" \
           "{% for b in recs %}[{{ b.product }} {{ b.price }} {{ b.author.name }}]{% endfor %}"  # fmt: skip
    cold = render(page, user=fan, book=book)
    assert cold.count('class="card"') == 7 and "Alpha author" in cold
    with django_assert_num_queries(0):  # rebuilt from plain values: the related author too
        assert render(page, user=fan, book=book) == cold
    assert any(key.startswith("recommendations:") and ":list:" in key for key in store.data)
    items, personal = cache.recommendations_for(fan, 3)
    assert personal and all(type(b).__name__ == "Book" and b.pk and b.author.name for b in items)
    assert render("{% you_might_like user limit=2 %}", user=AnonymousUser()).count('class="card"') == 2


@pytest.mark.services
def test_a_pickle_planted_in_redis_runs_nothing(live, redis_url, settings, tmp_path):
    """What was reproduced: a crafted value under the catalogue-version key ran a shell command
    on ``GET /``.  The demo's Redis cache is JSON: the value is not unpickled."""
    import redis

    assert settings.CACHES["default"]["OPTIONS"]["SERIALIZER"].endswith("JSONSerializer")
    marker = Path(tmp_path) / f"pwned-{uuid.uuid4().hex}"

    class Exploit:
        def __reduce__(self):
            return (Path.touch, (marker,))

    raw = redis.Redis.from_url(redis_url)
    for key in (cache.CATALOGUE_KEY, cache.GEN_KEY, "bookstore:nav-genres"):
        raw.set(default_cache.make_key(key), pickle.dumps(Exploit()))
    fan = live["users"]["Alpha"][0]
    client = Client()
    client.force_login(fan)
    for path in ("/", "/recommendations/me/", f"/books/{live['books']['Alpha'][0].product}/"):
        response = client.get(path)
        assert response.status_code == 200, path
    assert not marker.exists(), "a pickle from the cache was loaded"


def test_a_cached_list_of_the_wrong_shape_is_read_again(live, monkeypatch):
    store = JSONOnly()
    monkeypatch.setattr(cache, "_cache", lambda: store)
    fan = live["users"]["Alpha"][0]
    items, personal = cache.recommendations_for(fan, 3)
    for key in [k for k in store.data if ":list:" in k]:
        store.data[key] = json.dumps({"not": "a list"})
    again, personal_again = cache.recommendations_for(fan, 3)
    assert [b.pk for b in again] == [b.pk for b in items] and personal_again == personal
    response = Client()
    response.force_login(fan)
    assert response.get("/recommendations/me/").status_code == 200
