"""Reading a bookstore's legacy export (CSV), row by row, with errors that name the place.

Format: a header naming the columns in any order, then one row per interaction::

    number,type,username,product,price,model,publishing_dt,author,genres[,title][,timestamp]
    6,access,kerrigan,2345,12.99,printedbook,2020-02-01,john,"fantasy,kids"

``type`` is ``orderline`` (a purchase of ``number`` copies) or ``access`` (``number`` page
views).  ``genres`` is a comma-separated list inside one field.  ``price``, ``model``,
``publishing_dt``, ``author``, ``genres``, ``title`` and ``timestamp`` may be empty.

This module only parses and validates (the csv module does the quoting, embedded newlines
and CRLF); ``bookstore.management.commands.import_interactions`` writes to the database.
"""

from __future__ import annotations

import codecs
import csv
import datetime as dt
import hashlib
import io
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

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


class _Lines:
    """Text lines from a binary stream, decoding UTF-8 (a BOM is skipped) incrementally.

    Counts the bytes read, so that a progress bar can follow, and turns a decoding error
    into an error that names the line.
    """

    def __init__(self, raw: io.BufferedIOBase) -> None:
        self.raw = raw
        self.decoder = codecs.getincrementaldecoder("utf-8-sig")(errors="strict")
        self.bytes_read = 0
        self.line = 0
        self._buffer = ""

    def __iter__(self) -> Iterator[str]:
        while True:
            chunk = self.raw.read(1 << 16)
            final = not chunk
            self.bytes_read += len(chunk)
            try:
                self._buffer += self.decoder.decode(chunk, final=final)
            except UnicodeDecodeError as exc:
                line = self.line + self._buffer.count("\n") + 1
                raise ImportFileError(f"line {line}: the file is not UTF-8 text ({exc.reason} at byte {exc.start}).") from None
            parts = self._buffer.splitlines(keepends=True)
            if not final and parts and not parts[-1].endswith(("\n", "\r")):
                self._buffer = parts.pop()
            else:
                self._buffer = ""
            for part in parts:
                self.line += 1
                yield part
            if final:
                return


def read(raw: io.BufferedIOBase) -> Iterator[Row | Problem]:
    """Yield a :class:`Row` for each valid record and a :class:`Problem` for each invalid one.

    Raises :class:`ImportFileError` when the file as a whole cannot be read.
    """
    lines = _Lines(raw)
    csv.field_size_limit(FIELD_LIMIT)
    reader = csv.reader(iter(lines), strict=True)
    try:
        header = next(reader)
    except StopIteration:
        raise ImportFileError("the file is empty: it needs a header line naming the columns.") from None
    except csv.Error as exc:
        raise ImportFileError(f"line 1: the header cannot be read ({exc}).") from None
    columns = [h.strip().lower() for h in header]
    _check_header(columns, header)
    index = {name: columns.index(name) for name in (*REQUIRED, *OPTIONAL) if name in columns}
    previous_end = reader.line_num
    while True:
        start = previous_end + 1
        try:
            record = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            # The csv module cannot resynchronise after a broken record: stop here.
            yield Problem(start, "", "", f"this line cannot be read as CSV ({exc})")
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
