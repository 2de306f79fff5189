"""One measurement of the benchmark, in a process of its own (run by ``bench/run.py``).

    python bench/measure.py TASK --result OUT.json [options]

Tasks: ``retrain`` (the product's whole retrain, stage by stage, with peak memory),
``fit`` (a bare LightFM fit of the same matrices, and the usual ``model.predict`` loop on a
sample), ``score`` (the scoring stage against a bare matmul of the same shapes), ``store``
(PostgreSQL ``COPY`` / SQLite ``executemany`` of the rows a run stored), ``queries`` (SQL
queries of the boxes, cold and warm).  Each writes one JSON object to ``--result``.

Memory is the resident set size (RSS) of this process, read from ``/proc/self/statm`` by a
thread every few milliseconds and attributed to the stage running at that moment.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import sys
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
MB = 1024 * 1024


# -- memory ------------------------------------------------------------------------------------
class RssSampler:
    """Samples this process's RSS in a thread; ``mark(label)`` starts a new labelled span.

    For each label: seconds spent, RSS at its start, and the peak RSS seen during it.
    """

    def __init__(self, interval: float = 0.004) -> None:
        self.interval = interval
        self.page = os.sysconf("SC_PAGE_SIZE")
        self.lock = threading.Lock()
        self.label: str | None = None
        self.started = time.perf_counter()
        self.spans: dict[str, dict] = {}
        self.order: list[str] = []
        self._stop = threading.Event()
        try:
            self._statm = open("/proc/self/statm")  # noqa: SIM115
        except OSError:
            self._statm = None
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def rss(self) -> int | None:
        if self._statm is None:
            return None
        self._statm.seek(0)
        return int(self._statm.read().split()[1]) * self.page

    def _sample(self) -> None:
        value = self.rss()
        if value is None or self.label is None:
            return
        span = self.spans[self.label]
        span["peak"] = max(span["peak"], value)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            with self.lock:
                self._sample()

    def start(self, label: str) -> RssSampler:
        self.mark(label)
        self._thread.start()
        return self

    def mark(self, label: str) -> None:
        with self.lock:
            if label == self.label:
                return
            now = time.perf_counter()
            self._sample()
            if self.label is not None:
                self.spans[self.label]["seconds"] += now - self.started
            self.label, self.started = label, now
            rss = self.rss() or 0
            if label not in self.spans:
                self.spans[label] = {"seconds": 0.0, "start": rss, "peak": rss}
                self.order.append(label)
            else:
                self.spans[label]["peak"] = max(self.spans[label]["peak"], rss)

    def stop(self) -> dict:
        self.mark("_end")
        self._stop.set()
        self._thread.join()
        return {
            label: {
                "seconds": round(self.spans[label]["seconds"], 4),
                "rss_start_mb": round(self.spans[label]["start"] / MB, 1),
                "peak_rss_mb": round(self.spans[label]["peak"] / MB, 1),
            }
            for label in self.order
            if label != "_end"
        }


def max_rss_mb() -> float:
    """Peak RSS of this process so far (Linux reports kilobytes)."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def setup_django() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.settings_bench")
    import django

    django.setup()


# -- retrain -----------------------------------------------------------------------------------
def task_retrain(args) -> dict:
    """The product's retrain (``services.retrain``), timed as a whole; per stage: the product's
    own seconds, and the peak RSS while the stage ran.  Store-stage parts are timed by
    wrapping the storage functions it calls (no change to what they do)."""
    setup_django()
    from django.db import connection

    from recommendations import services, storage

    sampler = RssSampler()
    store_parts = {"existing": 0.0, "write_rows": 0.0, "index_and_analyze": 0.0, "publish": 0.0, "attach": 0.0}
    rows_written = {"n": 0}

    orig_progress = services._Recorder.progress

    def progress(self, stage, share, *, force=False):
        sampler.mark(stage)
        return orig_progress(self, stage, share, force=force)

    orig_train = services.train

    def train(*a, **k):
        sampler.mark("evaluate")
        return orig_train(*a, **k)

    def timed(name, fn, label=None):
        def wrapper(*a, **k):
            if label:
                sampler.mark(label)
            started = time.perf_counter()
            try:
                result = fn(*a, **k)
            finally:
                if name in store_parts:
                    store_parts[name] += time.perf_counter() - started
            if name == "write_rows":
                rows_written["n"] += int(result)
            return result

        return wrapper

    services._Recorder.progress = progress
    services.train = train
    storage.prune = timed("prune", storage.prune, label="housekeeping")
    storage.existing = timed("existing", storage.existing)
    storage.write_rows = timed("write_rows", storage.write_rows)
    storage.publish = timed("publish", storage.publish)
    storage.RunRows.finish = timed("index_and_analyze", storage.RunRows.finish)
    storage.RunRows.attach = timed("attach", storage.RunRows.attach)

    connection.ensure_connection()
    gc.collect()
    sampler.start("start")
    started = time.perf_counter()
    run = services.retrain(evaluate=args.evaluate, trigger="bench")
    wall = time.perf_counter() - started
    spans = sampler.stop()
    if run.status != "succeeded":
        raise SystemExit(f"retrain failed: {run.status}: {run.error}")
    store_s = float(run.stage_seconds.get("store", 0.0))
    parts = {k: round(v, 4) for k, v in store_parts.items()}
    parts["commit_and_other"] = round(store_s - sum(store_parts.values()), 4)
    return {
        "run_id": run.pk,
        "evaluate": args.evaluate,
        "seconds": round(wall, 4),
        "stage_seconds": run.stage_seconds,
        "spans": spans,
        "baseline_rss_mb": spans["start"]["rss_start_mb"],
        "max_rss_mb": max_rss_mb(),
        "counts": run.counts,
        "hyper": run.params.get("lightfm"),
        "hyperparameters": run.params.get("hyperparameters"),
        "candidate": (run.params.get("candidate") or {}).get("name"),
        "family": (run.params.get("candidate") or {}).get("family"),
        "trials": len((run.metrics or {}).get("trials") or []),
        "metrics_cold": (run.metrics or {}).get("cold"),
        "item_features": run.params.get("item_features"),
        "user_features": run.params.get("user_features"),
        "decision": run.decision,
        "metrics_model": (run.metrics or {}).get("model"),
        "metrics_popularity": (run.metrics or {}).get("popularity"),
        "store_parts": parts,
        "rows_written": rows_written["n"],
        "vendor": connection.vendor,
    }


# -- bare fit ----------------------------------------------------------------------------------
def task_fit(args) -> dict:
    """LightFM called directly on the matrices the product fits.

    The product trains the first candidate (without evaluation) with ``ml.train.fit_warm``:
    the rows of items with interactions only (cold books are left out of training).  This
    builds the same interactions, weights and feature matrices with the product's own
    builders and hands them to ``LightFM.fit`` once, with the same hyper-parameters.
    """
    setup_django()
    from recommendations.ml.train import new_model

    from recommendations import services, sources
    from recommendations.conf import app_settings
    from recommendations.ml.families import LightFMTrainer

    sampler = RssSampler().start("prepare")
    extracted = sources.extract()
    data = sources.build(extracted)
    cand = services.candidates_from_settings()[0]
    if cand.family != "lightfm":
        raise SystemExit(f"the first candidate is {cand.family}; the bare fit measures LightFM")
    inter = data.interactions(cand.source_scales)
    # The product's own builders (the trainer keeps the items with interactions only); the
    # fit below is then a plain LightFM call on what the trainer would hand it.
    trainer = LightFMTrainer(inter, data.item_metadata, data.user_attributes, cand, services.hyper_from_settings(),
                             data.max_history_features)  # fmt: skip
    hyper = trainer.hyper
    matrix, weights = trainer.inner.matrix, trainer.inner.weights
    ufeat, ifeat, warm_features = trainer.inner.user_features, trainer.inner.item_features, trainer.inner.warm_features
    warm_rows = np.flatnonzero(np.bincount(inter.item, minlength=inter.n_items) > 0)
    del trainer
    gc.collect()

    model = new_model(hyper)  # the product's constructor: the same hyper-parameters, a plain LightFM
    sampler.mark("fit")
    started = time.perf_counter()
    model.fit(
        matrix,
        user_features=ufeat,
        item_features=warm_features,
        sample_weight=weights,
        epochs=hyper.epochs,
        num_threads=hyper.num_threads,
    )
    fit_s = time.perf_counter() - started

    # The way people usually write scoring: model.predict per customer, then a sort.
    sampler.mark("predict")
    allowed_rows = np.flatnonzero(data.allowed).astype(np.int32)
    rng = np.random.default_rng(0)
    sample = np.sort(rng.choice(data.n_users, size=min(args.predict_sample, data.n_users), replace=False))
    k = app_settings.LIST_SIZE
    started = time.perf_counter()
    for u in sample.tolist():
        scores = model.predict(
            u, allowed_rows, user_features=ufeat, item_features=ifeat, num_threads=hyper.num_threads
        )
        np.argsort(-scores)[:k]
    predict_s = time.perf_counter() - started
    spans = sampler.stop()
    return {
        "seconds": round(fit_s, 4),
        "hyper": hyper.as_dict(),
        "candidate": cand.name,
        "matrices": {
            "interactions": [int(matrix.shape[0]), int(matrix.shape[1]), int(matrix.nnz)],
            "user_features": [int(ufeat.shape[0]), int(ufeat.shape[1]), int(ufeat.nnz)],
            "item_features": [int(warm_features.shape[0]), int(warm_features.shape[1]), int(warm_features.nnz)],
            "items_total": int(data.n_items),
            "items_warm": int(warm_rows.size),
        },
        "fit_peak_rss_mb": spans["fit"]["peak_rss_mb"],
        "fit_rss_start_mb": spans["fit"]["rss_start_mb"],
        "spans": spans,
        "predict_loop": {
            "users_sampled": int(sample.size),
            "items": int(allowed_rows.size),
            "seconds": round(predict_s, 4),
            "per_user_ms": round(1000 * predict_s / max(sample.size, 1), 4),
            "extrapolated_seconds_all_users": round(predict_s / max(sample.size, 1) * data.n_users, 2),
            "users": int(data.n_users),
        },
    }


# -- scoring -----------------------------------------------------------------------------------
def task_score(args) -> dict:
    """The scoring stage's work on a run's stored vectors, against a bare float32 matmul of
    the same shapes (same chunks, preallocated output), alternately, best of ``--repeat``
    timings of at least 0.25 s each (a short stage is called several times per timing).

    The stage: every customer's top ``LIST_SIZE`` (``ml.scoring.score_users``, bought books
    excluded) and every book's top ``SIMILAR_SIZE`` similar books (``similar_items``), copied
    into the arrays the store stage writes, as ``services._score`` does, plus the popular
    lists.  FLOPs: 2·users·candidates·(d+1) + 2·books·candidates·d.
    """
    setup_django()
    from recommendations import services, sources, storage
    from recommendations.conf import app_settings
    from recommendations.ml.scoring import Candidates, popularity, score_users, similar_items, top_popular, usable_cpus
    from recommendations.models import TrainingRun

    run = TrainingRun.objects.get(pk=args.run) if args.run else TrainingRun.objects.live().get()
    arrays = storage.load_artifact(run.artifact, run.artifact_record)
    if arrays is None:
        raise SystemExit(f"run #{run.pk} has no loadable artifact")
    extracted = sources.extract()
    data = sources.build(extracted)
    if not (np.array_equal(data.users.keys, arrays["user_keys"]) and np.array_equal(data.items.keys, arrays["item_keys"])):
        raise SystemExit("the database changed since the run: its id maps differ from the extracted ones")
    exclude = sources.exclusions(data, extracted)
    cand = services.candidates_from_settings()[0]
    inter = data.interactions(cand.source_scales)
    uv, ub = arrays["user_vectors"], arrays["user_biases"]
    iv, ib = arrays["item_vectors"], arrays["item_biases"]
    allowed = arrays["allowed"]
    k, ks, batch = app_settings.LIST_SIZE, app_settings.SIMILAR_SIZE, app_settings.SCORE_BATCH
    n_users, d = uv.shape
    n_items = iv.shape[0]
    n_cand = int(allowed.sum())

    def stage():
        item_rows = np.full((n_users, k), -1, dtype=np.int64)
        scores = np.zeros((n_users, k), dtype=np.float32)
        for rows, items, values in score_users(uv, ub, iv, ib, k=k, allowed=allowed, exclude=exclude, batch=batch):
            item_rows[rows, : items.shape[1]] = items
            scores[rows, : values.shape[1]] = values
        sim_rows = np.full((n_items, ks), -1, dtype=np.int64)
        sim_scores = np.zeros((n_items, ks), dtype=np.float32)
        for rows, similar, values in similar_items(iv, k=ks, allowed=allowed, batch=batch):
            sim_rows[rows, : similar.shape[1]] = similar
            sim_scores[rows, : values.shape[1]] = values
        overall = popularity(inter.user, inter.item, data.n_items)
        top_popular(overall, app_settings.POPULAR_SIZE, allowed)

    # The bare matmul: the same operand shapes, chunk by chunk, into a preallocated output.
    # Timed at several chunk sizes; the fastest is the reference (small chunks keep the
    # output in cache, large ones call BLAS less often: which wins depends on the machine).
    cands = Candidates.from_mask(allowed)
    left = np.ascontiguousarray(np.hstack([uv, np.ones((n_users, 1), np.float32)]).astype(np.float32))
    right = np.ascontiguousarray(np.hstack([iv[cands.items], ib[cands.items, None]]).astype(np.float32).T)
    norms = np.linalg.norm(iv, axis=1, keepdims=True)
    unit = np.divide(iv, norms, out=np.zeros_like(iv), where=norms > 0).astype(np.float32)
    unit_right = np.ascontiguousarray(unit[cands.items].T)
    chunk_sizes = sorted({64, 256, batch})
    out = np.empty((max(chunk_sizes), n_cand), dtype=np.float32)

    def matmul_in(chunk: int):
        def matmul():
            for start in range(0, n_users, chunk):
                stop = min(start + chunk, n_users)
                np.matmul(left[start:stop], right, out=out[: stop - start])
            for start in range(0, n_items, chunk):
                stop = min(start + chunk, n_items)
                np.matmul(unit[start:stop], unit_right, out=out[: stop - start])

        return matmul

    flops = 2.0 * n_users * n_cand * (d + 1) + 2.0 * n_items * n_cand * d

    def calls_for(fn, at_least: float = 0.25) -> int:
        """Calls per timing so that one timing lasts ``at_least`` seconds (short runs are noise)."""
        started = time.perf_counter()
        fn()
        return max(1, int(np.ceil(at_least / max(time.perf_counter() - started, 1e-6))))

    def side_by_side() -> tuple[list[float], list[float], dict]:
        """Stage and bare matmul alternately; the matmul's timing in each round is that of its
        fastest chunk size (``by_chunk`` keeps every chunk size's best)."""
        variants = {chunk: matmul_in(chunk) for chunk in chunk_sizes}
        n_stage = calls_for(stage)  # also warms it up
        n_matmul = {chunk: calls_for(fn) for chunk, fn in variants.items()}
        t_stage, t_matmul, by_chunk = [], [], {chunk: [] for chunk in chunk_sizes}
        for _ in range(args.repeat):
            gc.collect()
            started = time.perf_counter()
            for _ in range(n_stage):
                stage()
            t_stage.append((time.perf_counter() - started) / n_stage)
            for chunk, fn in variants.items():
                started = time.perf_counter()
                for _ in range(n_matmul[chunk]):
                    fn()
                by_chunk[chunk].append((time.perf_counter() - started) / n_matmul[chunk])
            t_matmul.append(min(times[-1] for times in by_chunk.values()))
        calls = {"stage": n_stage, "matmul": n_matmul[min(chunk_sizes, key=lambda c: min(by_chunk[c]))]}
        calls["matmul_by_chunk_best_seconds"] = {str(c): round(min(t), 5) for c, t in by_chunk.items()}
        return t_stage, t_matmul, calls

    from threadpoolctl import threadpool_info, threadpool_limits

    blas_threads = max((pool.get("num_threads") or 1 for pool in threadpool_info()), default=1)
    t_stage, t_matmul, calls = side_by_side()
    # Again with BLAS on one thread: the same comparison without thread scheduling in it
    # (on a busy machine a multithreaded BLAS call can wait for a core).
    with threadpool_limits(1):
        t_stage1, t_matmul1, _ = side_by_side()

    # Where the stage's time goes: a diagnostic mirror of score_users's loop for the personal
    # lists, on one thread (BLAS too), phase by phase: product, exclusions, maxima, selection.
    from recommendations.ml.scoring import _KERNELS, _Selector

    parts = {"product": 0.0, "exclude": 0.0, "maxima": 0.0, "select": 0.0}
    if _KERNELS is not None:
        mask_rows, select_grouped = _KERNELS
        selector = _Selector(right, n_cand, k, threads=1)
        buf = selector._buffers()
        cols = np.empty((selector.tile, k), np.int64)
        vals = np.empty((selector.tile, k), np.float32)
        all_rows = np.arange(n_users)
        with threadpool_limits(1, user_api="blas"):
            for start in range(0, n_users, selector.tile):
                stop = min(start + selector.tile, n_users)
                t0 = time.perf_counter()
                sc = np.matmul(left[start:stop], selector.right, out=buf.scores[: stop - start])
                t1 = time.perf_counter()
                mask_rows(sc, n_cand, all_rows[start:stop], exclude.indptr, exclude.indices, cands.position)
                t2 = time.perf_counter()
                gmax, smax = selector.layout.maxima(sc, buf.group_max[: stop - start], buf.super_max[: stop - start])
                t3 = time.perf_counter()
                select_grouped(sc, gmax, smax, k, cols[: stop - start], vals[: stop - start])
                t4 = time.perf_counter()
                parts["product"] += t1 - t0
                parts["exclude"] += t2 - t1
                parts["maxima"] += t3 - t2
                parts["select"] += t4 - t3
    best_stage, best_matmul = min(t_stage), min(t_matmul)
    return {
        "run_id": run.pk,
        "shapes": {"users": n_users, "items": n_items, "candidates": n_cand, "d": int(d), "k": k, "similar_k": ks, "batch": batch,
                   "matmul_chunks": chunk_sizes, "threads": usable_cpus()},
        "flops": flops,
        "stage_seconds": [round(t, 5) for t in t_stage],
        "matmul_seconds": [round(t, 5) for t in t_matmul],
        "calls_per_timing": calls,
        "blas_threads": blas_threads,
        "one_thread": {
            "stage_seconds": [round(t, 5) for t in t_stage1],
            "matmul_seconds": [round(t, 5) for t in t_matmul1],
            "stage_gflops": round(flops / min(t_stage1) / 1e9, 3),
            "matmul_gflops": round(flops / min(t_matmul1) / 1e9, 3),
            "ratio": round(min(t_matmul1) / min(t_stage1), 4),
        },
        "stage_gflops": round(flops / best_stage / 1e9, 3),
        "matmul_gflops": round(flops / best_matmul / 1e9, 3),
        "ratio": round(best_matmul / best_stage, 4),
        "personal_breakdown_seconds": {key: round(v, 4) for key, v in parts.items()},
        "personal_flops": 2.0 * n_users * n_cand * (d + 1),
    }


# -- storing -----------------------------------------------------------------------------------
def task_store(args) -> dict:
    """The rows a run stored, written again into scratch tables by the database's fastest path.

    PostgreSQL: the rows are exported with ``COPY … TO STDOUT (FORMAT binary)`` first; timed is
    ``COPY … FROM STDIN (FORMAT binary)`` of those bytes plus the commit, into three scratch
    variants of each table: plain (same columns, no index, no constraint), with the same
    indexes, and with the same indexes and foreign keys.  SQLite: ``executemany`` of the same
    rows into a plain scratch table, plus the commit.  Best of ``--repeat``.
    """
    setup_django()
    from django.db import connection

    from recommendations.models import Recommendation, SimilarItem

    run_id = args.run
    # The columns the store stage writes: on PostgreSQL the id too (storage.RunRows).
    tables = []
    for model in (Recommendation, SimilarItem):
        cols = [f.column for f in model._meta.concrete_fields if connection.vendor == "postgresql" or not f.primary_key]
        tables.append((model._meta.db_table, cols))
    q = connection.ops.quote_name
    result: dict = {"run_id": run_id, "vendor": connection.vendor}
    connection.ensure_connection()
    if connection.vendor == "postgresql":
        conn = connection.connection  # the psycopg connection
        conn.autocommit = True
        payload = []
        with conn.cursor() as cur:
            for table, cols in tables:
                col_sql = ", ".join(q(c) for c in cols)
                chunks = []
                with cur.copy(f"COPY (SELECT {col_sql} FROM {q(table)} WHERE run_id = {int(run_id)}) TO STDOUT (FORMAT binary)") as cp:
                    for chunk in cp:
                        chunks.append(bytes(chunk))
                cur.execute(f"SELECT count(*) FROM {q(table)} WHERE run_id = %s", [run_id])
                payload.append((table, cols, b"".join(chunks), cur.fetchone()[0]))
            fks = {}
            for table, _ in tables:
                cur.execute(
                    "SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = %s::regclass AND contype = 'f'",
                    [table],
                )
                fks[table] = [row[0] for row in cur.fetchall()]
        n_rows = sum(p[3] for p in payload)
        variants = {
            "plain": "INCLUDING DEFAULTS INCLUDING IDENTITY",
            "same_indexes": "INCLUDING ALL",
            "same_indexes_and_fks": "INCLUDING ALL",
        }
        times: dict[str, list[float]] = {name: [] for name in variants}
        with conn.cursor() as cur:
            for name, like in variants.items():
                for t, (table, _) in enumerate(tables):
                    scratch = f"bench_scratch_{name}_{t}"
                    cur.execute(f"DROP TABLE IF EXISTS {q(scratch)}")
                    cur.execute(f"CREATE TABLE {q(scratch)} (LIKE {q(table)} {like})")
                    if name == "same_indexes_and_fks":
                        for i, definition in enumerate(fks[table]):
                            cur.execute(f"ALTER TABLE {q(scratch)} ADD CONSTRAINT {q(f'{scratch}_fk{i}')} {definition}")
            for _ in range(args.repeat):
                for name in variants:
                    names = [f"bench_scratch_{name}_{t}" for t in range(len(tables))]
                    cur.execute("TRUNCATE " + ", ".join(q(n) for n in names))
                    started = time.perf_counter()
                    with conn.transaction():
                        for scratch, (_, cols, data, _) in zip(names, payload, strict=True):
                            col_sql = ", ".join(q(c) for c in cols)
                            with cur.copy(f"COPY {q(scratch)} ({col_sql}) FROM STDIN (FORMAT binary)") as cp:
                                for start in range(0, len(data), 1 << 20):
                                    cp.write(data[start : start + (1 << 20)])
                    times[name].append(time.perf_counter() - started)
                    cur.execute(f"SELECT count(*) FROM {q(names[0])}")
                    if cur.fetchone()[0] != payload[0][3]:
                        raise SystemExit("scratch COPY wrote a different number of rows")
            for name in variants:
                for t in range(len(tables)):
                    cur.execute(f"DROP TABLE IF EXISTS {q(f'bench_scratch_{name}_{t}')}")
        result.update(
            baseline="PostgreSQL COPY (FORMAT binary) + commit",
            rows=n_rows,
            bytes=sum(len(p[2]) for p in payload),
            seconds={name: [round(t, 4) for t in ts] for name, ts in times.items()},
            rows_per_second={name: round(n_rows / min(ts)) for name, ts in times.items()},
            foreign_keys=fks,
        )
        return result
    # SQLite and others: executemany into a plain scratch table.
    rows_by_table = []
    with connection.cursor() as cur:
        for table, cols in tables:
            col_sql = ", ".join(q(c) for c in cols)
            cur.execute(f"SELECT {col_sql} FROM {q(table)} WHERE run_id = %s", [run_id])
            rows_by_table.append((table, cols, cur.fetchall()))
    n_rows = sum(len(r[2]) for r in rows_by_table)
    times = []
    for _ in range(args.repeat):
        with connection.cursor() as cur:
            for table, cols, _ in rows_by_table:
                scratch = f"bench_scratch_{table}"
                cur.execute(f"DROP TABLE IF EXISTS {q(scratch)}")
                cur.execute(f"CREATE TABLE {q(scratch)} AS SELECT * FROM {q(table)} WHERE 0")
        from django.db import transaction

        started = time.perf_counter()
        with transaction.atomic(), connection.cursor() as cur:
            for table, cols, rows in rows_by_table:
                placeholders = ", ".join(["%s"] * len(cols))
                col_sql = ", ".join(q(c) for c in cols)
                cur.executemany(f"INSERT INTO {q('bench_scratch_' + table)} ({col_sql}) VALUES ({placeholders})", rows)
        times.append(time.perf_counter() - started)
    with connection.cursor() as cur:
        for table, _, _ in rows_by_table:
            cur.execute(f"DROP TABLE IF EXISTS {q('bench_scratch_' + table)}")
    result.update(
        baseline=f"{connection.vendor} executemany + commit (no COPY on this database)",
        rows=n_rows,
        seconds={"plain": [round(t, 4) for t in times]},
        rows_per_second={"plain": round(n_rows / min(times))},
    )
    return result


# -- queries -----------------------------------------------------------------------------------
def task_queries(args) -> dict:
    """SQL queries of each box, rendered through its template tag, cold (empty cache) then
    warm; and of the whole book page with and without the boxes (Django's test client).
    Run with the local-memory cache, so that "cold" is a fresh, private cache."""
    setup_django()
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import AnonymousUser
    from django.core.cache import caches
    from django.db import connection
    from django.template import Context, Template
    from django.test import Client
    from django.test.utils import CaptureQueriesContext, override_settings

    from bookstore.models import Book
    from recommendations.conf import app_settings
    from recommendations.models import SimilarItem

    cache = caches[app_settings.CACHE_ALIAS]
    backend = type(cache).__name__
    if "LocMem" not in backend:
        raise SystemExit(f"run this task with the local-memory cache (got {backend}); unset REDIS_URL")
    user = get_user_model().objects.get(username="demo")
    live_items = SimilarItem.objects.live().order_by("item_id").values_list("item_id", flat=True).distinct()
    book = Book.objects.get(pk=live_items.first())
    boxes = {
        "you_might_like (customer)": ("{% load recommendations %}{% you_might_like user limit=6 %}", {"user": user}),
        "you_might_like (visitor)": ("{% load recommendations %}{% you_might_like user limit=6 %}", {"user": AnonymousUser()}),
        "similar_items": ("{% load recommendations %}{% similar_items book limit=6 %}", {"book": book}),
        "recommendations_for": (
            "{% load recommendations %}{% recommendations_for user limit=6 as recs %}{{ recs|length }}",
            {"user": user},
        ),
    }
    out: dict = {"cache_backend": backend, "boxes": {}}
    for name, (source, ctx) in boxes.items():
        template = Template(source)
        counts, sizes = [], []
        cache.clear()
        for _ in range(2):  # cold, then warm
            with CaptureQueriesContext(connection) as captured:
                html = template.render(Context(ctx))
            counts.append(len(captured.captured_queries))
            sizes.append(len(html.strip()))
        out["boxes"][name] = {"cold": counts[0], "warm": counts[1], "rendered_chars": sizes[0], "same_when_warm": sizes[0] == sizes[1]}

    # The whole page, with and without the boxes.
    template_dir = os.environ.get("BENCH_NOBOXES_DIR")
    client = Client(HTTP_HOST="127.0.0.1")
    client.force_login(user)
    path = book.get_absolute_url()
    page: dict = {}
    variants = [("with_boxes", None)]
    if template_dir:
        from django.conf import settings

        tpl = [dict(settings.TEMPLATES[0], DIRS=[template_dir, *settings.TEMPLATES[0]["DIRS"]])]
        variants.append(("without_boxes", tpl))
    client.get(path)  # the customer's first view of the book inserts a row: not part of either page
    for name, templates in variants:
        counts = []
        ctx = override_settings(TEMPLATES=templates) if templates else override_settings()
        with ctx:
            cache.clear()
            for _ in range(2):
                with CaptureQueriesContext(connection) as captured:
                    response = client.get(path)
                if response.status_code != 200:
                    raise SystemExit(f"{path}: HTTP {response.status_code}")
                counts.append(len(captured.captured_queries))
            html = response.content.decode()
        page[name] = {
            "cold": counts[0],
            "warm": counts[1],
            "has_you_might_like": 'data-box="you-might-like"' in html,
            "has_similar_items": 'data-box="similar-items"' in html,
        }
    out["page"] = page
    out["page_path"] = path
    out["uncached"] = max(v["cold"] for k, v in out["boxes"].items())
    out["cached"] = max(v["warm"] for k, v in out["boxes"].items())
    # Books to request in the page benchmark: available books with a similar-items list.
    products = list(
        Book.objects.filter(pk__in=list(live_items[: args.books]), available=True).order_by("pk").values_list("product", flat=True)
    )
    out["sample_products"] = products
    return out


TASKS = {"retrain": task_retrain, "fit": task_fit, "score": task_score, "store": task_store, "queries": task_queries}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("task", choices=sorted(TASKS))
    parser.add_argument("--result", required=True)
    parser.add_argument("--evaluate", action="store_true", help="retrain: with evaluation and candidate choice")
    parser.add_argument("--run", type=int, default=None, help="score/store: the training run")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--predict-sample", type=int, default=200)
    parser.add_argument("--books", type=int, default=50)
    args = parser.parse_args()
    result = TASKS[args.task](args)
    result["process_max_rss_mb"] = max_rss_mb()
    Path(args.result).write_text(json.dumps(result, indent=1, default=str))


if __name__ == "__main__":
    main()
