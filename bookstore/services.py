"""What the store's pages do: count a view, place an order (once per click, however many
arrive), list bestsellers."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.db import transaction
from django.db.models import Case, F, PositiveIntegerField, Sum, When
from django.db.models.functions import Greatest
from django.utils import timezone

from .models import Access, Book, Order, OrderLine


def record_view(user, book: Book, *, now=None, window: timedelta | None = None) -> None:
    """Count one view of ``book`` by ``user``.

    A view counts when the same customer's previous view of the book is older than the
    dedupe window (``BOOKSTORE_VIEW_DEDUP_SECONDS``); a reload inside the window only moves
    ``last_seen``, so the window slides and a reloading session counts once.  One UPDATE
    does the check and the increment, so concurrent requests cannot double-count.
    """
    now = now or timezone.now()
    if window is None:
        window = timedelta(seconds=settings.BOOKSTORE_VIEW_DEDUP_SECONDS)
    cutoff = now - window

    def bump() -> int:
        return Access.objects.filter(user=user, book=book).update(
            count=Case(
                When(last_seen__lt=cutoff, then=F("count") + 1),
                default=F("count"),
                output_field=PositiveIntegerField(),
            ),
            last_seen=Greatest(F("last_seen"), now),
        )

    if bump():
        return
    with transaction.atomic():
        _, created = Access.objects.get_or_create(
            user=user, book=book, defaults={"count": 1, "first_seen": now, "last_seen": now}
        )
    if not created:  # another request created the row between our UPDATE and INSERT
        bump()


# Buys of the same books by one customer this close together are one purchase: a double
# click, a request the browser retried, the form sent again from a second tab.  Long enough
# for a slow connection's retry; short enough that a second copy bought on purpose a minute
# later is an order of its own.
REPEAT_BUY_WINDOW = timedelta(seconds=30)


def place_order(user, books, *, now=None, window: timedelta = REPEAT_BUY_WINDOW) -> Order:
    """Create one order with one copy of each book, at today's prices; or, when the customer
    ordered the same books within ``window`` of ``now``, return that order and create none.

    Safe when the clicks arrive at once: the customer's row is locked first (``FOR NO KEY
    UPDATE`` on PostgreSQL; on SQLite the transaction's ``BEGIN IMMEDIATE`` holds the write
    lock), so one customer's buys run one after the other and each finds the order that the
    one before it committed.  Other customers' buys do not wait.
    """
    books = list(books)
    if not books:
        raise ValueError("An order needs at least one book.")
    unavailable = [book for book in books if not book.available]
    if unavailable:
        raise ValueError(f"Not available: {', '.join(map(str, unavailable))}")
    now = now or timezone.now()
    wanted = sorted(book.pk for book in books)
    with transaction.atomic():
        # NO KEY: the lock does not hold up inserts that only reference the customer (page views).
        list(get_user_model().objects.select_for_update(no_key=True).filter(pk=user.pk).values_list("pk"))
        recent = Order.objects.filter(user=user, created__range=(now - window, now + window)).prefetch_related("lines")
        for order in recent:
            if sorted(line.book_id for line in order.lines.all()) == wanted:
                return order
        order = Order.objects.create(user=user, created=now)
        # One save per line (an order has a few): each saved line tells the recommendations
        # app, through its post_save hook, to refresh this customer's list.
        for book in books:
            OrderLine.objects.create(order=order, book=book, quantity=1, unit_price=book.price or 0)
    return order


def bestsellers(limit: int = 8, *, exclude: Iterable[Book | int] = ()) -> list[Book]:
    """Available books by copies sold, best first, without the books (or primary keys) in
    ``exclude``, such as the ones a box above the shelf shows already; the ranking is cached
    for ten minutes (a full scan)."""
    skip = {getattr(book, "pk", book) for book in exclude}
    n = limit + len(skip)
    key = f"bookstore:bestsellers:{n}"
    ids = cache.get(key)
    if ids is None:
        ids = list(
            Book.objects.available()
            .annotate(sold=Sum("order_lines__quantity"))
            .filter(sold__gt=0)
            .order_by("-sold", "product")
            .values_list("pk", flat=True)[:n]
        )
        cache.set(key, ids, 600)
    ids = [pk for pk in ids if pk not in skip]
    books = Book.objects.available().select_related("author").in_bulk(ids)
    return [books[pk] for pk in ids if pk in books][:limit]
