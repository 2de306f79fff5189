"""Reading interaction sources: a binary COPY on PostgreSQL, ``values_list`` elsewhere, and
either way the same arrays as reading the rows through the ORM one by one."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import numpy as np
import pytest
from django.conf import settings as django_settings
from django.db import connection

from bookstore.models import Book, OrderLine, User
from recommendations.ml.matrices import DataError
from recommendations.sources import ModelSource, RawSource
from tests.recommendations.helpers import planted_store

pytestmark = pytest.mark.django_db

DEMO = {config["name"]: config for config in django_settings.RECOMMENDATIONS["SOURCES"]}
SOURCES = [
    DEMO["purchases"],  # integer weights, date and time through a join
    DEMO["views"],
    # Decimal weights, a date (NULL for some books), a filter whose value must be bound as data.
    {"name": "priced", "model": "bookstore.OrderLine", "user": "order__user", "item": "book", "weight": "unit_price",
     "timestamp": "book__publication_date", "filter": {"book__title__contains": "it's 50% off"}, "exclude": True},
    # No weight; a date and time that is NULL for customers who never logged in.
    {"name": "seen", "model": "bookstore.Access", "user": "user", "item": "book", "timestamp": "user__last_login"},
    # Text keys: read through the ORM on every database.
    {"name": "by_product", "model": "bookstore.Access", "user": "user__username", "item": "book__product",
     "weight": "count", "timestamp": "last_seen"},
]  # fmt: skip
CHUNK = 7  # rows per chunk: every source spans several


@pytest.fixture
def store():
    planted = planted_store(per_genre=10, fans=6, picks=5)
    rng = random.Random(1)
    books = Book.objects.order_by("pk")
    for n, book in enumerate(books):
        book.publication_date = date(1990, 1, 1) + timedelta(days=rng.randint(0, 12000)) if n % 3 else None
        book.title = f"{book.title}, it's 50% off" if n % 2 else book.title
        book.save()
    for user in User.objects.order_by("pk")[1::2]:
        seen = datetime(2026, 5, 1, 12, 30, 15, rng.randint(0, 999999), tzinfo=UTC)
        user.last_login = seen - timedelta(days=rng.randint(0, 300))
        user.save()
    every_other = OrderLine.objects.values_list("pk", flat=True)[::2]
    OrderLine.objects.filter(pk__in=list(every_other)).update(unit_price=Decimal("12.99"))
    return planted


def seconds(value) -> float:
    if value is None:
        return np.nan
    if not isinstance(value, datetime):
        value = datetime(value.year, value.month, value.day, tzinfo=UTC)
    return value.timestamp()


def orm_reading(config: dict, **lookups) -> RawSource:
    """The source's rows through the ORM, converted one value at a time: the expected answer."""
    source = ModelSource(config)
    paths = [p for p in (source.user_path, source.item_path, source.weight_path, source.time_path) if p]
    rows = list(source.queryset().filter(**lookups).values_list(*paths))
    n = len(rows)
    return RawSource(
        name=source.name,
        users=np.array([r[0] for r in rows]),
        items=np.array([r[1] for r in rows]),
        values=np.array([float(r[2]) for r in rows]) if source.weight_path else np.ones(n),
        times=np.array([seconds(r[-1]) for r in rows]) if source.time_path else np.full(n, np.nan),
        scale=source.scale,
        transform=source.transform,
        exclude=source.exclude,
    )


def assert_same(got: RawSource, want: RawSource) -> None:
    def ordered(raw: RawSource) -> list[np.ndarray]:
        order = np.lexsort((raw.times, raw.values, raw.items, raw.users))
        return [raw.users[order], raw.items[order], raw.values[order], raw.times[order]]

    assert (got.name, got.scale, got.transform, got.exclude) == (want.name, want.scale, want.transform, want.exclude)
    for name, g, w in zip(("users", "items", "values", "times"), ordered(got), ordered(want), strict=True):
        assert g.dtype == w.dtype, name
        np.testing.assert_array_equal(g, w, err_msg=name)  # NaN where NaN, every other value exactly


def test_every_source_reads_as_the_orm_does(store):
    """SQLite on the default path, PostgreSQL's COPY (and the ORM for text keys) on the other."""
    for config in SOURCES:
        want = orm_reading(config)
        assert want.users.size > 2 * CHUNK, config["name"]
        assert_same(ModelSource(config).read(CHUNK), want)
    priced = orm_reading(SOURCES[2])
    assert 0 < priced.users.size < orm_reading(DEMO["purchases"]).users.size, "the filter applies"
    assert np.isnan(priced.times).any() and np.isfinite(priced.times).any()
    assert np.isnan(orm_reading(SOURCES[3]).times).any()


def test_one_customer_and_no_rows(store):
    fan = store["users"]["Alpha"][0]
    for config in SOURCES[:4]:  # keyed by the customer's pk
        assert_same(ModelSource(config).read_user(fan.pk), orm_reading(config, **{config["user"]: fan.pk}))
    nobody = ModelSource({**DEMO["views"], "filter": {"count__gt": 1000}}).read(CHUNK)
    assert nobody.users.size == nobody.items.size == nobody.values.size == nobody.times.size == 0


@pytest.mark.services
def test_postgresql_copies_what_it_can(postgres, store):
    for config in SOURCES:
        source = ModelSource(config)
        copied = source._copy_columns(source.queryset()) is not None
        assert copied == (config["name"] != "by_product"), config["name"]


def test_a_missing_weight_names_a_row_with_it(store):
    # The first order line's book: its rows come before the last chunk (a COPY still running).
    book = OrderLine.objects.order_by("pk").first().book
    Book.objects.filter(pk=book.pk).update(price=None)
    buyers = OrderLine.objects.filter(book=book).values_list("order__user_id", flat=True)
    with pytest.raises(DataError) as error:
        ModelSource({**DEMO["purchases"], "weight": "book__price"}).read(CHUNK)
    assert str(error.value) in {
        f"Source 'purchases' (bookstore.OrderLine): 'book__price' is None for user {user}, item {book.pk}; "
        "weights must be finite numbers."
        for user in buyers
    }


@pytest.mark.services
def test_a_nan_weight_in_postgresql_names_the_row_as_the_orm_path_does(postgres, store, monkeypatch):
    line = OrderLine.objects.select_related("order").order_by("pk")[3]
    with connection.cursor() as cursor:
        # numeric holds NaN, which the ORM cannot write and which passes "unit_price >= 0".
        cursor.execute("UPDATE bookstore_orderline SET unit_price = 'NaN'::numeric WHERE id = %s", [line.pk])
    source = ModelSource({**DEMO["purchases"], "weight": "unit_price"})
    expected = (
        f"Source 'purchases' (bookstore.OrderLine): 'unit_price' is NaN for user {line.order.user_id}, "
        f"item {line.book_id}; weights must be finite numbers."
    )
    with pytest.raises(DataError) as copied:
        source.read(CHUNK)
    monkeypatch.setattr(ModelSource, "_copy_columns", lambda self, queryset: None)
    with pytest.raises(DataError) as read_by_orm:
        source.read(CHUNK)
    assert str(copied.value) == str(read_by_orm.value) == expected
