"""Fill the fresh host's catalog with a shop whose right answers are known, then print its size.

Run from the host project's directory (``python seed_shop.py``).  Three brands, each with
its own tag; every customer is a fan of one brand and views and buys mostly that brand's
products, so a sound model recommends a customer their brand.  One product per brand is out
of stock and must never be recommended.
"""

import json
import os
import random
from datetime import timedelta
from decimal import Decimal

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mysite.settings")

import django  # noqa: E402

django.setup()

from django.contrib.auth import get_user_model  # noqa: E402
from django.db import transaction  # noqa: E402
from django.utils import timezone  # noqa: E402

from catalog.models import Brand, Order, OrderLine, Product, ProductView, Tag  # noqa: E402

BRANDS = ("Alpine", "Harbour", "Meadow")
PRODUCTS_PER_BRAND = 20
FANS_PER_BRAND = 25


@transaction.atomic
def seed(rng: random.Random) -> dict:
    now = timezone.now()
    shared = Tag.objects.create(name="gift")
    products: dict[str, list[Product]] = {}
    for b, name in enumerate(BRANDS):
        brand = Brand.objects.create(name=name)
        own = Tag.objects.create(name=f"{name.lower()}-line")
        products[name] = Product.objects.bulk_create(
            Product(sku=f"{name[:3].upper()}-{i:04d}", name=f"{name} item {i}", brand=brand,
                    price=Decimal(10 + 5 * b + i), in_stock=i != PRODUCTS_PER_BRAND - 1)
            for i in range(PRODUCTS_PER_BRAND)
        )  # fmt: skip
        for i, product in enumerate(products[name]):
            product.tags.add(own, *([shared] if i % 4 == 0 else []))

    User = get_user_model()
    fans = {}
    for name in BRANDS:
        fans[name] = User.objects.bulk_create(User(username=f"{name.lower()}-fan-{u}") for u in range(FANS_PER_BRAND))
    views, lines = [], []
    for name in BRANDS:
        others = [p for other in BRANDS if other != name for p in products[other]]
        for user in fans[name]:
            seen = rng.sample(products[name][:-1], 8) + rng.sample(others, 1)
            for j, product in enumerate(seen):
                when = now - timedelta(days=rng.randint(1, 200), minutes=j)
                views.append(ProductView(user=user, product=product, count=rng.randint(1, 4), last_seen=when))
                if j % 3 == 0 and product.brand.name == name:
                    order = Order.objects.create(customer=user, placed_at=when)
                    lines.append(OrderLine(order=order, product=product, quantity=rng.randint(1, 2)))
    ProductView.objects.bulk_create(views)
    OrderLine.objects.bulk_create(lines)
    return {"products": Product.objects.count(), "customers": User.objects.count(),
            "views": len(views), "order_lines": len(lines)}  # fmt: skip


if __name__ == "__main__":
    print(json.dumps(seed(random.Random(7))))
