"""The host's models → arrays for ``ml``: interactions, item metadata, user attributes.

Everything is read with ``values_list`` in chunks (``CHUNK_SIZE`` rows per fetch), never a
model instance per row.  Which models and fields to read comes from ``RECOMMENDATIONS``.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal

import numpy as np
import scipy.sparse as sp
from django.apps import apps
from django.contrib.auth import get_user_model
from django.core.exceptions import FieldDoesNotExist
from django.db.models import Model
from django.db.models.constants import LOOKUP_SEP

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

    def rows(self, chunk_size: int, queryset=None) -> Iterator[list[tuple]]:
        fields = [self.user_path, self.item_path]
        fields += [self.weight_path] if self.weight_path else []
        fields += [self.time_path] if self.time_path else []
        chunk: list[tuple] = []
        queryset = self.queryset() if queryset is None else queryset
        for row in queryset.values_list(*fields).iterator(chunk_size=chunk_size):
            chunk.append(row)
            if len(chunk) >= chunk_size:
                yield chunk
                chunk = []
        if chunk:
            yield chunk

    def read_user(self, user_pk) -> RawSource:
        """This source's rows of one user (for rescoring them between retrains)."""
        return self.read(10000, self.queryset().filter(**{self.user_path: user_pk}))

    def read(self, chunk_size: int, queryset=None) -> RawSource:
        users, items, values, times = [], [], [], []
        has_weight, has_time = bool(self.weight_path), bool(self.time_path)
        for chunk in self.rows(chunk_size, queryset):
            cols = list(zip(*chunk, strict=True))
            users.extend(cols[0])
            items.extend(cols[1])
            if has_weight:
                w = cols[2]
                try:
                    values.append(np.asarray(w, dtype=np.float64))
                except (TypeError, ValueError):
                    values.append(np.asarray([_number(v, "weight") for v in w], dtype=np.float64))
                bad = ~np.isfinite(values[-1])
                if bad.any():
                    i = int(np.flatnonzero(bad)[0])
                    raise DataError(
                        f"Source {self.name!r} ({self.model._meta.label}): {self.weight_path!r} is "
                        f"{w[i]} for user {cols[0][i]}, item {cols[1][i]}; weights must be finite numbers."
                    )
            else:
                values.append(np.ones(len(chunk)))
            times.append(
                np.asarray([_seconds(t) for t in cols[-1]], dtype=np.float64) if has_time else np.full(len(chunk), np.nan)
            )
        cat = lambda parts: np.concatenate(parts) if parts else np.empty(0)  # noqa: E731
        return RawSource(
            name=self.name,
            users=_keys(users),
            items=_keys(items),
            values=cat(values),
            times=cat(times),
            scale=self.scale,
            transform=self.transform,
            exclude=self.exclude,
        )


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
