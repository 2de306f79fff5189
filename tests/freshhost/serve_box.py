"""Serve the fresh host's recommendations the ways a shop does, and print what came out as JSON.

Run from the host project's directory (``python serve_box.py``) after a retrain: a box
rendered by the template tags, the JSON endpoints called through Django's test client, and
where the ``recommendations`` package was imported from.
"""

import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mysite.settings")

import django  # noqa: E402

django.setup()

from django.test.utils import setup_test_environment  # noqa: E402

setup_test_environment()  # the test client's "testserver" host is allowed

from django.contrib.auth import get_user_model  # noqa: E402
from django.contrib.auth.models import AnonymousUser  # noqa: E402
from django.template import engines  # noqa: E402
from django.test import Client, RequestFactory  # noqa: E402

import recommendations  # noqa: E402
from django.db import transaction  # noqa: E402

from catalog.models import Order, OrderLine, Product  # noqa: E402

BOX = "{% load recommendations %}{% you_might_like user limit=6 %}"
SIMILAR = "{% load recommendations %}{% similar_items product limit=4 %}"
LIST = (
    "{% load recommendations %}{% recommendations_for user limit=6 as recs %}"
    "{% for product in recs %}{{ product.sku }} {% endfor %}"
)


def render(source: str, **context) -> str:
    request = RequestFactory().get("/")
    request.user = context.get("user") or AnonymousUser()
    return engines["django"].from_string(source).render({**context, "request": request})


def buy_and_wait_for_the_rescore(fan, sku: str) -> dict:
    """A purchase saved through the ORM, as a shop's checkout does: how long its commit took,
    and whether the customer's stored list was rescored without the product (by the worker,
    or without a broker by the web process's background thread)."""
    from recommendations import dispatch
    from recommendations.models import Recommendation

    product = Product.objects.get(sku=sku)
    started = time.perf_counter()
    with transaction.atomic():
        order = Order.objects.create(customer=fan)
        OrderLine.objects.create(order=order, product=product, quantity=1)
    committed = time.perf_counter() - started
    deadline = time.monotonic() + 60
    while Recommendation.objects.live().filter(user=fan, item=product).exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    return {
        "mode": dispatch.mode(),
        "commit_seconds": committed,
        "rescored": not Recommendation.objects.live().filter(user=fan, item=product).exists(),
        "stored": Recommendation.objects.live().filter(user=fan).count(),
    }


def main() -> dict:
    fan = get_user_model().objects.get(username="alpine-fan-0")
    product = Product.objects.get(sku="ALP-0000")
    page = Path("readme_template.html").read_text()  # the README's "The boxes" block, as pasted
    client = Client()
    anonymous = client.get("/recommendations/me/")
    client.force_login(fan)
    me = client.get("/recommendations/me/?limit=6")
    similar = client.get(f"/recommendations/similar/{product.sku}/?limit=4")
    unknown = client.get("/recommendations/similar/NO-SUCH-SKU/")
    picks = render(LIST, user=fan).split()
    readme_box = render(page, user=fan, product=product)
    bought = sorted(set(OrderLine.objects.filter(order__customer=fan).values_list("product__sku", flat=True)))
    purchase = buy_and_wait_for_the_rescore(fan, picks[0])  # last: it changes the customer's list
    return {
        "readme_box": readme_box,
        "product_name": product.name,
        "purchase": purchase,
        "python": sys.executable,
        "recommendations_file": recommendations.__file__,
        "django_file": django.__file__,
        "box": render(BOX, user=fan),
        "popular_box": render(BOX, user=None),
        "similar_box": render(SIMILAR, product=product),
        "picks": picks,
        "brand_of": dict(Product.objects.values_list("sku", "brand__name")),
        "out_of_stock": list(Product.objects.filter(in_stock=False).values_list("sku", flat=True)),
        "bought": bought,
        "me": {"status": me.status_code, "body": me.json()},
        "anonymous": {"status": anonymous.status_code, "body": anonymous.json()},
        "similar": {"status": similar.status_code, "body": similar.json()},
        "unknown_status": unknown.status_code,
        "unknown_body": unknown.json(),
        "unknown_type": unknown["Content-Type"],
    }


if __name__ == "__main__":
    print(json.dumps(main()))
