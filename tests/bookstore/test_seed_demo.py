"""seed_demo: deterministic for a seed, and shaped like a real store."""

import re
from collections import Counter
from datetime import datetime, timedelta, timezone
from io import StringIO

import pytest
from django.contrib.auth import authenticate, get_user_model
from django.core.management import CommandError, call_command

from bookstore.demo import TITLE_ADJECTIVES, TITLE_NOUNS, demo_titles, plural
from bookstore.models import Access, Book, Order, OrderLine

pytestmark = pytest.mark.django_db

SMALL = ["--users", "120", "--books", "80", "--interactions", "3000", "--until", "2026-06-30"]


def seed(*args: str) -> str:
    out = StringIO()
    call_command("seed_demo", *SMALL, *args, stdout=out)
    return out.getvalue()


def snapshot() -> dict:
    """Everything seed_demo writes, by natural keys (database ids may differ)."""
    books = sorted(
        (b.product, b.title, b.author.name, tuple(sorted(g.name for g in b.genres.all())), str(b.price),
         b.format, b.publication_date, b.created, b.available)
        for b in Book.objects.select_related("author").prefetch_related("genres")
    )  # fmt: skip
    users = sorted(get_user_model().objects.values_list("username", "first_name", "last_name", "date_joined"))
    views = sorted(
        Access.objects.values_list("user__username", "book__product", "count", "first_seen", "last_seen")
    )
    lines = sorted(
        OrderLine.objects.values_list("order__user__username", "order__created", "book__product", "quantity", "unit_price")
    )
    return {"books": books, "users": users, "views": views, "lines": lines}


def test_same_seed_same_store():
    seed("--seed", "7")
    first = snapshot()
    seed("--seed", "7", "--flush")
    assert snapshot() == first
    seed("--seed", "8", "--flush")
    other = snapshot()
    assert other["views"] != first["views"] and other["books"] != first["books"]


def test_refuses_to_mix_with_existing_data_and_if_empty_skips():
    seed()
    with pytest.raises(CommandError, match="--flush"):
        seed()
    books = Book.objects.count()
    assert "nothing to seed" in seed("--if-empty")
    assert Book.objects.count() == books


def test_prints_working_demo_logins():
    out = seed()
    assert "demo / demo-reader" in out and "staff / staff-admin" in out
    demo = authenticate(username="demo", password="demo-reader")
    staff = authenticate(username="staff", password="staff-admin")
    assert demo is not None and not demo.is_staff
    assert staff is not None and staff.is_staff and staff.is_superuser
    assert demo.accesses.count() >= 5, "the demo customer has a history to recommend from"
    others = get_user_model().objects.exclude(username__in=["demo", "staff"])
    assert not any(u.has_usable_password() for u in others[:20])


def test_shaped_like_a_bookstore():
    call_command(
        "seed_demo", "--users", "400", "--books", "300", "--interactions", "12000", "--until", "2026-06-30",
        stdout=StringIO(),
    )  # fmt: skip
    views, lines = Access.objects.count(), OrderLine.objects.count()
    assert 9000 <= views + lines <= 14000, "about --interactions rows"
    assert views > 5 * lines > 0, "views are far more common than purchases"

    viewed = set(Access.objects.values_list("user_id", "book_id"))
    bought = list(OrderLine.objects.values_list("order__user_id", "book_id"))
    assert sum(pair in viewed for pair in bought) / len(bought) > 0.85, "purchases are mostly of viewed books"

    until = datetime(2026, 6, 30, tzinfo=timezone.utc)
    first = Access.objects.order_by("first_seen").values_list("first_seen", flat=True).first()
    last = Order.objects.order_by("-created").values_list("created", flat=True).first()
    assert until - timedelta(days=366) <= first and last <= until

    # Long tails: the top 10 % of books get a large share of the views.
    per_book = sorted(Counter(Access.objects.values_list("book_id", flat=True)).values(), reverse=True)
    assert sum(per_book[: len(per_book) // 10]) > 0.3 * sum(per_book)

    # Hidden tastes: a typical customer's views concentrate in few genres.
    shares = []
    for user in get_user_model().objects.filter(accesses__isnull=False).distinct()[:100]:
        genres = Counter(
            Access.objects.filter(user=user).values_list("book__genres__name", flat=True)
        )
        total = sum(genres.values())
        if total >= 10:
            shares.append(max(genres.values()) / total)
    assert shares and sorted(shares)[len(shares) // 2] > 0.3


def test_row_writer_round_trips_awkward_text_nulls_and_defaults():
    """What the PostgreSQL COPY path writes reads back as bulk_create's would (on SQLite
    this exercises the bulk_create path)."""
    import numpy as np
    from django.db import transaction

    from bookstore.management.commands.seed_demo import RowWriter
    from bookstore.models import Author

    names = ["Tab\there", "Back\\slash \\N", "New\nline\r", "Plain Ekström", "\\N"]
    with transaction.atomic(), RowWriter() as rows:
        ids = rows.write(Author, {"name": names}, ids=True)
        users = rows.write(
            get_user_model(),
            {
                "username": ["a1", "a2"],
                "password": "!",
                "date_joined": np.array(["2026-01-02T03:04:05"] * 2, "datetime64[s]"),
            },
            ids=True,
        )
    assert [Author.objects.get(pk=pk).name for pk in ids.tolist()] == names
    user = get_user_model().objects.get(pk=users[1])
    assert (user.username, user.is_active, user.is_staff, user.last_login, user.email) == ("a2", True, False, None, "")
    assert user.date_joined == datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    assert get_user_model().objects.create(username="after").pk > max(users), "the sequence moved past the copied keys"


def _secondary_schema() -> set:
    """Indexes and constraints of the tables seed_demo sets aside while it loads them."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            """SELECT indexrelid::regclass::text, pg_get_indexdef(indexrelid) FROM pg_index
                WHERE indrelid::regclass::text IN ('bookstore_user', 'bookstore_access', 'bookstore_order', 'bookstore_orderline')
                UNION ALL
               SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint
                WHERE conrelid::regclass::text IN ('bookstore_user', 'bookstore_access', 'bookstore_order', 'bookstore_orderline')"""
        )
        return set(cursor.fetchall())


@pytest.mark.services
def test_postgres_load_gives_back_every_index_and_constraint(postgres, monkeypatch):
    """On PostgreSQL the big tables lose their secondary indexes and foreign keys during the
    COPY; afterwards (and after a failed seed) they have them all again, and they hold."""
    from django.db import IntegrityError, transaction

    from bookstore.demo import DemoStore

    before = _secondary_schema()
    assert len(before) > 10
    seed()
    assert _secondary_schema() == before
    access = Access.objects.first()
    with pytest.raises(IntegrityError), transaction.atomic():
        Access.objects.create(user_id=access.user_id, book_id=access.book_id)

    def broken(self, chunk_size=5000):
        yield from []
        raise RuntimeError("the generator broke")

    monkeypatch.setattr(DemoStore, "activity", broken)
    with pytest.raises(RuntimeError, match="broke"):
        seed("--flush")
    assert _secondary_schema() == before
    assert Access.objects.count() > 0, "the failed seed changed nothing"


def test_titles_are_unique_and_read_as_english():
    """At the default size: no title comes twice (so no author has two books of one name),
    and no plural doubles an "s" ("Letterss", "Iron Compasss")."""
    call_command("seed_demo", "--until", "2026-06-30", stdout=StringIO())
    titles = list(Book.objects.values_list("author_id", "title"))
    assert len(titles) == 800, "the default size"
    assert len(set(titles)) == len(titles), "unique per author"
    assert len({title for _, title in titles}) == len(titles), "unique in the whole store"

    words = {word for _, title in titles for word in title.split()}
    vocabulary = {"The", "A", "An", "of", "at", *TITLE_ADJECTIVES, *TITLE_NOUNS, *map(plural, TITLE_NOUNS)}
    assert words <= vocabulary
    assert {word for word in words if word.endswith("ss")} == {"Glass", "Compass", "Endless", "Restless"}
    assert not [noun for noun in TITLE_NOUNS if noun.endswith("s") and plural(noun) == noun + "s"]


def test_plurals():
    assert [plural(n) for n in ["River", "Compass", "Glass", "Sky", "Library", "Day", "Box", "Church"]] == [
        "Rivers", "Compasses", "Glasses", "Skies", "Libraries", "Days", "Boxes", "Churches",
    ]  # fmt: skip


def test_a_catalogue_larger_than_the_vocabulary_still_has_unique_titles():
    import numpy as np

    titles = demo_titles(np.random.default_rng(3), 30000)
    assert len(set(titles)) == 30000
    assert sum(title.endswith(": Book 2") for title in titles) > 5000


def cards(html: str, section: str) -> list[str]:
    """The products of the book cards in the page's section that starts with ``section``."""
    match = re.search(re.escape(section) + r".*?</section>", html, re.S)
    return re.findall(r'class="card-title" href="/books/([^/]+)/"', match.group(0)) if match else []


def test_the_home_page_shows_no_book_twice(client, settings):
    """The box at the top (the customer's picks, or the popular list to a visitor without
    picks) and the bestsellers shelf never show the same book."""
    from django.core.cache import cache

    from bookstore.services import bestsellers
    from recommendations import services
    from recommendations.api import recommend_for

    settings.RECOMMENDATIONS = {**settings.RECOMMENDATIONS, "LIGHTFM": {"epochs": 5, "no_components": 8}}
    seed()
    assert services.retrain(evaluate=False).status == "succeeded"
    cache.clear()
    newcomer = get_user_model().objects.create(username="newcomer")
    for customer in (None, get_user_model().objects.get(username="demo"), newcomer):
        if customer:
            client.force_login(customer)
        html = client.get("/").content.decode()
        box, shelf = cards(html, 'data-box="you-might-like"'), cards(html, "<h2>Bestsellers</h2>")
        assert len(box) == 6 and shelf, customer
        assert not set(box) & set(shelf), customer
        # What the home view passes to fill the shelf again: the bestsellers after the box's books.
        shown = recommend_for(customer, 6)
        assert [book.product for book in shown] == box
        rest = [book.product for book in bestsellers(6, exclude=shown)]
        assert len(rest) == 6 and not set(rest) & set(box) and set(shelf) <= set(rest)
