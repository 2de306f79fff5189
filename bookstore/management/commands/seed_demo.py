"""Fill the store with a believable, deterministic demo: books, customers, views and orders."""

from __future__ import annotations

import time
from datetime import UTC, date, datetime
from itertools import chain
from typing import Self

import numpy as np
from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import make_password
from django.core.cache import cache
from django.core.management.base import BaseCommand, CommandError
from django.db import connection, reset_queries, transaction
from django.db.models import NOT_PROVIDED
from django.utils.text import slugify

from bookstore.demo import DemoStore
from bookstore.models import Access, Author, Book, Genre, Order, OrderLine

DEMO_CUSTOMER = ("demo", "demo-reader")
DEMO_STAFF = ("staff", "staff-admin")
BATCH = 2000
COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def _aware(values: np.ndarray) -> list[datetime]:
    """numpy datetime64 array → aware UTC datetimes, vectorised as far as numpy goes."""
    return [d.replace(tzinfo=UTC) for d in values.astype("datetime64[us]").tolist()]


def _money(values: np.ndarray) -> np.ndarray:
    """Prices as the decimal text a DecimalField takes: 16.99 → "16.99"."""
    return np.array([f"{v:.2f}" for v in values.tolist()])


# A table's secondary indexes and its unique and foreign-key constraints, with the statement
# that makes each again: kind "i" (index), "u" (unique) or "f" (foreign key), name, definition.
# A primary key stays, and so does a unique constraint that another table's key refers to.
SECONDARY_SQL = """
SELECT c.contype, c.conname, pg_get_constraintdef(c.oid)
  FROM pg_constraint c
 WHERE c.conrelid = %(table)s::regclass AND (c.contype = 'f' OR c.contype = 'u' AND NOT EXISTS (
       SELECT FROM pg_constraint r WHERE r.contype = 'f' AND r.conindid = c.conindid))
 UNION ALL
SELECT 'i', i.indexrelid::regclass::text, pg_get_indexdef(i.indexrelid)
  FROM pg_index i
 WHERE i.indrelid = %(table)s::regclass AND NOT EXISTS (
       SELECT FROM pg_constraint c WHERE c.conrelid = i.indrelid AND c.conindid = i.indexrelid)
"""


class RowWriter:
    """Writes rows of a model given as columns: arrays or lists by attname (``user_id``), or
    one value for every row.  A field left out takes its default, as with ``bulk_create``.

    PostgreSQL gets one text ``COPY`` per call, formatted column by column with numpy, so
    that a store of twenty million rows is bound by the database rather than by Python or
    by memory.  Other databases get ``bulk_create`` (the demo's default size is small).

    Use it as a context manager inside the transaction that holds the rows.  On PostgreSQL
    the ``bulk`` models' tables lose their secondary indexes and their unique and
    foreign-key constraints on entry and get them back, as they were, on exit: building an
    index in one pass and checking a foreign key with one join measured four times faster
    than keeping them up to date row by row (the manual's advice for populating a
    database).  Meanwhile the transaction holds those tables locked.
    """

    def __init__(self, bulk=()) -> None:
        self.copy = connection.vendor == "postgresql"
        self.bulk = list(bulk) if self.copy else []
        self.remake: list[tuple[str, str]] = []

    def __enter__(self) -> Self:
        if self.bulk and not connection.in_atomic_block:
            raise RuntimeError("RowWriter(bulk=...) changes tables: use it inside transaction.atomic()")
        q = connection.ops.quote_name
        if self.bulk:
            # PostgreSQL alters no table with foreign-key checks pending (--flush leaves some).
            connection.check_constraints()
        with connection.cursor() as cursor:
            for model in self.bulk:
                table = q(model._meta.db_table)
                cursor.execute(SECONDARY_SQL, {"table": table})
                for kind, name, definition in cursor.fetchall():
                    if kind == "i":
                        cursor.execute(f"DROP INDEX {name}")
                        self.remake.append((kind, definition))
                    else:
                        cursor.execute(f"ALTER TABLE {table} DROP CONSTRAINT {q(name)}")
                        self.remake.append((kind, f"ALTER TABLE {table} ADD CONSTRAINT {q(name)} {definition}"))
        return self

    def __exit__(self, exc_type, *exc_info) -> None:
        if exc_type is None and self.remake:  # on an error the rollback brings them back
            connection.check_constraints()
            with connection.cursor() as cursor:
                # Indexes and unique constraints first: a foreign key may need one of them.
                for _, statement in sorted(self.remake, key=lambda item: "iuf".index(item[0])):
                    cursor.execute(statement)

    def write(self, model, columns: dict[str, object], *, ids: bool = False) -> np.ndarray:
        """Insert the rows; return their primary keys if ``ids``, in the order of the rows."""
        n = max((len(v) for v in columns.values() if isinstance(v, np.ndarray | list | tuple)), default=0)
        if n == 0:
            return np.empty(0, dtype=np.int64)
        return self._copy(model, columns, n, ids) if self.copy else self._bulk_create(model, columns, n, ids)

    def _copy(self, model, columns: dict[str, object], n: int, ids: bool) -> np.ndarray:
        opts, q = model._meta, connection.ops.quote_name
        columns = dict(columns)
        with connection.cursor() as cursor:
            pks = np.empty(0, dtype=np.int64)
            if ids:
                # Keys from the table's own sequence, so that rows written later by the site
                # (or by anyone meanwhile) never collide with these.
                cursor.execute(
                    "SELECT nextval(pg_get_serial_sequence(%s, %s)) FROM generate_series(1, %s)",
                    [opts.db_table, opts.pk.column, n],
                )
                pks = np.fromiter((row[0] for row in cursor.fetchall()), dtype=np.int64, count=n)
                columns = {opts.pk.attname: pks, **columns}
            for field in opts.concrete_fields:  # the defaults bulk_create would write ("" for text)
                if field.attname not in columns and not field.primary_key and field.db_default is NOT_PROVIDED:
                    columns[field.attname] = field.get_default()
            text = [_copy_text(values, n) for values in columns.values()]
            names = ", ".join(q(opts.get_field(name).column) for name in columns)
            with cursor.copy(f"COPY {q(opts.db_table)} ({names}) FROM STDIN") as copy:
                copy.write("\n".join(map("\t".join, zip(*text, strict=True))) + "\n")
        return pks

    def _bulk_create(self, model, columns: dict[str, object], n: int, ids: bool) -> np.ndarray:
        values = [_python_values(v, n) for v in columns.values()]
        rows = [model(**dict(zip(columns, row, strict=True))) for row in zip(*values, strict=True)]
        model.objects.bulk_create(rows, batch_size=BATCH)
        return np.array([row.pk for row in rows] if ids else [], dtype=np.int64)


def _copy_text(values: object, n: int) -> list[str]:
    """One column in COPY's text format, one string per row."""
    if not isinstance(values, np.ndarray | list | tuple):  # one value for every row
        return _copy_text([values], 1) * n
    values = np.asarray(values)
    if values.dtype.kind == "M":
        text = values.astype(str).tolist()  # ISO 8601
        return text if np.datetime_data(values.dtype)[0] in ("Y", "M", "W", "D") else [t + "+00:00" for t in text]
    if values.dtype.kind == "b":
        return np.where(values, "t", "f").tolist()
    if values.dtype.kind in "iu":
        return list(map(str, values.tolist()))
    if values.dtype.kind == "U":  # text: escaped only if some row needs it (rarely)
        text = values.tolist()
        probe = "".join(text)
        return [t.translate(COPY_ESCAPES) for t in text] if any(c in probe for c in "\\\t\n\r") else text
    return ["\\N" if v is None else str(v).translate(COPY_ESCAPES) for v in values.tolist()]


def _python_values(values: object, n: int) -> list:
    """One column as the values a model instance takes, one per row."""
    if not isinstance(values, np.ndarray | list | tuple):
        return [values] * n
    if isinstance(values, np.ndarray) and values.dtype.kind == "M":
        return values.tolist() if np.datetime_data(values.dtype)[0] == "D" else _aware(values)
    return values.tolist() if isinstance(values, np.ndarray) else list(values)


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
        until = until or datetime.now(UTC).date()
        store = DemoStore(users=users, books=books, interactions=interactions, seed=seed, until=until)
        store.make_demo_customer(0)
        with transaction.atomic():
            if flush:
                self._flush()
            with RowWriter(bulk=[get_user_model(), Access, Order, OrderLine]) as rows:
                book_pk = self._write_catalogue(rows, store)
                counts = self._write_customers_and_history(rows, store, book_pk)
            self._write_logins()
        cache.clear()
        seconds = time.monotonic() - started
        self.stdout.write(
            self.style.SUCCESS(
                f"Seeded {len(book_pk)} books, {users} customers, {counts['views']} view rows, "
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

    def _write_catalogue(self, rows: RowWriter, store: DemoStore) -> np.ndarray:
        cat = store.catalogue
        genre_pk = rows.write(Genre, {"name": cat.genre_names, "slug": [slugify(n) for n in cat.genre_names]}, ids=True)
        author_pk = rows.write(Author, {"name": cat.author_names}, ids=True)
        book_pk = rows.write(
            Book,
            {
                "product": cat.book_product,
                "title": cat.book_title,
                "author_id": author_pk[cat.book_author],
                "format": cat.book_format,
                "price": _money(cat.book_price),
                "publication_date": cat.book_published,
                "available": cat.book_available,
                "created": cat.book_created,
            },
            ids=True,
        )
        book = np.repeat(np.arange(len(cat.book_genres)), [len(g) for g in cat.book_genres])
        genre = np.fromiter(chain.from_iterable(cat.book_genres), dtype=np.int64, count=book.size)
        rows.write(Book.genres.through, {"book_id": book_pk[book], "genre_id": genre_pk[genre]})
        return book_pk

    def _write_customers_and_history(self, rows: RowWriter, store: DemoStore, book_pk: np.ndarray) -> dict[str, int]:
        User = get_user_model()
        c = store.customers
        # Imported and generated customers cannot sign in, except the demo customer below:
        # one unusable password for all, rather than a hash per customer.
        unusable = make_password(None)
        unit_price = _money(store.catalogue.book_price)
        counts = {"views": 0, "orders": 0, "lines": 0}
        for start, stop, act in store.activity():
            usernames = c.usernames[start:stop]
            user_pk = rows.write(
                User,
                {
                    "username": usernames,
                    "first_name": c.first_names[start:stop],
                    "last_name": c.last_names[start:stop],
                    "email": [f"{u}@example.com" for u in usernames],
                    "password": unusable,
                    "date_joined": c.joined[start:stop],
                },
                ids=True,
            )
            rows.write(
                Access,
                {
                    "user_id": user_pk[act.view_user - start],
                    "book_id": book_pk[act.view_book],
                    "count": act.view_count,
                    "first_seen": act.view_first,
                    "last_seen": act.view_last,
                },
            )
            counts["views"] += act.view_user.size

            if act.buy_user.size:
                first = np.flatnonzero(np.r_[True, act.buy_order[1:] != act.buy_order[:-1]])
                order_pk = rows.write(
                    Order, {"user_id": user_pk[act.buy_user[first] - start], "created": act.buy_time[first]}, ids=True
                )
                rows.write(
                    OrderLine,
                    {
                        "order_id": order_pk[act.buy_order],
                        "book_id": book_pk[act.buy_book],
                        "quantity": act.buy_quantity,
                        "unit_price": unit_price[act.buy_book],
                    },
                )
                counts["orders"] += first.size
                counts["lines"] += act.buy_user.size
            reset_queries()  # with DEBUG on, Django would keep every query's SQL
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
