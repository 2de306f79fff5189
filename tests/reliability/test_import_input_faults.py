"""Faults in an export's content, reproduced at the size they were found: the import names
them where they are in the file, refuses them whole, and never silently drops a row."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from bookstore import importing
from bookstore.models import Access, Book, ImportedInteraction, OrderLine

pytestmark = pytest.mark.django_db

HEADER = "number,type,username,product,price,model,publishing_dt,author,genres,title,timestamp"


def run(path: Path) -> str:
    out = io.StringIO()
    call_command("import_interactions", str(path), stdout=out, stderr=io.StringIO())
    return out.getvalue()


def refused(path: Path) -> str:
    with pytest.raises(CommandError) as info:
        run(path)
    assert "othing was imported" in str(info.value)
    assert (Book.objects.count(), Access.objects.count(), ImportedInteraction.objects.count()) == (0, 0, 0)
    return str(info.value)


def test_product_ids_that_are_not_page_addresses_are_refused_with_their_place(tmp_path):
    """`a/b` was imported and its page answered 500; `.` and `..` open another page."""
    path = tmp_path / "keys.csv"
    path.write_text("\n".join([HEADER, "1,access,ann,2345,,,,,,,", "1,access,ann,a/b,,,,,,,",
                               "1,access,ann,.,,,,,,,", "1,access,ann,..,,,,,,,"]) + "\n")  # fmt: skip
    error = refused(path)
    assert "3 bad row(s)" in error
    assert f"{path}:3: column 'product': contains '/', which cannot be part of a page address (value 'a/b')" in error
    assert f"{path}:4: column 'product': is '.'" in error and f"{path}:5: column 'product': is '..'" in error


def test_a_latin1_byte_deep_in_a_large_file_is_named_at_the_files_line_and_offset(tmp_path):
    """Reported as line 73,365 "at byte 10015" (a place inside one 64 KiB read) for a byte on
    line 73,458: the line and the offset must be the file's."""
    row = "1,access,user{},{},9.99,ebook,2020-01-01,author,\"fantasy,kids\",Title {},2025-01-01T00:00:00Z\n"
    path = tmp_path / "latin1.csv"
    with path.open("wb") as fh:
        fh.write((HEADER + "\n").encode())
        fh.write("".join(row.format(i % 500, i % 900, i) for i in range(73_456)).encode())  # lines 2-73,457
        fh.write("1,access,zoé,1,,,,,,Café,\n".encode("latin-1"))  # line 73,458
        fh.write("".join(row.format(i % 500, i % 900, i) for i in range(100)).encode())
    offset = path.read_bytes().index(b"\xe9")
    error = refused(path)
    assert f"line 73458: the file is not UTF-8 text (at byte offset {offset} of the file, 0xe9" in error, error


class OneLongLine(io.RawIOBase):
    """A file whose second line is ``size`` bytes long, made as it is read, counting the bytes read."""

    def __init__(self, size: int) -> None:
        self.head = (HEADER + "\n1,access,ann,1,,,,,,").encode()
        self.size = len(self.head) + size
        self.bytes_read = 0

    def read(self, n: int = -1) -> bytes:
        n = self.size - self.bytes_read if n < 0 else min(n, self.size - self.bytes_read)
        start, self.bytes_read = self.bytes_read, self.bytes_read + n
        head = self.head[start : start + n]
        return head + b"x" * (n - len(head))


@pytest.mark.parametrize("megabytes", [5, 20, 50])
def test_a_runaway_line_is_refused_after_reading_no_more_than_the_limit(megabytes):
    """A 50 MB line took 70 s (5, 10, 20 MB: 5.7, 9.8, 20.3 s: quadratic) before "field
    larger than field limit".  Now the work is bounded whatever the line's size: the reading
    stops one read past MAX_RECORD_LENGTH (no time is measured: the bytes read are)."""
    raw = OneLongLine(megabytes * 1_000_000)
    problems = list(importing.read(raw))
    assert [(p.line, p.message.split(":")[0]) for p in problems] == [(2, "this line is too long")]
    assert raw.bytes_read <= len(HEADER) + 1 + importing.MAX_RECORD_LENGTH + importing.READ_SIZE


def test_a_runaway_line_in_a_file_is_named_and_nothing_is_imported(tmp_path):
    path = tmp_path / "one-line.csv"
    with path.open("wb") as fh:
        fh.write(f"{HEADER}\n1,access,ann,1,,,,,,,\n1,access,ann,2,,,,,,".encode())
        for _ in range(20):
            fh.write(b"x" * 1_000_000)  # 20 MB without a line break
        fh.write(b",\n")
    error = refused(path)
    assert f"{path}:3: this line is too long: more than {importing.MAX_RECORD_LENGTH:,} characters" in error, error


def test_rows_sharing_a_key_are_kept_and_importing_them_again_does_not_double_them(tmp_path):
    """Purchases of 1 and 2 copies without a timestamp became one line of 1; views of 5 and 7
    became 5.  They add up now, once: the same rows imported again add nothing."""
    rows = ["1,orderline,ann,42,,,,,,,", "2,orderline,ann,42,,,,,,,",  # no timestamp
            "5,access,bob,42,,,,,,,", "7,access,bob,42,,,,,,,"]  # fmt: skip
    first = tmp_path / "export.csv"
    first.write_text("\n".join([HEADER, *rows]) + "\n")
    assert "rows added to an earlier row: 2" in run(first)
    counts = lambda: (  # noqa: E731
        sorted(OrderLine.objects.values_list("order__user__username", "book__product", "quantity")),
        sorted(Access.objects.values_list("user__username", "book__product", "count")),
    )
    assert counts() == ([("ann", "42", 3)], [("bob", "42", 12)])
    # The same rows again, in a file with other bytes (CRLF): recognised row by row, not by hash.
    again = tmp_path / "again.csv"
    again.write_bytes(("\r\n".join([HEADER, *rows]) + "\r\n").encode())
    assert "rows already imported: 4" in run(again)
    assert counts() == ([("ann", "42", 3)], [("bob", "42", 12)])
