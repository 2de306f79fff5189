"""Run by tests/test_other_host.py in a process of its own, with the other host's settings."""

from __future__ import annotations

import csv
import json
import random
from datetime import date, timedelta
from io import StringIO

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.utils import timezone

from recommendations.api import popular, recommend_for, similar_to
from recommendations.models import Recommendation, TrainingRun
from tests.otherhost.shop.models import Category, Label, PageView, Product, Purchase

pytestmark = pytest.mark.django_db


@pytest.fixture
def shop():
    rng = random.Random(1)
    now = timezone.now()
    cats = [Category.objects.create(title=t) for t in ("garden", "kitchen")]
    label = Label.objects.create(text="bestseller")
    products = {c.title: [] for c in cats}
    for c in cats:
        for i in range(25):
            p = Product.objects.create(
                sku=f"{c.title[:3].upper()}-{i:03d}", name=f"{c.title} thing {i}", category=c,
                cost=5.0 + i, released=date(2020 + i % 5, 1, 1),
            )  # fmt: skip
            if i % 5 == 0:
                p.labels.add(label)
            products[c.title].append(p)
    users = {}
    for c in cats:
        users[c.title] = []
        for u in range(20):
            user = User.objects.create(username=f"{c.title}-{u}")
            users[c.title].append(user)
            for j, p in enumerate(rng.sample(products[c.title], 7)):
                when = now - timedelta(days=rng.randint(1, 200), minutes=j)
                PageView.objects.create(visitor=user, product=p, hits=rng.randint(1, 3), when=when)
                if j % 3 == 0:
                    Purchase.objects.create(buyer=user, product=p, amount=1, at=when)
    return {"products": products, "users": users}


def test_checks_and_migrations_are_clean():
    out = StringIO()
    call_command("check", stdout=out)
    assert "no issues" in out.getvalue()
    call_command("makemigrations", "recommendations", "--check", "--dry-run", stdout=StringIO())


def test_trains_and_serves_with_settings_only(shop):
    out = StringIO()
    call_command("retrain_recommendations", "--sync", "--json", stdout=out)
    run = json.loads(out.getvalue())
    assert run["status"] == "succeeded", run["error"]
    assert run["counts"]["rows_purchases"] > 0 and run["counts"]["rows_page views"] > 0
    assert run["metrics"]["model"]["precision@5"] > run["metrics"]["popularity"]["precision@5"]

    gardener = shop["users"]["garden"][0]
    picks = recommend_for(gardener, 6)
    assert len(picks) == 6 and all(isinstance(p, Product) for p in picks)
    assert sum(p.category.title == "garden" for p in picks) >= 5
    bought = set(Purchase.objects.filter(buyer=gardener).values_list("product_id", flat=True))
    assert not bought & {p.sku for p in picks}
    assert all(p.category.title == "garden" for p in similar_to(shop["products"]["garden"][0], 4))
    assert len(popular(5)) == 5

    # An item taken out of stock is not served; string primary keys round-trip.
    Product.objects.filter(pk=picks[0].pk).update(in_stock=False)
    assert picks[0].pk not in [p.pk for p in recommend_for(gardener, 6)]
    assert Recommendation.objects.live().filter(item_id=picks[0].pk).exists()

    out = StringIO()
    call_command("export_recommendations", "--limit", "2", stdout=out)
    rows = list(csv.reader(out.getvalue().splitlines()))
    assert rows[0] == ["username", "product", "rank", "score"]
    assert {r[1][:3] for r in rows[1:]} <= {"GAR", "KIT"}
    assert TrainingRun.objects.live().count() == 1
