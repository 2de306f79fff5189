"""The host's models → arrays for ``ml``: interactions, item metadata, user attributes.

Interactions stream through a binary ``COPY`` on PostgreSQL, elsewhere through
``values_list``; both turn each chunk of ``CHUNK_SIZE`` rows into numpy arrays, never a model
instance per row.  Which models and fields to read comes from ``RECOMMENDATIONS``.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass, field
from decimal import Decimal
from itertools import islice

import numpy as np
import scipy.sparse as sp
from django.apps import apps
from django.contrib.auth import get_user_model
from django.core.exceptions import FieldDoesNotExist
from django.db import connections
from django.db.models import BigIntegerField, DateField, DecimalField, FloatField, Func, IntegerField, Model
from django.db.models.constants import LOOKUP_SEP
from django.db.models.functions import Cast

from .conf import app_settings
from .ml.ids import IdMap, distinct
from .ml.matrices import DataError, FeatureSet
from .ml.pipeline import SourceData, TrainingData

FEATURE_KINDS = ("category", "tags", "number", "year")


def resolve_path(model: type[Model], path: str):
    """The field at the end of a ``__`` path from ``model`` (raises FieldDoesNotExist)."""
    if path == "pk":
        return model._meta.pk
    current, fld = model, None
    for part in path.split(LOOKUP_SEP):
        if current is None:
            raise FieldDoesNotExist(f"{path!r}: {part!r} follows a field that is not a relation")
        fld = current._meta.pk if part == "pk" else current._meta.get_field(part)
        current = fld.related_model if fld.is_relation else None
    return fld


def item_model() -> type[Model]:
    return apps.get_model(app_settings.ITEM_MODEL)


@dataclass
class RawSource:
    name: str
    users: np.ndarray  # host keys
    items: np.ndarray
    values: np.ndarray
    times: np.ndarray  # seconds since the epoch, NaN if unknown
    scale: float
    transform: str
    exclude: bool


@dataclass
class Extracted:
    """What the database holds, as arrays keyed by the host's primary keys."""

    sources: list[RawSource]
    item_keys: np.ndarray
    allowed_keys: np.ndarray
    item_columns: dict[str, tuple[str, np.ndarray, np.ndarray]] = field(default_factory=dict)
    user_columns: dict[str, tuple[str, np.ndarray, np.ndarray]] = field(default_factory=dict)

    @property
    def latest(self) -> float | None:
        times = [s.times[np.isfinite(s.times)] for s in self.sources]
        times = [t for t in times if t.size]
        return float(max(t.max() for t in times)) if times else None

    def counts(self) -> dict:
        return {f"rows_{s.name}": int(s.users.size) for s in self.sources} | {"items": int(self.item_keys.size)}


def _keys(values: list) -> np.ndarray:
    arr = np.asarray(values)
    if arr.dtype == object:  # UUIDs and other non-numeric keys
        arr = np.asarray([str(v) for v in values])
    return arr


def _seconds(value) -> float:
    if value is None:
        return math.nan
    if isinstance(value, dt.datetime):
        return value.timestamp()
    if isinstance(value, dt.date):
        return dt.datetime(value.year, value.month, value.day, tzinfo=dt.UTC).timestamp()
    return float(value)


def _number(value, where: str) -> float:
    """A number from the database; ``None`` is NaN (missing); NaN or infinity is an error."""
    if value is None:
        return math.nan
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise DataError(f"{where} is {value}: prices and weights must be finite numbers.")
        return float(value)
    if isinstance(value, (dt.date, dt.datetime)):
        return float(value.year)
    number = float(value)
    if not math.isfinite(number):
        raise DataError(f"{where} is {number}: prices and weights must be finite numbers.")
    return number


NUMBER_FIELDS = (IntegerField, FloatField, DecimalField)  # AutoFields are IntegerFields

# Why COPY on PostgreSQL (measured on 2 cores, PostgreSQL 15): the 2.1 M interactions of a
# 100,000-customer demo store took 15 s through ``values_list`` (a tuple per row, then a
# datetime and an int or a Decimal per field) and take 1.8 s as a binary COPY read into numpy
# records, against 1.1 s for psql copying the same columns to /dev/null.  What is left is
# psycopg's Python call per copied row: iterating the COPY alone takes 1.6 s.
COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + bytes(8)  # the signature, no flags, no header extension
COPY_TRAILER = b"\xff\xff"  # a row of -1 fields


class _Float8(Func):
    """A number, a date or a date and time as PostgreSQL's ``float8`` (NaN for NULL), so that
    every field of a copied row has eight bytes."""

    output_field = FloatField()

    def __init__(self, path: str, fld) -> None:
        # date_part's epoch is microseconds / 1e6 rounded once (a date: its midnight UTC), as
        # datetime.timestamp() in _seconds.
        value = "date_part('epoch', %(expressions)s)" if isinstance(fld, DateField) else "(%(expressions)s)::float8"
        super().__init__(path, template=f"COALESCE({value}, 'NaN')")


def _copy_rows(queryset, columns: list, chunk_size: int) -> list[np.ndarray]:
    """The rows of ``queryset.values_list(*columns)`` through a binary COPY: one native
    ``int64`` or ``float64`` array per column, parsed ``chunk_size`` rows at a time.

    Each column must be a ``bigint`` or a ``float8`` that is never NULL: the rows are then
    fixed-size records that numpy reads without Python per row.  The SQL is the queryset's
    own, its parameters bound by psycopg on the client (``compose_sql``): COPY takes none.
    """
    connection = connections[queryset.db]
    kinds = ["i8" if isinstance(c.output_field, IntegerField) else "f8" for c in columns]
    fields = [("fields", ">i2")]
    for n, kind in enumerate(kinds):
        fields += [(f"size{n}", ">i4"), (f"value{n}", f">{kind}")]
    record = np.dtype(fields)
    sql, params = queryset.values_list(*columns).query.sql_with_params()
    statement = f"COPY ({connection.ops.compose_sql(sql, params)}) TO STDOUT (FORMAT binary)"

    def take(buffer: bytearray) -> list[np.ndarray] | None:
        """The whole records at the start of ``buffer``, removed from it."""
        n = len(buffer) // record.itemsize
        rows = np.frombuffer(buffer, record, count=n).copy()
        del buffer[: n * record.itemsize]
        sizes_ok = all((rows[f"size{i}"] == 8).all() for i in range(len(kinds)))
        if not ((rows["fields"] == len(kinds)).all() and sizes_ok):
            raise RuntimeError(f"COPY sent rows that are not {len(kinds)} fields of eight bytes: {statement}")
        return [rows[f"value{i}"].astype(kind) for i, kind in enumerate(kinds)] if n else None

    chunks = []
    # psycopg holds the connection until the last row: nothing may query it inside this block
    # (hence a list of chunks, not a generator).
    with connection.cursor() as cursor, cursor.cursor.copy(statement) as copy:
        buffer = bytearray(copy.read())  # the header comes with the first row
        if not buffer.startswith(COPY_HEADER):
            raise RuntimeError(f"COPY sent an unknown header {bytes(buffer[: len(COPY_HEADER)])!r}")
        del buffer[: len(COPY_HEADER)]
        limit = chunk_size * record.itemsize
        for data in copy:  # one message per row
            buffer += data
            if len(buffer) >= limit:
                chunks.append(take(buffer))
    if (last := take(buffer)) is not None:
        chunks.append(last)
    if buffer != COPY_TRAILER:
        raise RuntimeError(f"COPY ended without its trailer: {statement}")
    return _concatenated(chunks, len(columns))


def _target(fld):
    """The field whose values a path ends in (for a foreign key: the key it points to)."""
    while fld.is_relation:
        fld = fld.target_field
    return fld


def _weights(raw) -> np.ndarray:
    try:
        return np.asarray(raw, dtype=np.float64)  # ints, floats, Decimals, None (NaN)
    except (TypeError, ValueError):
        return np.asarray([_number(v, "weight") for v in raw], dtype=np.float64)


def _concatenated(chunks: list, n_columns: int) -> list[np.ndarray]:
    """Each column's chunks end to end (empty float arrays when there are none, as ``_keys([])``)."""
    return [np.concatenate(column) for column in zip(*chunks, strict=True)] if chunks else [np.empty(0)] * n_columns


class ModelSource:
    """One interaction source: rows of a host model, each naming a user, an item, a weight."""

    def __init__(self, config: dict) -> None:
        self.config = config
        self.name = config["name"]
        self.model = apps.get_model(config["model"])
        self.user_path = config["user"]
        self.item_path = config["item"]
        self.weight_path = config.get("weight")
        self.time_path = config.get("timestamp")
        self.scale = float(config.get("scale", 1.0))
        self.transform = config.get("transform", "log1p")
        self.exclude = bool(config.get("exclude", False))

    def queryset(self):
        qs = self.model._default_manager.all()
        if self.config.get("filter"):
            qs = qs.filter(**self.config["filter"])
        return qs.filter(**{f"{self.user_path}__isnull": False, f"{self.item_path}__isnull": False})

    def read_user(self, user_pk) -> RawSource:
        """This source's rows of one user (for rescoring them between retrains)."""
        return self.read(10000, self.queryset().filter(**{self.user_path: user_pk}))

    def read(self, chunk_size: int, queryset=None) -> RawSource:
        queryset = self.queryset() if queryset is None else queryset
        columns = self._copy_columns(queryset)
        if columns is None:
            users, items, values, times = self._read_orm(queryset, chunk_size)
        else:
            users, items, values, times = self._read_copy(queryset, columns, chunk_size)
        bad = np.flatnonzero(~np.isfinite(values))
        if bad.size:
            # COPY sends NULL as NaN: the message shows the weight as the ORM reads it.
            i = bad[0]
            weight = self._stored_weight(queryset, users[i], items[i])
            raise DataError(
                f"Source {self.name!r} ({self.model._meta.label}): {self.weight_path!r} is "
                f"{weight} for user {users[i]}, item {items[i]}; weights must be finite numbers."
            )
        return RawSource(
            name=self.name,
            users=users,
            items=items,
            values=values,
            times=times,
            scale=self.scale,
            transform=self.transform,
            exclude=self.exclude,
        )

    def _copy_columns(self, queryset) -> list | None:
        """What a binary COPY of the source selects, or None where the ORM reads it: on other
        databases than PostgreSQL; for keys that are not integers (UUIDs, codes: text in
        COPY, left to the ORM for simplicity); for a weight that is not a number or a time
        that is neither a number nor a date (read as the ORM converts them)."""
        if connections[queryset.db].vendor != "postgresql":
            return None
        keys = [_target(resolve_path(self.model, path)) for path in (self.user_path, self.item_path)]
        if not all(isinstance(key, IntegerField) for key in keys):
            return None
        columns = [Cast(self.user_path, BigIntegerField()), Cast(self.item_path, BigIntegerField())]
        for path, allowed in ((self.weight_path, NUMBER_FIELDS), (self.time_path, (*NUMBER_FIELDS, DateField))):
            if path:
                fld = resolve_path(self.model, path)
                if fld.is_relation or not isinstance(fld, allowed):
                    return None
                columns.append(_Float8(path, fld))
        return columns

    def _read_copy(self, queryset, columns: list, chunk_size: int) -> list[np.ndarray]:
        users, items, *rest = _copy_rows(queryset, columns, chunk_size)
        values = rest.pop(0) if self.weight_path else np.ones(users.size)
        times = rest.pop(0) if self.time_path else np.full(users.size, np.nan)
        return [users, items, values, times]

    def _read_orm(self, queryset, chunk_size: int) -> list[np.ndarray]:
        paths = [p for p in (self.user_path, self.item_path, self.weight_path, self.time_path) if p]
        rows = queryset.values_list(*paths).iterator(chunk_size=chunk_size)
        chunks = []
        while chunk := list(islice(rows, chunk_size)):
            cols, n = list(zip(*chunk, strict=True)), len(chunk)
            values = _weights(cols[2]) if self.weight_path else np.ones(n)
            times = np.fromiter(map(_seconds, cols[-1]), np.float64, n) if self.time_path else np.full(n, np.nan)
            chunks.append((_keys(cols[0]), _keys(cols[1]), values, times))
        return _concatenated(chunks, 4)

    def _stored_weight(self, queryset, user, item):
        """The missing or non-finite weight of a user's row of an item, as the ORM reads it."""
        rows = queryset.filter(**{self.user_path: user, self.item_path: item})
        weights = rows.values_list(self.weight_path, flat=True)
        return next((w for w in weights if w is None or not math.isfinite(w)), None)


def sources() -> list:
    return [app_settings.SOURCE_CLASS(config) for config in app_settings.SOURCES]


def target_names() -> set[str]:
    """The sources whose rows are what the shop wants (``EVALUATION["target"]``): by default
    those marked ``exclude`` (purchases), or every source when none is."""
    explicit = app_settings.EVALUATION.get("target")
    if explicit:
        return set(explicit)
    marked = {c["name"] for c in app_settings.SOURCES if c.get("exclude")}
    return marked or {c["name"] for c in app_settings.SOURCES}


def _feature_columns(model, features: dict, keys_filter=None, chunk_size: int = 20000) -> dict:
    """``{path: (kind, row keys, values)}`` for each configured feature of ``model``."""
    manager = model._default_manager
    columns: dict[str, tuple[str, np.ndarray, np.ndarray]] = {}
    single = [p for p, kind in features.items() if kind != "tags"]
    if single:
        pks, values = [], {p: [] for p in single}
        qs = manager.all() if keys_filter is None else manager.filter(pk__in=keys_filter)
        for row in qs.values_list("pk", *single).iterator(chunk_size=chunk_size):
            pks.append(row[0])
            for p, v in zip(single, row[1:], strict=True):
                values[p].append(v)
        keys = _keys(pks)
        for p in single:
            kind = features[p]
            if kind in ("number", "year"):
                label = model._meta.label
                arr = np.asarray(
                    [_number(v, f"{label} {pk!r}: {p!r}") for pk, v in zip(pks, values[p], strict=True)],
                    dtype=np.float64,
                )
            else:
                arr = np.asarray(values[p], dtype=object)
            columns[p] = (kind, keys, arr)
    for p, kind in features.items():
        if kind != "tags":
            continue
        qs = manager.all() if keys_filter is None else manager.filter(pk__in=keys_filter)
        pairs = [(pk, v) for pk, v in qs.values_list("pk", p).iterator(chunk_size=chunk_size) if v is not None]
        keys = _keys([pk for pk, _ in pairs]) if pairs else np.empty(0, dtype=np.int64)
        columns[p] = (kind, keys, np.asarray([v for _, v in pairs], dtype=object))
    return columns


def extract() -> Extracted:
    """Read every source, the items and their features, and the users' attributes."""
    chunk = app_settings.CHUNK_SIZE
    raw = [source.read(chunk) for source in sources()]
    model = item_model()
    manager = model._default_manager
    item_keys = _keys(list(manager.values_list("pk", flat=True).iterator(chunk_size=chunk)))
    allowed = _keys(list(manager.filter(**app_settings.ITEM_FILTER).values_list("pk", flat=True).iterator(chunk_size=chunk)))
    extracted = Extracted(raw, item_keys, allowed)
    extracted.item_columns = _feature_columns(model, app_settings.ITEM_FEATURES, chunk_size=chunk)
    if app_settings.USER_FEATURES:
        users = distinct(np.concatenate([s.users for s in raw])) if raw else np.empty(0)
        extracted.user_columns = _feature_columns(
            get_user_model(), app_settings.USER_FEATURES, keys_filter=users.tolist(), chunk_size=chunk
        )
    return extracted


def _feature_set(ids: IdMap, columns: dict, buckets: int) -> FeatureSet:
    fs = FeatureSet(len(ids))
    for path, (kind, keys, values) in columns.items():
        rows = ids.index(keys)
        known = rows >= 0
        rows, values = rows[known], values[known]
        if kind == "tags":
            fs.add_tags(path, rows, values)
            continue
        full = np.full(len(ids), np.nan if kind in ("number", "year") else None, dtype=values.dtype)
        full[rows] = values
        if kind in ("number", "year"):
            fs.add_number(path, full, buckets)
        else:
            fs.add_category(path, full)
    return fs


def build(extracted: Extracted) -> TrainingData:
    """Id maps, matrix rows and metadata matrices from what :func:`extract` read.

    Interactions with items that no longer exist are dropped; users are those with at
    least one interaction.
    """
    items = IdMap(extracted.item_keys)
    targets = target_names()
    non_empty = [s.users for s in extracted.sources if s.users.size]
    users = IdMap(np.concatenate(non_empty) if non_empty else np.empty(0, dtype=np.int64))
    sources_data = []
    for s in extracted.sources:
        item_rows = items.index(s.items)
        known = item_rows >= 0
        sources_data.append(
            SourceData(
                name=s.name,
                user=users.index(s.users[known]),
                item=item_rows[known],
                value=s.values[known],
                time=s.times[known],
                scale=s.scale,
                transform=s.transform,
                target=s.name in targets,
            )
        )
    meta = _feature_set(items, extracted.item_columns, app_settings.NUMBER_BUCKETS)
    allowed = np.zeros(len(items), dtype=bool)
    rows = items.index(extracted.allowed_keys)
    allowed[rows[rows >= 0]] = True
    data = TrainingData(
        users=users,
        items=items,
        sources=sources_data,
        item_metadata=meta.matrix(),
        item_metadata_names=meta.names,
        allowed=allowed,
        max_history_features=app_settings.MAX_HISTORY_FEATURES,
        edges=meta.edges,
    )
    if extracted.user_columns:
        attrs = _feature_set(users, extracted.user_columns, app_settings.NUMBER_BUCKETS)
        data.user_attributes = attrs.matrix()
        data.user_attribute_names = attrs.names
    return data


def exclusions(data: TrainingData, extracted: Extracted) -> sp.csr_matrix:
    """``(n_users, n_items)``: 1 where the user must not be offered the item."""
    parts = [(s.user, s.item) for s, raw in zip(data.sources, extracted.sources, strict=True) if raw.exclude]
    if not parts:
        return sp.csr_matrix((data.n_users, data.n_items), dtype=np.float32)
    u = np.concatenate([p[0] for p in parts])
    i = np.concatenate([p[1] for p in parts])
    m = sp.csr_matrix((np.ones(u.size, np.float32), (u, i)), shape=(data.n_users, data.n_items))
    m.sum_duplicates()
    return m
