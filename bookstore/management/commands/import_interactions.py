"""Import a legacy export (CSV) of purchases and page views: all of it, or nothing.

    python manage.py import_interactions FILE.csv [--dry-run] [--max-errors N]

The file is read twice, streaming: first every row is validated (nothing is written if
any row is bad, and the report names file, line, column and value); then, in one
transaction, authors, genres, books, customers, orders and page views are written in
bulk, chunk by chunk.  Each row's natural key (username, product, type, timestamp) is
recorded, so importing the same file again changes nothing.  Rows of one file that share a
key add up (copies bought, page views): a legacy export without timestamps lists two
purchases of the same book as two identical rows.
"""

from __future__ import annotations

import hashlib
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field, replace
from pathlib import Path

from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import make_password
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.db import reset_queries, transaction
from django.db.models.functions import Lower
from django.utils import timezone
from django.utils.text import slugify
from tqdm import tqdm

from bookstore import importing
from bookstore.models import (
    Access,
    Author,
    Book,
    Genre,
    ImportBatch,
    ImportedInteraction,
    Order,
    OrderLine,
)

CHUNK = 5000
MAX_TOTAL = 2_147_483_647  # the largest copies or views one order line or page-view row holds (an integer column)


@dataclass
class BookInfo:
    """What the file says about one product; later non-empty values win, genres add up."""

    title: str = ""
    price: object = None
    model: str = ""
    published: object = None
    author: str = ""
    genres: dict[str, str] = field(default_factory=dict)  # casefold -> spelling

    def merge(self, row: importing.Row) -> None:
        self.title = row.title or self.title
        self.price = row.price if row.price is not None else self.price
        self.model = row.model or self.model
        self.published = row.publishing_dt or self.published
        self.author = row.author or self.author
        for genre in row.genres:
            self.genres.setdefault(genre.casefold(), genre)


class _HashingReader:
    """A binary file that hashes what is read from it."""

    def __init__(self, fh) -> None:
        self.fh, self.sha256 = fh, hashlib.sha256()

    def read(self, n: int = -1) -> bytes:
        data = self.fh.read(n)
        self.sha256.update(data)
        return data


class Command(BaseCommand):
    help = "Import purchases and page views from a legacy CSV export (all rows or none)."

    def add_arguments(self, parser):
        parser.add_argument("file", help="CSV file: number,type,username,product,price,model,publishing_dt,author,genres[,title][,timestamp]")
        parser.add_argument("--dry-run", action="store_true", help="validate and count, write nothing")
        parser.add_argument("--max-errors", type=int, default=50, help="report at most this many bad rows (default 50)")

    def handle(self, *args, file: str, dry_run: bool, max_errors: int, **options):
        started = time.monotonic()
        path = Path(file)
        if not path.is_file():
            raise CommandError(f"{file}: no such file.")
        self.name, self.size = file, path.stat().st_size

        books, users, counts, sha256 = self._validate(path, max_errors)
        if not dry_run:
            done = ImportBatch.objects.filter(sha256=sha256, finished__isnull=False).first()
            if done:
                self.stdout.write(f"{file} was already imported on {done.finished:%Y-%m-%d %H:%M} (import #{done.pk}): nothing to do.")
                return
        if dry_run:
            summary = self._dry_run_summary(books, users, counts)
        else:
            with transaction.atomic():
                summary = self._write(path, sha256, books, users, counts)
        summary["seconds"] = round(time.monotonic() - started, 1)
        self._report(summary, dry_run)

    # -- pass 1: validate everything -------------------------------------------------------------
    def _validate(self, path: Path, max_errors: int):
        books: dict[str, BookInfo] = defaultdict(BookInfo)
        users: set[str] = set()
        counts = {"rows": 0, "orderline": 0, "access": 0}
        problems: list[importing.Problem] = []
        n_problems = 0
        username_field = get_user_model()._meta.get_field(get_user_model().USERNAME_FIELD)
        checked_usernames: set[str] = set()
        with path.open("rb") as fh, self._progress("checking") as bar:
            reader = _HashingReader(fh)
            try:
                for item in importing.read(reader):
                    bar.update(reader.fh.tell() - bar.n)
                    if isinstance(item, importing.Row) and item.username not in checked_usernames:
                        try:
                            username_field.run_validators(item.username)
                            checked_usernames.add(item.username)
                        except ValidationError as exc:
                            item = importing.Problem(item.line, "username", item.username, " ".join(exc.messages))
                    if isinstance(item, importing.Problem):
                        n_problems += 1
                        if len(problems) < max_errors:
                            problems.append(item)
                        continue
                    counts["rows"] += 1
                    counts[item.type] += 1
                    users.add(item.username)
                    books[item.product].merge(item)
            except importing.ImportFileError as exc:
                raise CommandError(f"{self.name}: {exc} Nothing was imported.") from None
        if n_problems:
            lines = [p.format(self.name) for p in problems]
            if n_problems > len(problems):
                lines.append(f"… and {n_problems - len(problems)} more.")
            raise CommandError(
                f"{n_problems} bad row(s) in {self.name}; nothing was imported:\n" + "\n".join(lines)
            )
        if counts["rows"] == 0:
            raise CommandError(f"{self.name}: no rows after the header; nothing was imported.")
        return books, users, counts, reader.sha256.hexdigest()

    def _progress(self, what: str):
        return tqdm(
            total=self.size, unit="B", unit_scale=True, desc=f"{what} {Path(self.name).name}",
            disable=not sys.stderr.isatty(), file=sys.stderr, leave=False,
        )  # fmt: skip

    # -- pass 2: write ---------------------------------------------------------------------------
    def _write(self, path: Path, sha256: str, books: dict[str, BookInfo], users: set[str], counts: dict) -> dict:
        summary = {"rows": counts["rows"]}
        batch = ImportBatch.objects.create(filename=str(path), sha256=sha256, rows=counts["rows"])
        author_ids = self._authors({info.author for info in books.values() if info.author}, summary)
        genre_ids = self._genres({g for info in books.values() for g in info.genres.values()}, summary)
        book_ids = self._books(books, author_ids, genre_ids, summary)
        user_ids = self._users(users, summary)
        summary.update(
            orders_created=0, order_lines_created=0, order_lines_updated=0, views_created=0, views_updated=0,
            rows_added_to_an_earlier_row=0, rows_already_imported=0,
        )  # fmt: skip
        with path.open("rb") as fh, self._progress("importing") as bar:
            chunk: list[importing.Row] = []
            for row in importing.read(fh):
                bar.update(fh.tell() - bar.n)
                chunk.append(row)  # every row is valid: checked in the first pass
                if len(chunk) >= CHUNK:
                    self._write_chunk(chunk, batch, book_ids, user_ids, summary)
                    chunk = []
                    reset_queries()  # with DEBUG on, Django would keep every bulk INSERT's SQL
            if chunk:
                self._write_chunk(chunk, batch, book_ids, user_ids, summary)
        batch.finished = timezone.now()
        batch.counts = summary
        batch.save(update_fields=["finished", "counts"])
        return summary

    def _authors(self, names: set[str], summary: dict) -> dict[str, int]:
        existing = {low: pk for low, pk in Author.objects.annotate(low=Lower("name")).values_list("low", "pk")}
        new = {name.casefold(): name for name in names if name.casefold() not in existing}
        created = Author.objects.bulk_create([Author(name=name) for name in new.values()], batch_size=1000)
        existing.update({a.name.casefold(): a.pk for a in created})
        summary["authors_created"] = len(created)
        return existing

    def _genres(self, names: set[str], summary: dict) -> dict[str, int]:
        existing = {low: pk for low, pk in Genre.objects.annotate(low=Lower("name")).values_list("low", "pk")}
        slugs = set(Genre.objects.values_list("slug", flat=True))
        new = []
        for name in sorted(names, key=str.casefold):
            if name.casefold() in existing or any(g.name.casefold() == name.casefold() for g in new):
                continue
            base = slugify(name)[:90] or "genre"
            slug, i = base, 2
            while slug in slugs:
                slug, i = f"{base}-{i}", i + 1
            slugs.add(slug)
            new.append(Genre(name=name, slug=slug))
        created = Genre.objects.bulk_create(new)
        existing.update({g.name.casefold(): g.pk for g in created})
        summary["genres_created"] = len(created)
        return existing

    def _books(self, books: dict[str, BookInfo], author_ids, genre_ids, summary: dict) -> dict[str, int]:
        ids: dict[str, int] = {}
        created = updated = 0
        products = list(books)
        through = Book.genres.through
        for start in range(0, len(products), CHUNK):
            part = products[start : start + CHUNK]
            existing = {b.product: b for b in Book.objects.filter(product__in=part)}
            to_create, to_update = [], []
            for product in part:
                info = books[product]
                book = existing.get(product)
                if book is None:
                    book = Book(product=product)
                    to_create.append(book)
                changed = False
                for attr, value in (
                    ("title", info.title), ("price", info.price), ("format", info.model),
                    ("publication_date", info.published),
                    ("author_id", author_ids.get(info.author.casefold()) if info.author else None),
                ):  # fmt: skip
                    if value not in (None, "") and getattr(book, attr) != value:
                        setattr(book, attr, value)
                        changed = True
                if changed and book.pk:
                    to_update.append(book)
            Book.objects.bulk_create(to_create, batch_size=1000)
            if to_update:
                Book.objects.bulk_update(to_update, ["title", "price", "format", "publication_date", "author"], batch_size=1000)
            created += len(to_create)
            updated += len(to_update)
            for product in part:
                ids[product] = existing[product].pk if product in existing else None
            for book in to_create:
                ids[book.product] = book.pk
            links = [
                through(book_id=ids[product], genre_id=genre_ids[low])
                for product in part
                for low in books[product].genres
            ]
            through.objects.bulk_create(links, ignore_conflicts=True, batch_size=1000)
        summary["books_created"], summary["books_updated"] = created, updated
        return ids

    def _users(self, usernames: set[str], summary: dict) -> dict[str, int]:
        User = get_user_model()
        field = User.USERNAME_FIELD
        ids: dict[str, int] = {}
        names = sorted(usernames)
        unusable = make_password(None)  # imported customers cannot sign in until they reset
        created = 0
        for start in range(0, len(names), CHUNK):
            part = names[start : start + CHUNK]
            ids.update(User.objects.filter(**{f"{field}__in": part}).values_list(field, "pk"))
            new = [User(**{field: name}, password=unusable) for name in part if name not in ids]
            User.objects.bulk_create(new, batch_size=1000)
            ids.update((getattr(u, field), u.pk) for u in new)
            created += len(new)
        summary["customers_created"] = created
        return ids

    def _write_chunk(self, rows: list[importing.Row], batch, book_ids, user_ids, summary: dict) -> None:
        # Rows of this file that share a natural key (customer, product, type, timestamp) add
        # up: a legacy export without timestamps lists two purchases of a book as two rows.  A
        # key that an earlier import recorded is skipped, so importing a file again adds nothing.
        by_key: dict[str, importing.Row] = {}
        copies: dict[str, int] = defaultdict(int)  # rows per key in this chunk
        for row in rows:
            first = by_key.get(row.key)
            by_key[row.key] = row if first is None else replace(first, number=first.number + row.number)
            copies[row.key] += 1
        recorded = dict(ImportedInteraction.objects.filter(key__in=list(by_key)).values_list("key", "batch_id"))
        # Recorded by this import (an earlier chunk of this file): add to what that chunk wrote.
        again = {key for key, batch_id in recorded.items() if batch_id == batch.pk}
        fresh = []
        for key, row in by_key.items():
            if key in recorded and key not in again:
                summary["rows_already_imported"] += copies[key]
                continue
            summary["rows_added_to_an_earlier_row"] += copies[key] - (key not in again)
            self._check_total(row.number, row)
            fresh.append(row)
        if not fresh:
            return
        now = batch.started

        # Page views: one row per (customer, book), counts added up.
        views: dict[tuple[int, int], list] = {}
        for row in fresh:
            if row.type != "access":
                continue
            pair = (user_ids[row.username], book_ids[row.product])
            when = row.timestamp or now
            if pair in views:
                v = views[pair]
                v[0] += row.number
                v[1], v[2], v[3] = min(v[1], when), max(v[2], when), row
            else:
                views[pair] = [row.number, when, when, row]
        if views:
            users = {u for u, _ in views}
            books = {b for _, b in views}
            existing = {
                (a.user_id, a.book_id): a
                for a in Access.objects.filter(user_id__in=users, book_id__in=books)
                if (a.user_id, a.book_id) in views
            }
            new, changed = [], []
            for (u, b), (count, first, last, row) in views.items():
                access = existing.get((u, b))
                self._check_total(count + (access.count if access else 0), row)
                if access is None:
                    new.append(Access(user_id=u, book_id=b, count=count, first_seen=first, last_seen=last))
                else:
                    access.count += count
                    access.first_seen, access.last_seen = min(access.first_seen, first), max(access.last_seen, last)
                    changed.append(access)
            Access.objects.bulk_create(new, batch_size=1000)
            Access.objects.bulk_update(changed, ["count", "first_seen", "last_seen"], batch_size=1000)
            summary["views_created"] += len(new)
            summary["views_updated"] += len(changed)

        # Purchases: one order per customer and timestamp, one line per row.
        purchases = [row for row in fresh if row.type == "orderline"]
        if purchases:
            wanted = {(user_ids[r.username], r.timestamp or now) for r in purchases}
            existing_orders = {
                (o.user_id, o.created): o.pk
                for o in Order.objects.filter(user_id__in={u for u, _ in wanted}, created__in={t for _, t in wanted})
            }
            new_orders = [Order(user_id=u, created=t) for u, t in wanted if (u, t) not in existing_orders]
            Order.objects.bulk_create(new_orders, batch_size=1000)
            existing_orders.update({(o.user_id, o.created): o.pk for o in new_orders})
            prices = dict(Book.objects.filter(pk__in={book_ids[r.product] for r in purchases}).values_list("pk", "price"))
            lines, more = [], {}  # more: (order, book) -> copies to add to the line an earlier chunk wrote
            for r in purchases:
                book_id = book_ids[r.product]
                order_id = existing_orders[(user_ids[r.username], r.timestamp or now)]
                if r.key in again:
                    more[(order_id, book_id)] = r
                    continue
                unit = r.price if r.price is not None else (prices.get(book_id) or 0)
                lines.append(OrderLine(order_id=order_id, book_id=book_id, quantity=r.number, unit_price=unit))
            OrderLine.objects.bulk_create(lines, batch_size=1000)
            if more:
                earlier = {}
                orders, books = {o for o, _ in more}, {b for _, b in more}
                for line in OrderLine.objects.filter(order_id__in=orders, book_id__in=books).order_by("pk"):
                    earlier.setdefault((line.order_id, line.book_id), line)
                for pair, r in more.items():
                    earlier[pair].quantity += r.number
                    self._check_total(earlier[pair].quantity, r)
                OrderLine.objects.bulk_update([earlier[pair] for pair in more], ["quantity"], batch_size=1000)
            summary["orders_created"] += len(new_orders)
            summary["order_lines_created"] += len(lines)
            summary["order_lines_updated"] += len(more)

        ImportedInteraction.objects.bulk_create(
            [ImportedInteraction(key=row.key, batch=batch) for row in fresh if row.key not in again], batch_size=2000
        )

    def _check_total(self, total: int, row: importing.Row) -> None:
        """Refuse (and so roll back everything) a count that rows add up to beyond what its
        column holds, naming one of those rows."""
        if total > MAX_TOTAL:
            what = "copies bought" if row.type == "orderline" else "page views"
            message = (
                f"column 'number': the {what} of product {row.product!r} by {row.username!r} add up to {total},"
                f" more than {MAX_TOTAL}"
            )
            problem = importing.Problem(row.line, "", "", message)
            raise CommandError(f"1 bad row in {self.name}; nothing was imported:\n{problem.format(self.name)}")

    # -- reporting -------------------------------------------------------------------------------
    def _dry_run_summary(self, books: dict, users: set[str], counts: dict) -> dict:
        User = get_user_model()
        field = User.USERNAME_FIELD
        known_books = known_users = 0
        products, names = list(books), sorted(users)
        for start in range(0, len(products), CHUNK):
            known_books += Book.objects.filter(product__in=products[start : start + CHUNK]).count()
        for start in range(0, len(names), CHUNK):
            known_users += User.objects.filter(**{f"{field}__in": names[start : start + CHUNK]}).count()
        return {
            "rows": counts["rows"],
            "purchase_rows": counts["orderline"],
            "view_rows": counts["access"],
            "books_new": len(products) - known_books,
            "books_existing": known_books,
            "customers_new": len(names) - known_users,
            "customers_existing": known_users,
        }

    def _report(self, summary: dict, dry_run: bool) -> None:
        title = "Dry run (nothing written)" if dry_run else "Imported"
        parts = [f"{k.replace('_', ' ')}: {v}" for k, v in summary.items()]
        self.stdout.write(self.style.SUCCESS(f"{title} {self.name}: " + ", ".join(parts)))
