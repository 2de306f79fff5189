"""Small stores for the engine's tests, built through the demo store's models."""

from __future__ import annotations

import random
from datetime import timedelta
from decimal import Decimal

from django.utils import timezone

from bookstore.models import Access, Author, Book, Genre, Order, OrderLine, User


def planted_store(*, per_genre: int = 30, fans: int = 25, picks: int = 8, seed: int = 0) -> dict:
    """Fans of genre A buy and view A books, fans of B buy and view B books."""
    rng = random.Random(seed)
    now = timezone.now()
    genres = {g: Genre.objects.create(name=g, slug=g.lower()) for g in ("Alpha", "Beta")}
    books = {}
    for name, genre in genres.items():
        authors = [Author.objects.create(name=f"{name} author {i}") for i in range(per_genre // 5)]
        shelf = []
        for i in range(per_genre):
            book = Book.objects.create(
                product=f"{name[0]}{i}", title=f"{name} book {i}", author=authors[i % len(authors)],
                format="printedbook", price=Decimal("10.00") + i % 7,
            )  # fmt: skip
            book.genres.add(genre)
            shelf.append(book)
        books[name] = shelf
    users = {"Alpha": [], "Beta": []}
    for name in ("Alpha", "Beta"):
        for u in range(fans):
            user = User.objects.create(username=f"{name.lower()}-fan-{u}")
            users[name].append(user)
            chosen = rng.sample(books[name], picks)
            for j, book in enumerate(chosen):
                when = now - timedelta(days=rng.randint(1, 300), minutes=j)
                Access.objects.create(user=user, book=book, count=rng.randint(1, 4), first_seen=when, last_seen=when)
                if j % 2 == 0:
                    order = Order.objects.create(user=user, created=when + timedelta(hours=1))
                    OrderLine.objects.create(order=order, book=book, quantity=1, unit_price=book.price)
    return {"genres": genres, "books": books, "users": users}
