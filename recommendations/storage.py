"""Writing a run's lists and switching the run live; the model artifact; pruning old runs."""

from __future__ import annotations

import hashlib
import io
import logging
import os
import re
import struct
import uuid
import zipfile
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import FileSystemStorage, storages
from django.db import OperationalError, connection, connections, reset_queries, transaction
from django.utils import timezone

from .conf import app_settings
from .models import ListKind, Recommendation, SimilarItem, TrainingRun
from .querysets import of_this_item_model

logger = logging.getLogger(__name__)

PG_HEADER = b"PGCOPY\n\xff\r\n\x00" + struct.pack(">ii", 0, 0)
PG_TRAILER = struct.pack(">h", -1)


PUBLISH_LOCK = 0x7265636F6D6D  # an arbitrary constant naming the "publish" advisory lock


class PublishConflict(RuntimeError):
    """The run cannot go live (it is not the newest finished run, or already failed)."""


def _column(model, name: str):
    fld = model._meta.get_field(name)
    return fld.column, (fld.target_field if fld.is_relation else fld)


def _binary_type(fld, value) -> str | None:
    """numpy dtype of a column in PostgreSQL's binary COPY format, or None if not supported.

    Fixed-size numbers, NULL, and one constant string for all rows are supported.
    """
    if value is None:
        return "null"
    db_type = (fld.rel_db_type(connection) if fld.is_relation or fld.primary_key else fld.db_type(connection)) or ""
    db_type = db_type.split("(")[0].strip().lower()
    if isinstance(value, str):
        return f"S{len(value.encode())}" if db_type in {"varchar", "text", "character varying"} else None
    return {"bigint": ">i8", "integer": ">i4", "smallint": ">i2", "double precision": ">f8"}.get(db_type)


def _pg_binary_block(columns: list[tuple[str, object, str]], n: int) -> bytes:
    """Rows in PostgreSQL's binary COPY format, built with numpy (no per-row Python).

    ``columns`` holds (name, values, dtype): an array, a constant, or None for SQL NULL.
    psycopg's ``write_row`` goes through Python once per row, and text COPY needs every
    number formatted in Python; a numpy structured array of fixed-size fields is written in
    one go, which is why this is written by hand.
    """
    fields: list[tuple[str, str]] = [("nfields", ">i2")]
    for name, _, dtype in columns:
        fields.append((f"{name}_len", ">i4"))
        if dtype != "null":
            fields.append((name, dtype))
    rows = np.empty(n, dtype=np.dtype(fields))
    rows["nfields"] = len(columns)
    for name, values, dtype in columns:
        if dtype == "null":
            rows[f"{name}_len"] = -1
            continue
        rows[f"{name}_len"] = np.dtype(dtype).itemsize
        rows[name] = values.encode() if isinstance(values, str) else values
    return rows.tobytes()


def _row_bytes(types: list[str]) -> int:
    """Bytes of one row in binary COPY: the field count, then each field's length and value."""
    return 2 + sum(4 + (0 if t == "null" else np.dtype(t).itemsize) for t in types)


INTEGER_TYPES = {"AutoField", "BigAutoField", "SmallAutoField", "IntegerField", "BigIntegerField",
                 "SmallIntegerField", "PositiveIntegerField", "PositiveBigIntegerField", "PositiveSmallIntegerField"}  # fmt: skip
NUMBER_TYPES = INTEGER_TYPES | {"FloatField"}


def _prepared(fld, values):
    """A column as the database stores it (a UUID key as 32 hex digits on SQLite, …).

    Integers and floats pass as they are; other values go through the field, one by one,
    as the ORM would do.
    """
    if values is None or np.ndim(values) == 0 or fld.get_internal_type() in NUMBER_TYPES:
        return values
    return np.asarray(
        [fld.get_db_prep_value(fld.to_python(v), connection, prepared=False) for v in np.asarray(values).tolist()],
        dtype=object,
    )


def write_rows(model, data: dict[str, object], n: int, table: str | None = None) -> int:
    """Insert ``n`` rows into ``model``'s table (or ``table``, one of the same columns),
    column by column from arrays or constants.

    PostgreSQL: binary ``COPY`` (text COPY for columns it cannot encode); other databases:
    ``executemany`` in ``WRITE_BATCH`` batches.  Runs inside the caller's transaction.
    """
    if n == 0:
        return 0
    names = list(data)
    cols = [_column(model, name) for name in names]
    data = {name: _prepared(fld, data[name]) for name, (_, fld) in zip(names, cols, strict=True)}
    table = connection.ops.quote_name(table or model._meta.db_table)
    col_sql = ", ".join(connection.ops.quote_name(c) for c, _ in cols)
    batch = max(1, app_settings.WRITE_BATCH)
    if connection.vendor == "postgresql":
        types = [_binary_type(f, data[name]) for name, (_, f) in zip(names, cols, strict=True)]
        binary = all(t is not None for t in types)
        with connection.cursor() as cursor:
            fmt = " WITH (FORMAT binary)" if binary else ""
            with cursor.cursor.copy(f"COPY {table} ({col_sql}) FROM STDIN{fmt}") as copy:
                if binary:
                    copy.write(PG_HEADER)
                # About a megabyte per write: measured, larger writes made COPY slower (the
                # server waits for each whole message before parsing it).
                step = max(1, (1 << 20) // _row_bytes(types)) if binary else batch
                for start in range(0, n, step):
                    stop = min(start + step, n)
                    if binary:
                        block = [
                            (name, data[name] if np.ndim(data[name]) == 0 else data[name][start:stop], t)
                            for name, t in zip(names, types, strict=True)
                        ]
                        copy.write(_pg_binary_block(block, stop - start))
                    else:
                        for row in _rows(data, names, start, stop):
                            copy.write_row(row)
                if binary:
                    copy.write(PG_TRAILER)
        return n
    placeholders = ", ".join(["%s"] * len(names))
    sql = f"INSERT INTO {table} ({col_sql}) VALUES ({placeholders})"
    with connection.cursor() as cursor:
        for start in range(0, n, batch):
            cursor.executemany(sql, list(_rows(data, names, start, min(start + batch, n))))
            reset_queries()  # with DEBUG on, Django would keep every batch's parameters
    return n


def _rows(data: dict, names: list[str], start: int, stop: int) -> Iterable[tuple]:
    cols = [
        [data[name]] * (stop - start) if np.ndim(data[name]) == 0 else data[name][start:stop].tolist()
        for name in names
    ]
    return zip(*cols, strict=True)


def existing(model, keys: np.ndarray, chunk: int = 10_000) -> np.ndarray:
    """Which of ``keys`` (primary keys of ``model``) still exist, as a boolean mask.

    PostgreSQL with integer keys: one query per 100,000 keys that returns only the missing
    ones (usually none); otherwise the ORM's ``pk__in`` in chunks of ``chunk``.
    """
    keys = np.asarray(keys)
    numeric = keys.dtype.kind in "iu"
    pk = model._meta.pk
    if connection.vendor == "postgresql" and numeric and pk.get_internal_type() in INTEGER_TYPES:
        q = connection.ops.quote_name
        sql = (
            f"SELECT k FROM unnest(%s::bigint[]) AS k "
            f"WHERE NOT EXISTS (SELECT 1 FROM {q(model._meta.db_table)} WHERE {q(pk.column)} = k)"
        )
        missing = []
        with connection.cursor() as cursor:
            for start in range(0, keys.size, 100_000):
                cursor.execute(sql, [keys[start : start + 100_000].tolist()])
                missing.extend(row[0] for row in cursor.fetchall())
        return ~np.isin(keys, np.asarray(missing, dtype=np.int64))
    mask = np.zeros(keys.size, dtype=bool)
    for start in range(0, keys.size, chunk):
        part = keys[start : start + chunk].tolist()
        found = set(model._default_manager.filter(pk__in=part).values_list("pk", flat=True))
        if not numeric:  # UUIDs and other keys travel as strings (see sources._keys)
            found = {str(k) for k in found}
        mask[start : start + len(part)] = [k in found for k in part]
    return mask


MAX_NAME = 63  # PostgreSQL's identifier length


def partition_name(model, run_id: int) -> str:
    """The name of ``run_id``'s partition of ``model``'s table (as migration 0003 names them)."""
    table, suffix = model._meta.db_table, f"_run{int(run_id)}"
    return table[: MAX_NAME - len(suffix)] + suffix


def is_partitioned(model) -> bool:
    """Whether ``model``'s table is partitioned by run (PostgreSQL, after migration 0003)."""
    if connection.vendor != "postgresql":
        return False
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT EXISTS (SELECT 1 FROM pg_partitioned_table WHERE partrelid = to_regclass(%s))",
            [connection.ops.quote_name(model._meta.db_table)],
        )
        return cursor.fetchone()[0]


class RunRows:
    """Where a run's rows go while it is stored.

    On PostgreSQL with the list tables partitioned by run, each table gets a new bare table
    (the columns, no index), created by :meth:`prepare` before any row is written: ``COPY``
    fills it at the speed of a scratch table, from any number of processes at once (the
    scoring shards), each in its own transaction; :meth:`finish` builds its indexes in one
    pass each (much cheaper than keeping them up to date row by row) and analyses it, and
    :meth:`attach`, inside the transaction that publishes the run, makes it the run's
    partition, which takes a moment however many rows it holds.  A ``CHECK`` on the run
    spares the attach a scan.  Readers never see a bare table.

    Row ids there are ``run id · 2³² + n`` (:func:`row_ids`), where ``n`` follows from the
    list's place (the customer's row in the model) and the rank, so a shard's ids do not
    depend on the order shards run in, and stay disjoint from the ids the sequence hands out
    to rows written one by one.  Elsewhere rows go into the tables as
    they are (readers only read the live run's rows).
    """

    MODELS = (Recommendation, SimilarItem)

    def __init__(self, run: TrainingRun):
        self.run = run
        self.tables: dict[type, str | None] = {}

    def table(self, model) -> str | None:
        if model not in self.tables:
            self.tables[model] = partition_name(model, self.run.pk) if is_partitioned(model) else None
        return self.tables[model]

    def prepare(self) -> None:
        """Create the run's bare tables (committed at once: shards in other processes write
        into them); :func:`discard_rows` drops them if the run fails."""
        q = connection.ops.quote_name
        for model in self.MODELS:
            name = self.table(model)
            if name is None:
                continue
            with transaction.atomic(), connection.cursor() as cursor:
                # A table of that name can only be left from a run with the same id in a
                # database since emptied (tests): its rows are not this run's.
                cursor.execute(f"DROP TABLE IF EXISTS {q(name)}")
                cursor.execute(f"CREATE TABLE {q(name)} (LIKE {q(model._meta.db_table)} INCLUDING DEFAULTS)")
                cursor.execute(f"ALTER TABLE {q(name)} ADD CHECK (run_id IS NOT NULL AND run_id = {int(self.run.pk)})")

    def write(self, model, data: dict[str, object], n: int, numbers: np.ndarray) -> int:
        """Write ``n`` rows, the run's rows number ``numbers`` (their ids on a bare table)."""
        table = self.table(model)
        if table is not None and n:
            data = {"id": row_ids(self.run.pk, numbers), **data}
        return write_rows(model, data, n, table=table)

    def finish(self) -> None:
        """Index and analyse the new tables: the parent's indexes, built in one pass."""
        q = connection.ops.quote_name
        with connection.cursor() as cursor:
            for model in self.MODELS:
                name = self.table(model)
                if name is None:
                    continue
                cursor.execute(
                    "SELECT pg_get_indexdef(indexrelid) FROM pg_index WHERE indrelid = to_regclass(%s)",
                    [q(model._meta.db_table)],
                )
                for (definition,) in cursor.fetchall():
                    unique = "UNIQUE " if definition.startswith("CREATE UNIQUE") else ""
                    cursor.execute(f"CREATE {unique}INDEX ON {q(name)}{definition[definition.index(' USING '):]}")
                cursor.execute(f"ANALYZE {q(name)}")

    def attach(self) -> None:
        """Attach the new tables as the run's partitions (inside the publishing transaction)."""
        q = connection.ops.quote_name
        with connection.cursor() as cursor:
            for model in self.MODELS:
                name = self.table(model)
                if name is not None:
                    cursor.execute(
                        f"ALTER TABLE {q(model._meta.db_table)} ATTACH PARTITION {q(name)} FOR VALUES IN ({int(self.run.pk)})"
                    )

    def drop(self) -> None:
        """Drop the run's bare tables (a failed run's): never an attached partition.  A
        table a lost process still holds is left to the next prune (``_drop_partitions``)
        rather than waited for."""
        q = connection.ops.quote_name
        for model in self.MODELS:
            name = self.table(model)
            if name is None:
                continue
            try:
                with transaction.atomic(), connection.cursor() as cursor:
                    cursor.execute("SET LOCAL lock_timeout = '2s'")
                    cursor.execute("SELECT EXISTS (SELECT 1 FROM pg_inherits WHERE inhrelid = to_regclass(%s))", [q(name)])
                    if not cursor.fetchone()[0]:
                        cursor.execute(f"DROP TABLE IF EXISTS {q(name)}")
            except OperationalError as exc:
                logger.warning("Could not drop %s yet (%s); the next prune drops it", name, exc)


ROW_ID_SPAN = 1 << 32


def row_ids(run_id: int, numbers: np.ndarray) -> np.ndarray:
    """The ids of a run's rows numbered ``numbers`` (from 0) in its own table: ``run id · 2³²
    + number + 1``."""
    numbers = np.asarray(numbers, dtype=np.int64)
    if numbers.size and not (0 <= numbers.min() and numbers.max() < ROW_ID_SPAN - 1):
        raise ValueError(f"a run may number at most {ROW_ID_SPAN - 1} rows in one table (LIST_SIZE × customers)")
    return (np.int64(run_id) << np.int64(32)) + numbers + 1


def _write(rows: RunRows | None, model, data: dict, n: int, numbers: np.ndarray) -> int:
    return rows.write(model, data, n, numbers) if rows is not None else write_rows(model, data, n)


def _cells(first: int, shape: tuple[int, int], user_rows: np.ndarray | None = None) -> np.ndarray:
    """Row numbers of a block of lists (one list per line, ``shape[1]`` ranks each): line
    ``i`` rank ``r`` is ``first + row_i · k + r``, with ``row_i = user_rows[i]`` or ``i``."""
    n, k = shape
    lines = np.arange(n, dtype=np.int64) if user_rows is None else np.asarray(user_rows, dtype=np.int64)
    return first + lines[:, None] * k + np.arange(k, dtype=np.int64)[None, :]


# Where each list goes among a run's row numbers in the Recommendation table (see RunRows):
# the popular lists first (POPULAR_SIZE slots per kind), then the customers' lists by their
# row in the model.
POPULAR_KINDS = (ListKind.POPULAR.value, ListKind.RECENT.value)


def personal_first_row() -> int:
    return len(POPULAR_KINDS) * app_settings.POPULAR_SIZE


def store_personal(
    run: TrainingRun, user_keys: np.ndarray, item_keys: np.ndarray, scores: np.ndarray, valid: np.ndarray,
    rows: RunRows | None = None, user_rows: np.ndarray | None = None,
) -> int:  # fmt: skip
    """Customers' lists: ``item_keys[i]`` (best first; ``valid`` marks real entries) for
    ``user_keys[i]``, whose row in the run's model is ``user_rows[i]``; through ``rows``
    when the run is being stored, else into the table."""
    n_users, k = item_keys.shape
    rank = np.broadcast_to(np.arange(1, k + 1), (n_users, k))[valid]
    users = np.broadcast_to(user_keys[:, None], (n_users, k))[valid]
    numbers = _cells(personal_first_row(), (n_users, k), user_rows)[valid] if rows is not None else None
    return _write(
        rows,
        Recommendation,
        {
            "run": run.pk,
            "user": users,
            "item": item_keys[valid],
            "kind": ListKind.PERSONAL.value,
            "rank": rank.astype(np.int64),
            "score": scores[valid].astype(np.float64),
        },
        int(valid.sum()),
        numbers,
    )


def store_popular(run: TrainingRun, kind: str, item_keys: np.ndarray, scores: np.ndarray, rows: RunRows | None = None) -> int:
    n = min(len(item_keys), app_settings.POPULAR_SIZE)
    first = POPULAR_KINDS.index(kind) * app_settings.POPULAR_SIZE
    return _write(
        rows,
        Recommendation,
        {
            "run": run.pk,
            "user": None,
            "item": np.asarray(item_keys)[:n],
            "kind": kind,
            "rank": np.arange(1, n + 1, dtype=np.int64),
            "score": np.asarray(scores, dtype=np.float64)[:n],
        },
        n,
        first + np.arange(n, dtype=np.int64),
    )


def store_similar(
    run: TrainingRun, item_keys: np.ndarray, similar_keys: np.ndarray, scores: np.ndarray, valid: np.ndarray,
    rows: RunRows | None = None,
) -> int:  # fmt: skip
    n, k = similar_keys.shape
    return _write(
        rows,
        SimilarItem,
        {
            "run": run.pk,
            "item": np.broadcast_to(item_keys[:, None], (n, k))[valid],
            "similar": similar_keys[valid],
            "rank": np.broadcast_to(np.arange(1, k + 1), (n, k))[valid].astype(np.int64),
            "score": scores[valid].astype(np.float64),
        },
        int(valid.sum()),
        _cells(0, (n, k))[valid],
    )


def publish(run: TrainingRun) -> None:
    """Make ``run`` the live run, inside the caller's transaction.

    Publishers are serialised (an advisory lock on PostgreSQL; SQLite's write lock) and the
    run's row is locked (``SELECT … FOR UPDATE``): a run that was marked failed meanwhile
    (by the stale-run check while its worker was thought dead) does not go live, and an
    older run never replaces a newer live one.  The unique index on ``is_live`` is the
    last line: two live runs cannot be committed on any database.
    """
    if connection.vendor == "postgresql":
        # Publishers queue here, one at a time, until their transactions end: each then sees
        # what the previous one did (no live run yet is no row to lock).
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [PUBLISH_LOCK])
    locked = TrainingRun.objects.select_for_update().filter(pk=run.pk).first()
    if locked is None or locked.status not in (TrainingRun.Status.RUNNING, TrainingRun.Status.SUCCEEDED):
        raise PublishConflict(f"Run #{run.pk} is {locked.status if locked else 'gone'}; not publishing it.")
    live = list(TrainingRun.objects.select_for_update().filter(is_live=True).values_list("pk", "created"))
    if live and live[0][0] != run.pk and live[0][1] > locked.created:
        raise PublishConflict(f"Run #{live[0][0]}, requested after run #{run.pk}, is already live.")
    now = timezone.now()
    TrainingRun.objects.filter(is_live=True).exclude(pk=run.pk).update(is_live=None)
    TrainingRun.objects.filter(pk=run.pk).update(is_live=True, published=now)
    run.is_live, run.published = True, now


def prune(keep: int | None = None) -> list[int]:
    """Delete the lists and artifacts of all but the newest ``keep`` successful runs (never the
    live one); the runs themselves stay, for their history and metrics."""
    keep = app_settings.KEEP_RUNS if keep is None else keep
    # Runs of another ITEM_MODEL (the setting changed) are not kept: their keys are not ours.
    other_model = ~of_this_item_model()
    kept = set(
        TrainingRun.objects.filter(status=TrainingRun.Status.SUCCEEDED)
        .exclude(other_model)
        .order_by("-created", "-id")
        .values_list("pk", flat=True)[: max(keep, 1)]
    )
    kept |= set(TrainingRun.objects.filter(is_live=True).values_list("pk", flat=True))
    old = list(
        TrainingRun.objects.filter(pruned=False).exclude(pk__in=kept).finished().values_list("pk", "artifact")
    )
    for name in orphan_artifacts():
        logger.info("Deleting artifact %s: no run refers to it", name)
        delete_artifact(name)
    if not old:
        return []
    ids = [pk for pk, _ in old]
    for model in (Recommendation, SimilarItem):
        if is_partitioned(model):
            busy = _drop_partitions(model, ids)
            old = [(pk, name) for pk, name in old if pk not in busy]  # their turn comes next time
            ids = [pk for pk, _ in old]
    # Fast DELETE … WHERE run_id IN (…): these tables have no dependants or signals.  After
    # the partitions went, it only finds rows written to the default partition.
    Recommendation.objects.filter(run_id__in=ids).delete()
    SimilarItem.objects.filter(run_id__in=ids).delete()
    for _, name in old:
        delete_artifact(name)
    TrainingRun.objects.filter(pk__in=ids).update(pruned=True, artifact="")
    return ids


def _drop_partitions(model, run_ids: list[int]) -> set[int]:
    """Drop the runs' partitions: instant, and no dead rows left for VACUUM.  Dropping one
    locks the parent table for a moment; waiting behind a long read would stall the reads
    queued behind it, so a drop gives up after half a second (the next prune retries)."""
    q = connection.ops.quote_name
    busy = set()
    for run_id in run_ids:
        try:
            with transaction.atomic(), connection.cursor() as cursor:
                cursor.execute("SET LOCAL lock_timeout = '500ms'")
                cursor.execute(f"DROP TABLE IF EXISTS {q(partition_name(model, run_id))}")
        except OperationalError as exc:
            logger.warning("Could not drop partition %s yet: %s", partition_name(model, run_id), exc)
            busy.add(run_id)
    return busy


def discard_rows(run: TrainingRun) -> None:
    """Remove whatever a failed run managed to write (it was never live)."""
    RunRows(run).drop()
    with transaction.atomic():
        Recommendation.objects.filter(run=run).delete()
        SimilarItem.objects.filter(run=run).delete()


# -- artifacts ---------------------------------------------------------------------------------
def artifact_root() -> Path:
    """The private directory of the default artifact storage (see ``ARTIFACT_ROOT``)."""
    root = app_settings.ARTIFACT_ROOT
    if root:
        return Path(root)
    base = getattr(settings, "BASE_DIR", None)
    if base:
        return Path(base) / "var" / "recommendations"
    data_home = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return Path(data_home) / "django-recommendations"


def artifact_storage():
    """The storage artifacts go to: ``STORAGES[ARTIFACT_STORAGE]``, or by default a private
    file system storage (:class:`PrivateStorage`) at :func:`artifact_root`.

    Raises ``InvalidStorageError`` for an alias that ``STORAGES`` does not define."""
    alias = app_settings.ARTIFACT_STORAGE
    if alias:
        return storages[alias]
    return PrivateStorage(location=str(artifact_root()), file_permissions_mode=0o600, directory_permissions_mode=0o700)


class PrivateStorage(FileSystemStorage):
    """A file system storage without URLs (owner-only files): artifacts hold every
    customer's vectors, and nothing should ever link to them."""

    def url(self, name):
        raise ValueError("model artifacts are private: they have no URL")


def database_tag(alias: str = "default") -> str:
    """A folder name of its own for each database of the project: two databases (a staging
    copy, tests) never share, overwrite or prune each other's artifacts."""
    conf = connections[alias].settings_dict
    ident = f"{conf.get('ENGINE')}|{conf.get('HOST') or ''}|{conf.get('PORT') or ''}|{conf.get('NAME') or ''}"
    name = re.sub(r"[^A-Za-z0-9]+", "-", os.path.basename(str(conf.get("NAME") or "db"))).strip("-")[:40] or "db"
    return f"{connections[alias].vendor}-{name}-{hashlib.sha256(ident.encode()).hexdigest()[:10]}"


def artifact_folder() -> str:
    return f"{app_settings.ARTIFACT_DIR.strip('/')}/{database_tag()}"


ARTIFACT_NAME = re.compile(r"run-(\d+)-[0-9a-f]{12}\.npz$")


def save_artifact(run: TrainingRun, arrays: dict[str, np.ndarray]) -> tuple[str, dict]:
    """Save arrays as a compressed ``.npz`` (no pickled objects) through Django's storage API.

    Returns the file's name, unique to the run and the database (never overwritten), and
    its record: its size, its SHA-256 and every array's dtype and shape, which
    :func:`load_artifact` checks before it reads anything.
    """
    record: dict = {"arrays": {}}
    for key, value in arrays.items():
        value = np.asarray(value)
        if value.dtype == object:
            raise TypeError(f"artifact array {key!r} has dtype object, which would need pickle")
        record["arrays"][key] = {"dtype": value.dtype.str, "shape": list(value.shape)}
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    content = buffer.getvalue()
    record["bytes"], record["sha256"] = len(content), hashlib.sha256(content).hexdigest()
    name = f"{artifact_folder()}/run-{int(run.pk)}-{uuid.uuid4().hex[:12]}.npz"
    return artifact_storage().save(name, ContentFile(content)), record


def load_artifact(name: str, record: dict | None) -> dict[str, np.ndarray] | None:
    """The arrays of an artifact, or ``None`` (logged) when it is missing, or does not match
    the record :func:`save_artifact` returned, or does not load.

    The file's size is compared before it is read, its SHA-256 before it is parsed, and each
    array's header (dtype, shape) before its data is decompressed: a tampered file cannot
    make the process allocate what the run did not write.  ``allow_pickle=False``: a stored
    file is never trusted to run code.
    """
    if not name:
        return None
    if not record or "sha256" not in record:
        logger.warning("Model artifact %s has no record of what was written (an older version wrote it); "
                       "not loading it. The next retrain writes one that loads.", name)  # fmt: skip
        return None
    try:
        storage = artifact_storage()
        size = storage.size(name)
        if size != record["bytes"]:
            raise ArtifactMismatch(f"{size} bytes where the run wrote {record['bytes']}")
        with storage.open(name, "rb") as fh:
            content = fh.read(record["bytes"] + 1)
        if len(content) != record["bytes"] or hashlib.sha256(content).hexdigest() != record["sha256"]:
            raise ArtifactMismatch("its content is not what the run wrote (SHA-256 differs)")
        return _read_checked(content, record["arrays"])
    except ArtifactMismatch as exc:
        logger.error("Model artifact %s refused: %s.", name, exc)
    except Exception as exc:  # missing, unreadable: "no model", never a crash
        logger.warning("Model artifact %s does not load (%s: %s); treating it as absent.", name, type(exc).__name__, exc)
    return None


class ArtifactMismatch(ValueError):
    """An artifact differs from its run's record."""


def _read_checked(content: bytes, expected: dict) -> dict[str, np.ndarray]:
    arrays = {}
    with zipfile.ZipFile(io.BytesIO(content)) as archive:
        members = {info.filename.removesuffix(".npy"): info for info in archive.infolist()}
        if set(members) != set(expected):
            raise ArtifactMismatch(f"it holds arrays {sorted(members)}, the run wrote {sorted(expected)}")
        for key, info in members.items():
            want = expected[key]
            with archive.open(info) as fh:
                version = np.lib.format.read_magic(fh)
                read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
                shape, fortran, dtype = read_header(fh)
                if list(shape) != list(want["shape"]) or dtype.str != want["dtype"]:
                    raise ArtifactMismatch(f"array {key!r} is {dtype.str} {list(shape)}, the run wrote {want['dtype']} {want['shape']}")
                if info.file_size > fh.tell() + dtype.itemsize * int(np.prod(shape, dtype=np.int64)):
                    raise ArtifactMismatch(f"array {key!r} holds more bytes than its shape")
                arrays[key] = np.lib.format.read_array(io.BytesIO(archive.read(info)), allow_pickle=False)
    return arrays


def delete_artifact(name: str) -> None:
    if name:
        try:
            artifact_storage().delete(name)
        except Exception as exc:
            logger.warning("Could not delete artifact %s: %s", name, exc)


def orphan_artifacts() -> list[str]:
    """Artifacts of this database that no run refers to (a run killed while storing, a run
    whose record was lost): names in this database's folder whose run is not queued or
    running and whose name no unpruned run holds."""
    folder = artifact_folder()
    try:
        _, files = artifact_storage().listdir(folder)
    except (NotImplementedError, OSError):  # no folder yet, or a storage that cannot list
        return []
    held = set(TrainingRun.objects.filter(pruned=False).exclude(artifact="").values_list("artifact", flat=True))
    busy = set(TrainingRun.objects.active().values_list("pk", flat=True))
    orphans = []
    for file in files:
        match = ARTIFACT_NAME.fullmatch(file)
        name = f"{folder}/{file}"
        if match and name not in held and int(match.group(1)) not in busy:
            orphans.append(name)
    return orphans
