"""Fill the store with a believable, deterministic demo: books, customers, views and orders."""

from __future__ import annotations

import time
from datetime import date, datetime, timezone

import numpy as np
from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import make_password
from django.core.cache import cache
from django.core.management.base import BaseCommand, CommandError
from django.db import reset_queries, transaction
from django.utils.text import slugify

from bookstore.demo import DemoStore
from bookstore.models import Access, Author, Book, Genre, Order, OrderLine

DEMO_CUSTOMER = ("demo", "demo-reader")
DEMO_STAFF = ("staff", "staff-admin")
BATCH = 2000


def _aware(values: np.ndarray) -> list[datetime]:
    """numpy datetime64 array → aware UTC datetimes, vectorised as far as numpy goes."""
    return [d.replace(tzinfo=timezone.utc) for d in values.astype("datetime64[us]").tolist()]


class Command(BaseCommand):
    help = (
        "Fill the store with demo data: genres, authors, books, customers with hidden tastes, "
        "page views and orders over the last year. Deterministic for a seed."
    )

    def add_arguments(self, parser):
        parser.add_argument("--users", type=int, default=1500, help="customers (default 1500)")
        parser.add_argument("--books", type=int, default=800, help="books (default 800)")
        parser.add_argument(
            "--interactions", type=int, default=60000, help="about this many view and order-line rows (default 60000)"
        )
        parser.add_argument("--seed", type=int, default=42, help="random seed (default 42)")
        parser.add_argument(
            "--until", type=date.fromisoformat, default=None, help="last day of the history, YYYY-MM-DD (default today)"
        )
        parser.add_argument("--flush", action="store_true", help="delete the store's data (not staff) first")
        parser.add_argument("--if-empty", action="store_true", help="do nothing when the store already has books")

    def handle(self, *args, users, books, interactions, seed, until, flush, if_empty, **options):
        if users < 1 or books < 1 or interactions < 0:
            raise CommandError("--users and --books must be at least 1, --interactions at least 0.")
        if if_empty and Book.objects.exists():
            self.stdout.write("The store already has books: nothing to seed.")
            self._print_logins()
            return
        if not flush and (Book.objects.exists() or Order.objects.exists() or Access.objects.exists()):
            raise CommandError("The store already has data. Use --flush to replace it, or --if-empty to skip.")

        started = time.monotonic()
        until = until or datetime.now(timezone.utc).date()
        store = DemoStore(users=users, books=books, interactions=interactions, seed=seed, until=until)
        store.make_demo_customer(0)
        with transaction.atomic():
            if flush:
                self._flush()
            book_ids = self._write_catalogue(store)
            counts = self._write_customers_and_history(store, book_ids)
            self._write_logins()
        cache.clear()
        seconds = time.monotonic() - started
        self.stdout.write(
            self.style.SUCCESS(
                f"Seeded {len(book_ids)} books, {users} customers, {counts['views']} view rows, "
                f"{counts['orders']} orders with {counts['lines']} lines (seed {seed}, until {until}) "
                f"in {seconds:.1f} s."
            )
        )
        self._print_logins()

    # -----------------------------------------------------------------------------------------
    def _flush(self) -> None:
        User = get_user_model()
        Access.objects.all().delete()
        OrderLine.objects.all().delete()
        Order.objects.all().delete()
        Book.genres.through.objects.all().delete()
        Book.objects.all().delete()
        Author.objects.all().delete()
        Genre.objects.all().delete()
        User.objects.filter(is_staff=False, is_superuser=False).delete()

    def _write_catalogue(self, store: DemoStore) -> list[int]:
        cat = store.catalogue
        genres = Genre.objects.bulk_create(Genre(name=n, slug=slugify(n)) for n in cat.genre_names)
        authors = Author.objects.bulk_create((Author(name=n) for n in cat.author_names), batch_size=BATCH)
        created = _aware(cat.book_created)
        published = cat.book_published.astype("datetime64[D]").tolist()
        book_ids: list[int] = []
        through = Book.genres.through
        for start in range(0, len(cat.book_product), BATCH):
            stop = min(start + BATCH, len(cat.book_product))
            rows = [
                Book(
                    product=cat.book_product[i],
                    title=cat.book_title[i],
                    author_id=authors[cat.book_author[i]].pk,
                    format=str(cat.book_format[i]),
                    price=f"{cat.book_price[i]:.2f}",
                    publication_date=published[i],
                    available=bool(cat.book_available[i]),
                    created=created[i],
                )
                for i in range(start, stop)
            ]
            Book.objects.bulk_create(rows)
            book_ids.extend(b.pk for b in rows)
            through.objects.bulk_create(
                through(book_id=book_ids[i], genre_id=genres[g].pk) for i in range(start, stop) for g in cat.book_genres[i]
            )
        return book_ids

    def _write_customers_and_history(self, store: DemoStore, book_ids: list[int]) -> dict[str, int]:
        User = get_user_model()
        c = store.customers
        book_pk = np.asarray(book_ids)
        joined = _aware(c.joined)
        # Imported and generated customers cannot sign in, except the demo customer below.
        unusable = make_password(None)
        counts = {"views": 0, "orders": 0, "lines": 0}
        prices = store.catalogue.book_price
        for start, stop, act in store.activity():
            people = [
                User(
                    username=c.usernames[i],
                    first_name=c.first_names[i],
                    last_name=c.last_names[i],
                    email=f"{c.usernames[i]}@example.com",
                    password=unusable,
                    date_joined=joined[i],
                )
                for i in range(start, stop)
            ]
            User.objects.bulk_create(people, batch_size=BATCH)
            user_pk = np.asarray([p.pk for p in people])

            first, last = _aware(act.view_first), _aware(act.view_last)
            views = [
                Access(user_id=u, book_id=b, count=n, first_seen=f, last_seen=l)
                for u, b, n, f, l in zip(
                    user_pk[act.view_user - start].tolist(),
                    book_pk[act.view_book].tolist(),
                    act.view_count.tolist(),
                    first,
                    last,
                    strict=True,
                )
            ]
            Access.objects.bulk_create(views, batch_size=BATCH)
            counts["views"] += len(views)

            if act.buy_user.size:
                starts = np.flatnonzero(np.r_[True, act.buy_order[1:] != act.buy_order[:-1]])
                times = _aware(act.buy_time[starts])
                orders = [
                    Order(user_id=u, created=t)
                    for u, t in zip(user_pk[act.buy_user[starts] - start].tolist(), times, strict=True)
                ]
                Order.objects.bulk_create(orders, batch_size=BATCH)
                order_pk = np.asarray([o.pk for o in orders])
                lines = [
                    OrderLine(order_id=o, book_id=b, quantity=q, unit_price=f"{p:.2f}")
                    for o, b, q, p in zip(
                        order_pk[act.buy_order].tolist(),
                        book_pk[act.buy_book].tolist(),
                        act.buy_quantity.tolist(),
                        prices[act.buy_book].tolist(),
                        strict=True,
                    )
                ]
                OrderLine.objects.bulk_create(lines, batch_size=BATCH)
                counts["orders"] += len(orders)
                counts["lines"] += len(lines)
            reset_queries()  # with DEBUG on, Django would keep every bulk INSERT's SQL
            if stop < store.n_users and store.n_users > 20000:
                self.stderr.write(f"  customers {stop}/{store.n_users}", ending="\r")
        return counts

    def _write_logins(self) -> None:
        User = get_user_model()
        demo = User.objects.get(username=DEMO_CUSTOMER[0])
        demo.set_password(DEMO_CUSTOMER[1])
        demo.save(update_fields=["password"])
        staff, _ = User.objects.get_or_create(
            username=DEMO_STAFF[0], defaults={"email": "staff@example.com", "first_name": "Sam", "last_name": "Staff"}
        )
        staff.is_staff = staff.is_superuser = True
        staff.set_password(DEMO_STAFF[1])
        staff.save()

    def _print_logins(self) -> None:
        self.stdout.write(
            f"Demo customer: {DEMO_CUSTOMER[0]} / {DEMO_CUSTOMER[1]}    "
            f"Staff (admin): {DEMO_STAFF[0]} / {DEMO_STAFF[1]}"
        )
