"""import_interactions: every bad input is named and changes nothing; re-import is a no-op."""

from __future__ import annotations

import csv
import io
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from hypothesis import HealthCheck, given, settings as hsettings, strategies as st

from bookstore.models import Access, Author, Book, Genre, ImportedInteraction, Order, OrderLine

pytestmark = pytest.mark.django_db

HEADER = "number,type,username,product,price,model,publishing_dt,author,genres,title,timestamp"
GOOD = [
    '6,access,kerrigan,2345,12.99,printedbook,2020-02-01,john,"fantasy,kids",Dragons,2025-03-01T10:15:00Z',
    '1,orderline,kerrigan,2345,12.99,printedbook,2020-02-01,john,"fantasy,kids",Dragons,2025-03-01T10:40:00Z',
    '2,orderline,kerrigan,7781,8.50,ebook,2018-11-15,Ada Moreau,science fiction,Signals,2025-03-01T10:40:00Z',
    '3,access,mbaker,2345,,,,,"Fantasy , KIDS",,2025-03-04T19:30:00',
]


def write(tmp_path: Path, text: str | bytes, name: str = "export.csv") -> Path:
    path = tmp_path / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


def run(path: Path, *args: str) -> str:
    out = io.StringIO()
    call_command("import_interactions", str(path), *args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


def state() -> tuple:
    return (
        get_user_model().objects.count(), Book.objects.count(), Author.objects.count(), Genre.objects.count(),
        Order.objects.count(), OrderLine.objects.count(), sorted(Access.objects.values_list("count", flat=True)),
        ImportedInteraction.objects.count(),
    )  # fmt: skip


def test_a_good_file_imports_everything(tmp_path):
    out = run(write(tmp_path, "\n".join([HEADER, *GOOD]) + "\n"))
    assert "rows: 4" in out and "customers created: 2" in out
    book = Book.objects.get(product="2345")
    assert (book.title, book.price, book.format, str(book.publication_date), book.author.name) == (
        "Dragons", Decimal("12.99"), "printedbook", "2020-02-01", "john",
    )  # fmt: skip
    assert sorted(g.name for g in book.genres.all()) == ["fantasy", "kids"], "genres matched ignoring case, no duplicates"
    assert Genre.objects.count() == 3
    kerrigan = get_user_model().objects.get(username="kerrigan")
    assert not kerrigan.has_usable_password()
    order = Order.objects.get(user=kerrigan)  # two lines with the same timestamp: one order
    assert order.created == datetime(2025, 3, 1, 10, 40, tzinfo=UTC)
    assert sorted((l.book.product, l.quantity, l.unit_price) for l in order.lines.all()) == [
        ("2345", 1, Decimal("12.99")), ("7781", 2, Decimal("8.50")),
    ]  # fmt: skip
    views = Access.objects.get(user__username="mbaker", book__product="2345")
    assert views.count == 3 and views.first_seen == datetime(2025, 3, 4, 19, 30, tzinfo=UTC)


def test_reimporting_changes_nothing(tmp_path):
    path = write(tmp_path, "\n".join([HEADER, *GOOD]) + "\n")
    run(path)
    before = state()
    assert "already imported" in run(path)
    assert state() == before
    # The same rows in another file (plus one new row): only the new row is added.
    extra = '1,access,newcomer,2345,,,,,,,2025-04-01T00:00:00Z'
    out = run(write(tmp_path, "\n".join([HEADER, *reversed(GOOD), extra]) + "\n", "again.csv"))
    assert "rows already imported: 4" in out and "customers created: 1" in out
    assert Access.objects.filter(user__username="newcomer").get().count == 1
    assert OrderLine.objects.count() == before[5]


def test_dry_run_writes_nothing(tmp_path):
    out = run(write(tmp_path, "\n".join([HEADER, *GOOD])), "--dry-run")
    assert "Dry run" in out and "books new: 2" in out and "customers new: 2" in out
    assert state() == (0, 0, 0, 0, 0, 0, [], 0)


def test_bom_crlf_quotes_and_embedded_newlines_are_read(tmp_path):
    rows = [
        '1,orderline,kerrigan,2345,12.99,printedbook,2020-02-01,"O\'Brien, Pat","fantasy","The ""Best"" Book\r\nPart 2",2025-03-01T10:40:00Z',
        '2,access,kerrigan,2346,1,ebook,2020-02-01,x,,Plain,2025-03-01T10:41:00Z',
    ]
    path = write(tmp_path, b"\xef\xbb\xbf" + "\r\n".join([HEADER, *rows, ""]).encode())
    run(path)
    book = Book.objects.get(product="2345")
    assert book.title == 'The "Best" Book\r\nPart 2' and book.author.name == "O'Brien, Pat"
    assert Access.objects.get().count == 2


def test_columns_in_any_order_and_without_the_optional_ones(tmp_path):
    text = "username,product,type,number,genres,author,model,publishing_dt,price\nann,1,access,2,,,,,\n"
    run(write(tmp_path, text))
    assert Access.objects.get().count == 2


@pytest.mark.parametrize(
    "line, column, value, message",
    [
        ("6,click,kerrigan,2345,,,,,,,", "type", "click", "not one of orderline, access"),
        ("six,access,kerrigan,2345,,,,,,,", "number", "six", "not a whole number"),
        ("-3,access,kerrigan,2345,,,,,,,", "number", "-3", "must not be negative"),
        ("0,access,kerrigan,2345,,,,,,,", "number", "0", "between 1 and"),
        ("1,access,kerrigan,2345,12.9.9,,,,,,", "price", "12.9.9", "not a number"),
        ("1,access,kerrigan,2345,-1,,,,,,", "price", "-1", "must not be negative"),
        ("1,access,kerrigan,2345,NaN,,,,,,", "price", "NaN", "finite"),
        ("1,access,kerrigan,2345,,,31/02/2020,,,,", "publishing_dt", "31/02/2020", "not a date"),
        ("1,access,kerrigan,2345,,,,,,,yesterday", "timestamp", "yesterday", "not an ISO-8601"),
        ("1,access,,2345,,,,,,,", "username", "", "must not be empty"),
        ("1,access,kerrigan,,,,,,,,", "product", "", "must not be empty"),
        ("1,access,ker rigan,2345,,,,,,,", "username", "ker rigan", "valid username"),
        ("1,access,kerrigan," + "9" * 100 + ",,,,,,,", "product", "9" * 57 + "...", "at most 64"),
        # A product id is the book's page address: these would 404, 500 or open another page.
        ("1,access,kerrigan,a/b,,,,,,,", "product", "a/b", "contains '/'"),
        ("1,access,kerrigan,a\\b,,,,,,,", "product", "a\\b", "contains '\\\\'"),
        ("1,access,kerrigan,.,,,,,,,", "product", ".", "is '.'"),
        ("1,access,kerrigan,..,,,,,,,", "product", "..", "is '..'"),
        ('1,access,kerrigan,"a\tb",,,,,,,', "product", "a\tb", "contains '\\t'"),
        ('1,access,kerrigan,"a\nb",,,,,,,', "product", "a\nb", "contains '\\n'"),
    ],
)
def test_a_bad_row_is_named_and_nothing_is_imported(tmp_path, line, column, value, message):
    path = write(tmp_path, "\n".join([HEADER, GOOD[0], GOOD[1], line, GOOD[2]]) + "\n", "bad.csv")
    with pytest.raises(CommandError) as info:
        run(path)
    text = str(info.value)
    assert f"{path}:4: column {column!r}" in text, text
    assert repr(value) in text and message in text and "nothing was imported" in text
    assert state() == (0, 0, 0, 0, 0, 0, [], 0)


def test_line_numbers_count_embedded_newlines_and_every_bad_row_is_listed(tmp_path):
    rows = [
        '1,orderline,a,1,,,,,,"two\nlines",2025-01-01T00:00:00',  # lines 2-3
        "x,access,b,2,,,,,,,",  # line 4
        "1,access,c,3,,,,,,,",  # line 5
        "1,bogus,d,4,,,,,,,",  # line 6
    ]
    path = write(tmp_path, "\n".join([HEADER, *rows]) + "\n")
    with pytest.raises(CommandError) as info:
        run(path)
    text = str(info.value)
    assert "2 bad row(s)" in text and f"{path}:4: column 'number'" in text and f"{path}:6: column 'type'" in text
    with pytest.raises(CommandError) as info:
        run(path, "--max-errors", "1")
    assert "… and 1 more." in str(info.value)


@pytest.mark.parametrize(
    "content, message",
    [
        ("number,type,username,product\n1,access,a,1\n", "missing required column(s): price, model, publishing_dt, author, genres"),
        (HEADER.replace(",", ";") + "\n1;access;a;1;;;;;;;\n", "separated by semicolons"),
        (HEADER.replace(",", "\t") + "\n", "separated by tabs"),
        ("", "empty"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xfe", "not UTF-8 text"),
        (HEADER + "\n" + GOOD[0] + "\n" + "1,access,a,\x00b,,,,,,,\n", ":3: the line contains a NUL byte"),
        (HEADER + "\n" + '1,access,a,1,,,,,,"' + "x" * 20000 + '",\n', ":2: this line cannot be read as CSV"),
        (HEADER + "\n1,access,a,1,,,\n", ":2: expected 11 fields, found 7"),
        (HEADER + ",number\n", "names number more than once"),
    ],
)
def test_unreadable_files_are_named_and_nothing_is_imported(tmp_path, content, message):
    with pytest.raises(CommandError) as info:
        run(write(tmp_path, content))
    assert message in str(info.value)
    assert state() == (0, 0, 0, 0, 0, 0, [], 0)


def not_utf8_error(path: Path) -> str:
    with pytest.raises(CommandError) as info:
        run(path)
    assert state() == (0, 0, 0, 0, 0, 0, [], 0)
    return str(info.value)


@pytest.mark.parametrize("bom", [b"", b"\xef\xbb\xbf"])
@pytest.mark.parametrize("newline", [b"\n", b"\r\n", b"\r"])
def test_an_encoding_error_names_the_files_line_and_byte_offset(tmp_path, bom, newline):
    # Far past the first read (64 KiB), and not at its start: the line and offset are the
    # file's, not positions inside one read.
    good = "1,access,ann,1,,,,,,Title,".encode()
    lines = [HEADER.encode()] + [good] * 5000 + ["1,access,zoé,1,,,,,,Café,".encode("latin-1")] + [good] * 10
    data = bom + newline.join(lines) + newline
    error = not_utf8_error(write(tmp_path, data))
    offset = data.index(b"\xe9")
    assert f"line {5000 + 2}: the file is not UTF-8 text (at byte offset {offset} of the file, 0xe9" in error, error


def test_an_encoding_error_split_across_reads_is_placed_exactly(tmp_path):
    from bookstore.importing import READ_SIZE

    # A two-byte character cut by the end of a read, then a bad byte: the offset still counts
    # the bytes the decoder held over.
    head = (HEADER + "\n").encode()
    filler = b"1,access,ann,1,,,,,,T,\n"
    data = head + filler * ((READ_SIZE - len(head)) // len(filler) - 1) + b"1,access,ann,1,,,,,,"
    data += b"x" * (READ_SIZE - 1 - len(data)) + "é".encode() + b"\xff,\n"
    assert data.index("é".encode()) == READ_SIZE - 1, "the character straddles the first read"
    error = not_utf8_error(write(tmp_path, data))
    line, offset = data.count(b"\n"), data.index(b"\xff")
    assert f"line {line}:" in error and f"byte offset {offset} of the file, 0xff" in error, error


def test_line_separators_inside_values_do_not_split_records(tmp_path):
    # U+2028, U+0085, form feed, vertical tab: str.splitlines would end a line there; the csv
    # module and the file do not.
    title = "a\u2028b\x85c\x0cd\x0be\x1cf"
    text = "\n".join([HEADER, f"1,access,ann,7,,,,,,{title},", "x,access,ann,8,,,,,,,"]) + "\n"
    with pytest.raises(CommandError) as info:
        run(write(tmp_path, text))
    assert "1 bad row(s)" in str(info.value) and ":3: column 'number'" in str(info.value), str(info.value)
    run(write(tmp_path, "\n".join([HEADER, f"1,access,ann,7,,,,,,{title},"]) + "\n", "ok.csv"))
    assert Book.objects.get(product="7").title == title


def test_a_line_over_the_limit_is_refused_when_the_limit_is_reached(tmp_path, monkeypatch):
    from bookstore import importing

    monkeypatch.setattr(importing, "MAX_RECORD_LENGTH", 5000)
    path = write(tmp_path, "\n".join([HEADER, GOOD[0], "1,access,ann,1,,,,,," + "x" * 9000 + ",", GOOD[1]]) + "\n")
    with pytest.raises(CommandError) as info:
        run(path)
    assert f"{path}:3: this line is too long: more than 5,000 characters" in str(info.value), str(info.value)
    assert state() == (0, 0, 0, 0, 0, 0, [], 0)


def test_a_record_whose_lines_add_up_past_the_limit_is_refused(tmp_path, monkeypatch):
    from bookstore import importing

    monkeypatch.setattr(importing, "MAX_RECORD_LENGTH", 5000)
    # Short lines, short fields, but one record that never ends: a quote left open in each field.
    runaway = "1,access,ann,1," + ",".join(['"' + "y" * 50 + '\n"'] * 200)
    path = write(tmp_path, "\n".join([HEADER, GOOD[0], runaway]) + "\n")
    with pytest.raises(CommandError) as info:
        run(path)
    text = str(info.value)
    assert f"{path}:3: this record is too long: more than 5,000 characters from line 3 to line" in text, text
    assert state() == (0, 0, 0, 0, 0, 0, [], 0)


@pytest.fixture(params=[5000, 1], ids=["one-chunk", "chunk-per-row"])
def chunk(request, monkeypatch):
    """Rows that share a key meet in one chunk, or each in a chunk of its own."""
    from bookstore.management.commands import import_interactions

    monkeypatch.setattr(import_interactions, "CHUNK", request.param)
    return request.param


def test_rows_sharing_a_key_add_up_and_a_reimport_does_not_double_them(tmp_path, chunk):
    rows = [
        "1,orderline,ann,42,9.99,,,,,,",  # no timestamp: the same purchase key three times
        "2,orderline,ann,42,8.00,,,,,,",
        "5,access,bob,42,,,,,,,",
        "7,access,bob,42,,,,,,,",
        "4,orderline,ann,42,,,,,,,",
        "1,orderline,ann,43,,,,,,,2025-01-01T00:00:00Z",  # timestamped: the same key twice
        "1,orderline,ann,43,,,,,,,2025-01-01T00:00:00Z",
    ]
    out = run(write(tmp_path, "\n".join([HEADER, *rows]) + "\n"))
    assert "rows: 7" in out and "rows added to an earlier row: 4" in out, out
    lines = sorted((l.book.product, l.quantity, l.unit_price) for l in OrderLine.objects.select_related("book"))
    # One line per key, copies added; the unit price is the first row's.
    assert lines == [("42", 7, Decimal("9.99")), ("43", 2, Decimal("0"))]
    assert Access.objects.get(user__username="bob").count == 12
    before = state()

    assert "already imported" in run(write(tmp_path, "\n".join([HEADER, *rows]) + "\n"))
    # The same rows in another file, one more view: the known keys add nothing, whatever their count.
    out = run(write(tmp_path, "\n".join([HEADER, *reversed(rows), "3,access,bob,43,,,,,,,"]) + "\n", "later.csv"))
    assert "rows already imported: 7" in out and "rows added to an earlier row: 0" in out, out
    assert state()[:6] == before[:6]
    assert sorted(Access.objects.values_list("book__product", "count")) == [("42", 12), ("43", 3)]
    assert sorted(OrderLine.objects.values_list("book__product", "quantity")) == [("42", 7), ("43", 2)]


def test_copies_that_add_up_past_what_a_column_holds_are_refused(tmp_path, chunk, monkeypatch):
    from bookstore.management.commands import import_interactions

    monkeypatch.setattr(import_interactions, "MAX_TOTAL", 10)
    for kind, what in (("orderline", "copies bought"), ("access", "page views")):
        rows = [GOOD[0], f"6,{kind},ann,42,,,,,,,", f"5,{kind},ann,42,,,,,,,"]
        path = write(tmp_path, "\n".join([HEADER, *rows]) + "\n", f"{kind}.csv")
        with pytest.raises(CommandError) as info:
            run(path)
        text = str(info.value)
        assert f"{path}:" in text and f"the {what} of product '42' by 'ann' add up to 11, more than 10" in text, text
        assert "nothing was imported" in text
        assert state() == (0, 0, 0, 0, 0, 0, [], 0)


def test_existing_books_are_updated_not_blanked(tmp_path):
    Book.objects.create(product="2345", title="Old title", price=Decimal("5.00"))
    run(write(tmp_path, HEADER + "\n" + '1,access,a,2345,,,,,,"New title",\n'))
    book = Book.objects.get(product="2345")
    assert book.title == "New title" and book.price == Decimal("5.00")


def test_after_an_import_the_retrain_uses_the_history_and_the_metadata(tmp_path, settings):
    lines = [HEADER]
    for u in range(30):
        genre = "fantasy" if u % 2 else "history"
        for b in range(6):
            product = f"{genre[0]}{(u + b) % 12}"
            lines.append(f"1,access,user{u},{product},9.99,ebook,2020-01-01,author {product[0]},{genre},,2025-0{1 + b}-01T00:00:00Z")
        lines.append(f"1,orderline,user{u},{genre[0]}{u % 12},9.99,ebook,2020-01-01,author x,{genre},,2025-08-01T00:00:00Z")
    run(write(tmp_path, "\n".join(lines) + "\n"))
    settings.RECOMMENDATIONS = {**settings.RECOMMENDATIONS, "LIGHTFM": {"epochs": 10, "no_components": 8}}
    from recommendations import services

    run_ = services.retrain()
    assert run_.status == "succeeded", run_.error
    assert run_.counts["rows_purchases"] == 30 and run_.counts["rows_views"] == 180
    assert run_.params["item_features"] > run_.counts["items"], "metadata features beside the identity features"


# -- property tests ---------------------------------------------------------------------------
names = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789_.-", min_size=1, max_size=12)
products = names.filter(lambda name: name not in (".", ".."))  # a page address: see the bad-row cases
free_text = st.text(st.characters(blacklist_categories=["Cs", "Cc"]), max_size=30).map(str.strip)
valid_rows = st.lists(
    st.fixed_dictionaries(
        {
            "number": st.integers(1, 50),
            "type": st.sampled_from(["access", "orderline"]),
            "username": names,
            "product": products,
            "price": st.one_of(st.just(""), st.decimals(0, 1000, places=2).map(str)),
            "model": st.sampled_from(["", "printedbook", "ebook"]),
            "publishing_dt": st.one_of(st.just(""), st.dates(date(1000, 1, 1)).map(lambda d: d.isoformat())),
            "author": free_text,
            "genres": st.lists(st.sampled_from(["Fantasy", "fantasy ", "Kids", "science fiction"]), max_size=3).map(",".join),
            "title": free_text,
            "timestamp": st.datetimes(datetime(2000, 1, 1), datetime(2030, 1, 1)).map(lambda d: d.isoformat() + "Z"),
        }
    ),
    min_size=1,
    max_size=15,
)


@hsettings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=valid_rows)
def test_valid_rows_round_trip(tmp_path_factory, rows):
    from django.db import transaction

    path = tmp_path_factory.mktemp("prop") / "rows.csv"
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=HEADER.split(","))
        writer.writeheader()
        writer.writerows(rows)
    with transaction.atomic():
        sid = transaction.savepoint()
        run(path)
        # Rows that share a key add up: one order line per key, one page-view row per pair.
        keys: dict = {}
        for r in rows:
            key = (r["username"], r["product"], r["type"], r["timestamp"])
            keys[key] = keys.get(key, 0) + r["number"]
        expected_views: dict = {}
        expected_lines = []
        for (user, product, kind, _), number in keys.items():
            if kind == "access":
                expected_views[(user, product)] = expected_views.get((user, product), 0) + number
            else:
                expected_lines.append((user, product, number))
        views = {(a.user.username, a.book.product): a.count for a in Access.objects.select_related("user", "book")}
        lines = sorted((l.order.user.username, l.book.product, l.quantity) for l in OrderLine.objects.select_related("order__user", "book"))
        assert views == expected_views
        assert lines == sorted(expected_lines)
        transaction.savepoint_rollback(sid)


@hsettings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.one_of(st.binary(max_size=400), st.text(max_size=400).map(lambda t: (HEADER + "\n" + t).encode())))
def test_arbitrary_bytes_never_crash_the_importer(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("fuzz") / "fuzz.csv"
    path.write_bytes(data)
    from django.db import transaction

    with transaction.atomic():
        sid = transaction.savepoint()
        try:
            run(path)
        except CommandError:
            pass
        transaction.savepoint_rollback(sid)


@hsettings(max_examples=200, deadline=None)
@given(
    text=st.lists(st.sampled_from(["a", ",", '"', "\r", "\n", "\r\n", "é", "€", "\u2028", "\x0c"]), max_size=60).map(
        "".join
    ),
    bom=st.booleans(),
    read_size=st.integers(1, 9),
)
def test_lines_are_the_files_whatever_the_reads_cut(text, bom, read_size):
    """Reads of any size, cutting a "\r\n", a character or the byte-order mark: the same lines
    as reading the whole file at once with universal newlines, and nothing else."""
    from unittest import mock

    from bookstore import importing

    data = (b"\xef\xbb\xbf" if bom else b"") + text.encode()
    with mock.patch.object(importing, "READ_SIZE", read_size):
        lines = list(importing._Lines(io.BytesIO(data), limit=10**9))
    assert lines == list(io.StringIO(text, newline=""))


@hsettings(max_examples=200, deadline=None)
@given(
    text=st.lists(st.sampled_from(["a", ",", "\r", "\n", "\r\n", "é", "€"]), max_size=60).map("".join),
    bad=st.sampled_from([b"\xff", b"\xe9,", b"\xc3"]),
    bom=st.booleans(),
    read_size=st.integers(1, 9),
)
def test_a_bad_byte_is_placed_at_the_files_line_and_offset_whatever_the_reads_cut(text, bad, bom, read_size):
    from unittest import mock

    from bookstore import importing

    head = (b"\xef\xbb\xbf" if bom else b"") + text.encode()
    line = 1 + text.count("\n") + text.count("\r") - text.count("\r\n")
    with mock.patch.object(importing, "READ_SIZE", read_size), pytest.raises(importing.ImportFileError) as info:
        list(importing._Lines(io.BytesIO(head + bad), limit=10**9))
    expected = f"line {line}: the file is not UTF-8 text (at byte offset {len(head)} of the file, "
    assert str(info.value).startswith(expected), str(info.value)
