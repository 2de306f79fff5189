"""What the store's pages do: count a view, place an order, list bestsellers."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
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


def place_order(user, books, *, now=None) -> Order:
    """Create one order with one copy of each book, at today's prices."""
    books = list(books)
    if not books:
        raise ValueError("An order needs at least one book.")
    unavailable = [book for book in books if not book.available]
    if unavailable:
        raise ValueError(f"Not available: {', '.join(map(str, unavailable))}")
    with transaction.atomic():
        order = Order.objects.create(user=user, created=now or timezone.now())
        # One save per line (an order has a few): each saved line tells the recommendations
        # app, through its post_save hook, to refresh this customer's list.
        for book in books:
            OrderLine.objects.create(order=order, book=book, quantity=1, unit_price=book.price or 0)
    return order


def bestsellers(limit: int = 8) -> list[Book]:
    """Available books by copies sold, best first; cached for ten minutes (a full scan)."""
    key = f"bookstore:bestsellers:{limit}"
    ids = cache.get(key)
    if ids is None:
        ids = list(
            Book.objects.available()
            .annotate(sold=Sum("order_lines__quantity"))
            .filter(sold__gt=0)
            .order_by("-sold", "product")
            .values_list("pk", flat=True)[:limit]
        )
        cache.set(key, ids, 600)
    books = Book.objects.available().select_related("author").in_bulk(ids)
    return [books[pk] for pk in ids if pk in books]
