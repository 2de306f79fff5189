"""Reading a bookstore's legacy export (CSV), row by row, with errors that name the place.

Format: a header naming the columns in any order, then one row per interaction::

    number,type,username,product,price,model,publishing_dt,author,genres[,title][,timestamp]
    6,access,kerrigan,2345,12.99,printedbook,2020-02-01,john,"fantasy,kids"

``type`` is ``orderline`` (a purchase of ``number`` copies) or ``access`` (``number`` page
views).  ``genres`` is a comma-separated list inside one field.  ``price``, ``model``,
``publishing_dt``, ``author``, ``genres``, ``title`` and ``timestamp`` may be empty.

This module only parses and validates (the csv module does the quoting, embedded newlines
and CRLF); ``bookstore.management.commands.import_interactions`` writes to the database.
Its cost is linear in the file's size whatever its lines look like: a record longer than
``MAX_RECORD_LENGTH`` is refused as soon as that many characters have been read.
"""

from __future__ import annotations

import codecs
import csv
import datetime as dt
import functools
import hashlib
import io
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from bookstore.models import product_key_problem

REQUIRED = ("number", "type", "username", "product", "price", "model", "publishing_dt", "author", "genres")
OPTIONAL = ("title", "timestamp")
TYPES = ("orderline", "access")
# Longest value accepted per column (the database's limits, or far beyond any real value).
MAX_LENGTH = {
    "number": 12, "type": 20, "username": 150, "product": 64, "price": 16, "model": 32,
    "publishing_dt": 40, "author": 200, "genres": 2000, "title": 300, "timestamp": 40,
}  # fmt: skip
MAX_GENRE_LENGTH = 100
MAX_NUMBER = 1_000_000
MAX_PRICE = Decimal("99999999.99")
FIELD_LIMIT = 10_000  # characters in one field before the csv module gives up
# Characters in one record (a line, or the lines of a record with quoted line breaks): far
# beyond any real row, small enough to refuse a runaway line before holding much of it.
MAX_RECORD_LENGTH = 1_000_000
READ_SIZE = 1 << 16  # bytes read from the file at a time

# Exports repeat the same products on many rows: check each once (a bounded cache).
_product_key_problem = functools.lru_cache(maxsize=1 << 16)(product_key_problem)


class ImportFileError(Exception):
    """The file cannot be read at all (not text, no header, wrong delimiter…)."""


@dataclass(frozen=True)
class Row:
    line: int  # the line in the file where this record starts (the header is line 1)
    number: int
    type: str
    username: str
    product: str
    price: Decimal | None
    model: str
    publishing_dt: dt.date | None
    author: str
    genres: tuple[str, ...]
    title: str
    timestamp: dt.datetime | None

    @property
    def key(self) -> str:
        """The natural key of the interaction: the same row imported twice is the same key."""
        stamp = self.timestamp.isoformat() if self.timestamp else ""
        raw = "\x1f".join((self.username, self.product, self.type, stamp))
        return hashlib.sha1(raw.encode()).hexdigest()


@dataclass(frozen=True)
class Problem:
    line: int
    column: str
    value: str
    message: str

    def format(self, filename: str) -> str:
        shown = self.value if len(self.value) <= 60 else self.value[:57] + "..."
        where = f"{filename}:{self.line}"
        if self.column:
            return f"{where}: column {self.column!r}: {self.message} (value {shown!r})"
        return f"{where}: {self.message}"


class _RecordTooLong(Exception):
    """A record went past ``MAX_RECORD_LENGTH`` characters (raised from inside the csv reader)."""


def _line_breaks(text: str) -> int:
    r"""Line ends in ``text`` as the csv module sees them: ``\n``, ``\r\n`` or a lone ``\r``."""
    return text.count("\n") + text.count("\r") - text.count("\r\n")


class _Lines:
    r"""Text lines from a binary stream, decoding UTF-8 (a BOM is skipped) incrementally.

    Lines end at ``\n``, ``\r\n`` or ``\r`` only (``str.splitlines`` would also split at
    U+2028, form feeds and the like, which may sit inside a value), so that line numbers are
    the file's.  A line is assembled from pieces, never by re-reading what came before, so the
    cost is linear in its length; a record longer than ``limit`` characters raises
    :class:`_RecordTooLong` once that many have been read.  A decoding error names the file's
    line and byte offset.  ``read`` calls :meth:`start_record` before each record.
    """

    def __init__(self, raw: io.BufferedIOBase, limit: int) -> None:
        self.raw = raw
        self.limit = limit
        self.bytes_read = 0
        self.line = 0  # lines handed to the csv reader so far
        self.record_line = 1  # where the record being read starts
        self.record_length = 0  # characters of that record handed out so far

    def start_record(self) -> None:
        self.record_line, self.record_length = self.line + 1, 0

    def __iter__(self) -> Iterator[str]:
        decoder = codecs.getincrementaldecoder("utf-8")(errors="strict")
        pending: list[str] = []  # the line being read, in pieces
        pending_length = 0
        carry = ""  # a "\r" ending a chunk: alone, or the first half of "\r\n"
        first = True
        while True:
            chunk = self.raw.read(READ_SIZE)
            self.bytes_read += len(chunk)
            if first:
                first = False
                while 0 < len(chunk) < len(codecs.BOM_UTF8) and codecs.BOM_UTF8.startswith(chunk):
                    more = self.raw.read(READ_SIZE)
                    if not more:
                        break
                    self.bytes_read += len(more)
                    chunk += more
                if chunk.startswith(codecs.BOM_UTF8):
                    chunk = chunk[len(codecs.BOM_UTF8) :]
                    if not chunk:
                        continue
            final = not chunk
            try:
                text = carry + decoder.decode(chunk, final=final)
            except UnicodeDecodeError as exc:
                raise self._not_utf8(exc, "".join(pending) + carry) from None
            carry = ""
            if not final and text.endswith("\r"):
                text, carry = text[:-1], "\r"
            for part in io.StringIO(text, newline=""):
                if part[-1] not in "\r\n":  # the chunk ends inside this line
                    pending.append(part)
                    pending_length += len(part)
                    self._check(pending_length)
                    continue
                if pending:
                    pending.append(part)
                    part = "".join(pending)
                    pending, pending_length = [], 0
                self._check(len(part))
                self.line += 1
                self.record_length += len(part)
                yield part
            if final:
                if pending:
                    self.line += 1
                    yield "".join(pending)
                return

    def _check(self, line_length: int) -> None:
        if self.record_length + line_length <= self.limit:
            return
        line = self.line + 1
        if line == self.record_line:
            raise _RecordTooLong(f"this line is too long: more than {self.limit:,} characters without a line break")
        raise _RecordTooLong(
            f"this record is too long: more than {self.limit:,} characters from line {self.record_line} to line {line}"
            " (is a quote left open?)"
        )

    def _not_utf8(self, exc: UnicodeDecodeError, before: str) -> ImportFileError:
        # exc.object is what the decoder held over from the last chunk plus this chunk: the last
        # bytes read, so its start in the file is bytes_read - len(exc.object).
        offset = self.bytes_read - len(exc.object) + exc.start
        line = self.line + 1 + _line_breaks(before + exc.object[: exc.start].decode("utf-8"))
        byte = exc.object[exc.start : exc.start + 1].hex()
        return ImportFileError(
            f"line {line}: the file is not UTF-8 text (at byte offset {offset} of the file, 0x{byte}: {exc.reason}); "
            "save it as UTF-8."
        )


def read(raw: io.BufferedIOBase) -> Iterator[Row | Problem]:
    """Yield a :class:`Row` for each valid record and a :class:`Problem` for each invalid one.

    Raises :class:`ImportFileError` when the file as a whole cannot be read.
    """
    lines = _Lines(raw, MAX_RECORD_LENGTH)
    csv.field_size_limit(FIELD_LIMIT)
    reader = csv.reader(iter(lines), strict=True)
    try:
        header = next(reader)
    except StopIteration:
        raise ImportFileError("the file is empty: it needs a header line naming the columns.") from None
    except (csv.Error, _RecordTooLong) as exc:
        raise ImportFileError(f"line 1: the header cannot be read ({exc}).") from None
    columns = [h.strip().lower() for h in header]
    _check_header(columns, header)
    index = {name: columns.index(name) for name in (*REQUIRED, *OPTIONAL) if name in columns}
    previous_end = reader.line_num
    while True:
        start = previous_end + 1
        lines.start_record()
        try:
            record = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            # The csv module cannot resynchronise after a broken record: stop here.
            yield Problem(start, "", "", f"this line cannot be read as CSV ({exc})")
            return
        except _RecordTooLong as exc:
            yield Problem(start, "", "", str(exc))  # where the record would end is unknown: stop here
            return
        previous_end = reader.line_num
        if not record or all(not field.strip() for field in record):
            continue  # blank line
        if "\x00" in "".join(record):
            yield Problem(start, "", "", "the line contains a NUL byte")
            continue
        if len(record) != len(columns):
            yield Problem(start, "", ",".join(record)[:80], f"expected {len(columns)} fields, found {len(record)}")
            continue
        yield _row(start, {name: record[i] for name, i in index.items()})


def _check_header(columns: list[str], header: list[str]) -> None:
    missing = [c for c in REQUIRED if c not in columns]
    if not missing:
        duplicated = sorted({c for c in columns if columns.count(c) > 1 and c in (*REQUIRED, *OPTIONAL)})
        if duplicated:
            raise ImportFileError(f"line 1: the header names {', '.join(duplicated)} more than once.")
        return
    line = ",".join(header)
    for delimiter, name in ((";", "semicolons"), ("\t", "tabs"), ("|", "pipes")):
        if len(header) == 1 and line.count(delimiter) >= 3:
            raise ImportFileError(
                f"line 1: the header is separated by {name}, not commas; save the file as comma-separated CSV."
            )
    raise ImportFileError(f"line 1: missing required column(s): {', '.join(missing)} (found: {line[:200]!r}).")


def _row(line: int, values: dict[str, str]) -> Row | Problem:
    values = {k: v.strip() for k, v in values.items()}
    for column, value in values.items():
        if len(value) > MAX_LENGTH[column]:
            return Problem(line, column, value, f"is {len(value)} characters long; at most {MAX_LENGTH[column]} are allowed")

    number = values["number"]
    if not number.isdigit():
        message = "must not be negative" if number.startswith("-") and number[1:].isdigit() else "is not a whole number"
        return Problem(line, "number", number, message)
    count = int(number)
    if not 1 <= count <= MAX_NUMBER:
        return Problem(line, "number", number, f"must be between 1 and {MAX_NUMBER}")

    kind = values["type"].lower()
    if kind not in TYPES:
        return Problem(line, "type", values["type"], f"is not one of {', '.join(TYPES)}")
    for column in ("username", "product"):
        if not values[column]:
            return Problem(line, column, "", "must not be empty")
    if problem := _product_key_problem(values["product"]):  # the book's page address: no "/", "..", …
        return Problem(line, "product", values["product"], problem)

    price = None
    if values["price"]:
        try:
            price = Decimal(values["price"])
        except InvalidOperation:
            return Problem(line, "price", values["price"], "is not a number")
        if not price.is_finite():
            return Problem(line, "price", values["price"], "must be a finite number")
        if price < 0:
            return Problem(line, "price", values["price"], "must not be negative")
        if price > MAX_PRICE:
            return Problem(line, "price", values["price"], f"must be at most {MAX_PRICE}")
        price = price.quantize(Decimal("0.01"))

    published = None
    if values["publishing_dt"]:
        try:
            published = _datetime(values["publishing_dt"]).date()
        except ValueError:
            return Problem(line, "publishing_dt", values["publishing_dt"], "is not a date (YYYY-MM-DD)")

    stamp = None
    if values.get("timestamp"):
        try:
            stamp = _datetime(values["timestamp"])
        except ValueError:
            return Problem(line, "timestamp", values["timestamp"], "is not an ISO-8601 date and time")

    genres: list[str] = []
    seen: set[str] = set()
    for genre in values["genres"].split(","):
        genre = " ".join(genre.split())
        if not genre:
            continue
        if len(genre) > MAX_GENRE_LENGTH:
            return Problem(line, "genres", genre, f"a genre is at most {MAX_GENRE_LENGTH} characters")
        if genre.casefold() not in seen:
            seen.add(genre.casefold())
            genres.append(genre)

    return Row(
        line=line,
        number=count,
        type=kind,
        username=values["username"],
        product=values["product"],
        price=price,
        model=values["model"].lower(),
        publishing_dt=published,
        author=" ".join(values["author"].split()),
        genres=tuple(genres),
        title=values.get("title", ""),
        timestamp=stamp,
    )


def _datetime(text: str) -> dt.datetime:
    """An ISO-8601 date or date-time; naive values are taken as UTC."""
    value = dt.datetime.fromisoformat(text.replace("Z", "+00:00") if text.endswith("Z") else text)
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    if not 1000 <= value.year <= 9999:
        raise ValueError("year out of range")
    return value.astimezone(dt.UTC)
