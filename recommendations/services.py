"""``retrain()``: extract → build → evaluate → fit → score → store, the one entry point.

Each stage is timed and recorded on the :class:`~recommendations.models.TrainingRun`; the
run's lists are written and switched live in one transaction, so a failure anywhere leaves
the previous run serving.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import socket
import threading
import time
from contextlib import contextmanager
from functools import lru_cache

import numpy as np
import scipy.sparse as sp
from django.db import IntegrityError, connection, transaction
from django.db.models import Q
from django.utils import timezone

from . import cache, sources, storage
from .conf import app_settings
from .ml.matrices import DataError
from .ml.pipeline import Candidate, EvaluationSettings, SourceData, TrainResult, train
from .ml.scoring import popularity, score_users, similar_items, top_popular
from .ml.train import Hyper
from .models import ListKind, Recommendation, TrainingRun

logger = logging.getLogger(__name__)


class NotEnoughData(Exception):
    """Nothing sensible can be trained; the run says why and the live run stays."""


class AlreadyRunning(Exception):
    """A retrain is queued or running; ``run`` is that run."""

    def __init__(self, run: TrainingRun | None) -> None:
        self.run = run
        super().__init__(f"Run #{run.pk} is already {run.status}." if run else "A retrain is already in flight.")


class BrokerUnavailable(Exception):
    """The retrain could not be queued; ``run`` records the failed request."""

    def __init__(self, run: TrainingRun, reason: str) -> None:
        self.run = run
        super().__init__(reason)


def hyper_from_settings() -> Hyper:
    return Hyper(**app_settings.LIGHTFM)


def evaluation_from_settings(enabled: bool | None = None) -> EvaluationSettings:
    conf = dict(app_settings.EVALUATION)
    if enabled is not None:
        conf["enabled"] = enabled
    conf["checkpoints"] = tuple(conf.get("checkpoints") or (1.0,))
    return EvaluationSettings(**conf)


def candidates_from_settings() -> list[Candidate]:
    names = [s["name"] for s in app_settings.SOURCES]
    result = []
    for conf in app_settings.CANDIDATES:
        conf = dict(conf)
        if conf.get("source_scales") == "equal":
            conf["source_scales"] = {name: 1.0 for name in names}
        result.append(Candidate(**conf))
    return result


class _Recorder:
    """Stage timings and throttled progress updates of one run."""

    def __init__(self, run: TrainingRun) -> None:
        self.run = run
        self.seconds: dict[str, float] = {}
        self._last_write = 0.0

    @contextmanager
    def stage(self, name: str):
        self.progress(name, 0.0, force=True)
        started = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = round(self.seconds.get(name, 0.0) + time.perf_counter() - started, 4)

    def progress(self, stage: str, share: float, *, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last_write < 1.0:
            return
        self._last_write = now
        self.run.stage, self.run.progress = stage, float(min(max(share, 0.0), 1.0))
        # An UPDATE of these columns only: never overwrite what another process wrote.
        TrainingRun.objects.filter(pk=self.run.pk).update(
            stage=stage, progress=self.run.progress, heartbeat=timezone.now()
        )


def start_run(*, trigger: str = "", user=None, status: str = TrainingRun.Status.QUEUED) -> TrainingRun:
    """Create the run of a new request, or raise :class:`AlreadyRunning`.

    The run is created "active"; a partial unique index allows one active run, so two
    requests at once (a double click, beat and the admin) cannot both start one, on any
    database.  Runs whose worker died are marked failed first.
    """
    mark_stale_runs()
    try:
        with transaction.atomic():
            return TrainingRun.objects.create(
                trigger=trigger, status=status, requested_by=user if getattr(user, "pk", None) else None
            )
    except IntegrityError:
        running = TrainingRun.objects.filter(active=True).first()
        if running is None:  # not the one-run-in-flight index: a real error
            raise
        raise AlreadyRunning(running) from None


def request_retrain(*, trigger: str, user=None, evaluate: bool | None = None) -> TrainingRun:
    """Queue a retrain (the admin button, beat, the command).  Raises :class:`AlreadyRunning`
    or :class:`BrokerUnavailable`; in the latter case the run records the failed request."""
    from . import tasks

    run = start_run(trigger=trigger, user=user)

    def send():
        try:
            result = tasks.retrain.apply_async(args=[run.pk, evaluate], retry=True, retry_policy=PUBLISH_RETRY)
        except Exception as exc:  # kombu.OperationalError, redis.ConnectionError, OSError: all "unreachable"
            reason = f"The task broker is unreachable, so the retrain could not be queued ({type(exc).__name__}: {exc})."
            logger.error("Run #%s: %s", run.pk, reason)
            TrainingRun.objects.filter(pk=run.pk, status=TrainingRun.Status.QUEUED).update(
                status=TrainingRun.Status.FAILED, error=reason, active=None, finished=timezone.now()
            )
            raise BrokerUnavailable(run, reason) from exc
        TrainingRun.objects.filter(pk=run.pk, task_id="").update(task_id=result.id or "")

    if _in_callers_transaction():
        # Inside the caller's transaction the worker could not see the run yet: send it
        # once the transaction commits (a broker error is then logged and recorded).
        transaction.on_commit(lambda: _send_quietly(send))
    else:
        try:
            send()
        finally:
            run.refresh_from_db()
    return run


def _in_callers_transaction() -> bool:
    """True inside an atomic block of the caller (ATOMIC_REQUESTS, their own ``atomic``).

    The blocks a Django test case wraps every test in are marked ``_from_testcase`` (as
    Django's own ``durable`` check reads them); they are not the caller's.
    """
    return any(not getattr(block, "_from_testcase", False) for block in getattr(connection, "atomic_blocks", []))


def _send_quietly(send) -> None:
    try:
        send()
    except BrokerUnavailable:
        pass  # already logged and recorded on the run


# Publishing to a dead broker should fail within seconds, not hang the admin's request.
PUBLISH_RETRY = {"max_retries": 2, "interval_start": 0, "interval_step": 0.5, "interval_max": 1}


def run_queued(run_id: int, *, task_id: str = "", evaluate: bool | None = None) -> TrainingRun | None:
    """Claim a queued run and run it; ``None`` if it was not queued (a duplicate delivery).

    The claim is one conditional UPDATE, so of two deliveries of the same task (Redis
    redelivers after its visibility timeout) exactly one runs the retrain.
    """
    now = timezone.now()
    claimed = TrainingRun.objects.filter(pk=run_id, status=TrainingRun.Status.QUEUED).update(
        status=TrainingRun.Status.RUNNING, task_id=task_id, started=now, heartbeat=now,
        worker=f"{socket.gethostname()} pid {os.getpid()}",
    )  # fmt: skip
    if not claimed:
        if not TrainingRun.objects.filter(pk=run_id).exists():
            raise TrainingRun.DoesNotExist(f"Run #{run_id} does not exist (yet?)")
        return None
    run = TrainingRun.objects.get(pk=run_id)
    return retrain(run=run, evaluate=evaluate)


def mark_stale_runs() -> list[int]:
    """Fail running runs without a sign of life, and queued runs no worker picked up."""
    now = timezone.now()
    silent_since = now - dt.timedelta(seconds=app_settings.STALE_AFTER_SECONDS)
    stale_running = TrainingRun.objects.filter(status=TrainingRun.Status.RUNNING).filter(
        Q(heartbeat__lt=silent_since) | Q(heartbeat__isnull=True, created__lt=silent_since)
    )
    stale_queued = TrainingRun.objects.filter(
        status=TrainingRun.Status.QUEUED, created__lt=now - dt.timedelta(seconds=app_settings.QUEUED_TIMEOUT_SECONDS)
    )
    ids = []
    # A process that hangs keeps its heartbeat thread beating: past the hard time limit the
    # run is over whatever its heartbeat says.
    overdue = TrainingRun.objects.filter(
        status=TrainingRun.Status.RUNNING,
        started__lt=now - dt.timedelta(seconds=app_settings.TASK_TIME_LIMIT + app_settings.STALE_AFTER_SECONDS),
    )
    for qs, reason in (
        (stale_running, "The retrain stopped sending signs of life (its worker was killed or ran out of memory)."),
        (overdue, "The retrain ran past its time limit without finishing (a hung process?)."),
        (stale_queued, "No worker picked up the queued retrain."),
    ):
        for pk in list(qs.values_list("pk", flat=True)):
            # Conditional: a run that finished meanwhile is left alone.
            if qs.filter(pk=pk).update(status=TrainingRun.Status.FAILED, error=reason, active=None, finished=now):
                logger.warning("Run #%s marked failed: %s", pk, reason)
                ids.append(pk)
    return ids


class Heartbeat:
    """Writes ``heartbeat`` every ``HEARTBEAT_SECONDS`` from a thread while a run works.

    LightFM's training releases the GIL, so the thread keeps beating through long epochs;
    when the process dies, the beats stop and :func:`mark_stale_runs` notices.
    """

    def __init__(self, run_id: int) -> None:
        self.run_id = run_id
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=f"heartbeat-run-{run_id}", daemon=True)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _beat(self) -> None:
        try:
            while not self._stop.wait(app_settings.HEARTBEAT_SECONDS):
                try:
                    TrainingRun.objects.filter(pk=self.run_id, status=TrainingRun.Status.RUNNING).update(
                        heartbeat=timezone.now()
                    )
                except Exception as exc:  # a busy database must not kill the run
                    logger.debug("heartbeat of run #%s skipped: %s", self.run_id, exc)
        finally:
            connection.close()


def retrain(*, run: TrainingRun | None = None, evaluate: bool | None = None, trigger: str = "sync", user=None) -> TrainingRun:
    """Train, score and publish a new run; return it (check ``run.status``).

    Never raises for a failed run: the error is on the run, and the previous live run
    stays live.  ``evaluate=False`` skips the holdout and trains the first candidate.
    Raises :class:`AlreadyRunning` when another run is in flight (and ``run`` is None).
    """
    if run is None:
        run = start_run(trigger=trigger, user=user, status=TrainingRun.Status.RUNNING)
        run.worker = f"{socket.gethostname()} pid {os.getpid()}"
    now = timezone.now()
    run.status, run.started, run.heartbeat, run.error = TrainingRun.Status.RUNNING, run.started or now, now, ""
    run.save(update_fields=["status", "started", "heartbeat", "error", "worker"])
    with Heartbeat(run.pk):
        return _retrain(run, evaluate)


def _retrain(run: TrainingRun, evaluate: bool | None) -> TrainingRun:
    rec = _Recorder(run)
    artifact = ""
    try:
        with rec.stage("extract"):
            extracted = sources.extract()
        run.counts = extracted.counts()
        latest = extracted.latest
        run.data_until = dt.datetime.fromtimestamp(latest, tz=dt.UTC) if latest is not None else None
        with rec.stage("build"):
            data = sources.build(extracted)
            exclude = sources.exclusions(data, extracted)
        n_pairs = sum(int(s.user.size) for s in data.sources)
        if n_pairs == 0 or data.n_users == 0:
            raise NotEnoughData("Not enough data: there are no interactions to learn from yet.")
        if data.n_items < 2 or not data.allowed.any():
            raise NotEnoughData("Not enough data: at least two items, one of them recommendable, are needed.")

        hyper = hyper_from_settings()
        result = train(
            data, hyper, candidates_from_settings(), evaluation_from_settings(evaluate), progress=rec.progress
        )
        for name, seconds in result.seconds.items():
            rec.seconds[name] = round(seconds, 4)
        run.decision = result.decision
        run.metrics = result.metrics
        run.params = _params(result, data)
        run.counts.update(users=data.n_users, interactions=len(result.interactions), items_allowed=int(data.allowed.sum()))

        with rec.stage("score"):
            lists = _score(data, result, exclude, rec)
        artifact = storage.save_artifact(run, _artifact(data, result))
        with rec.stage("store"):
            _store_and_publish(run, data, lists, artifact, rec)
    except NotEnoughData as exc:
        _fail(run, rec, TrainingRun.Status.NOT_ENOUGH_DATA, str(exc), artifact)
        return run
    except DataError as exc:
        _fail(run, rec, TrainingRun.Status.FAILED, str(exc), artifact)
        return run
    except Exception as exc:
        if type(exc).__name__ == "SoftTimeLimitExceeded":
            _fail(run, rec, TrainingRun.Status.TIMED_OUT, "The retrain hit its time limit and was stopped.", artifact)
            raise
        logger.exception("Run #%s failed", run.pk)
        _fail(run, rec, TrainingRun.Status.FAILED, f"{type(exc).__name__}: {exc}", artifact)
        return run
    # The run is live: what follows is housekeeping, and must never undo that.
    logger.info("Run #%s is live: %s", run.pk, json.dumps(run.metrics.get("model") or {}))
    try:
        storage.prune()
    except Exception:
        logger.exception("Pruning old runs after run #%s failed; they will be pruned next time", run.pk)
    return run


RUN_FIELDS = ["status", "stage", "progress", "finished", "artifact", "stage_seconds", "active", "decision",
              "metrics", "params", "counts", "data_until"]  # fmt: skip


def _store_and_publish(run: TrainingRun, data, lists: dict, artifact: str, rec: _Recorder) -> None:
    """Write the run's rows and switch it live in one transaction.

    Users and items deleted since extraction are left out first; if one is deleted in the
    instant between that check and the commit, the foreign keys refuse the commit, and
    the whole write is tried once more.
    """
    for attempt in (1, 2):
        try:
            with transaction.atomic():
                writer = storage.RunRows(run)
                counts = _store(run, data, lists, writer)
                run.counts.update(counts)
                storage.publish(run)
                writer.attach()
                run.status, run.stage, run.progress, run.finished, run.artifact = (
                    TrainingRun.Status.SUCCEEDED, "done", 1.0, timezone.now(), artifact,
                )  # fmt: skip
                run.stage_seconds, run.active = rec.seconds, None
                run.save(update_fields=RUN_FIELDS)
                transaction.on_commit(lambda: cache.published(cache.generation(run.pk, run.created)))
            return
        except IntegrityError:
            if attempt == 2:
                raise
            logger.warning("Run #%s: a user or item vanished while writing; writing again", run.pk)


def _fail(run: TrainingRun, rec: _Recorder, status: str, message: str, artifact: str) -> None:
    logger.warning("Run #%s %s: %s", run.pk, status, message)
    storage.delete_artifact(artifact)
    storage.discard_rows(run)
    run.status, run.error, run.finished = status, message, timezone.now()
    run.stage_seconds, run.is_live, run.artifact, run.active = rec.seconds, None, "", None
    run.save(update_fields=["status", "error", "finished", "stage_seconds", "is_live", "artifact", "active",
                            "decision", "metrics", "params", "counts", "data_until"])  # fmt: skip


def _params(result: TrainResult, data) -> dict:
    cand = result.candidate
    return {
        "lightfm": result.hyper.as_dict(),
        "candidate": {
            "name": cand.name,
            "item_metadata": cand.item_metadata,
            "history_features": cand.history_features,
            "source_scales": cand.source_scales,
        },
        "sources": {s.name: {"scale": cand.source_scales.get(s.name, s.scale), "transform": s.transform} for s in data.sources},
        "evaluation": app_settings.EVALUATION,
        "list_size": app_settings.LIST_SIZE,
        "similar_size": app_settings.SIMILAR_SIZE,
        "bucket_edges": data.edges,
        "item_features": len(result.item_feature_names),
        "user_features": len(result.user_feature_names),
    }


def _score(data, result: TrainResult, exclude, rec: _Recorder) -> dict:
    reps = result.reps
    lists: dict = {}
    if result.decision != TrainingRun.Decision.POPULARITY:
        k = app_settings.LIST_SIZE
        item_rows = np.full((data.n_users, k), -1, dtype=np.int64)
        scores = np.zeros((data.n_users, k), dtype=np.float32)
        for rows, items, values in score_users(
            reps.user_vectors, reps.user_biases, reps.item_vectors, reps.item_biases,
            k=k, allowed=data.allowed, exclude=exclude, batch=app_settings.SCORE_BATCH,
        ):  # fmt: skip
            item_rows[rows, : items.shape[1]] = items
            scores[rows, : values.shape[1]] = values
            rec.progress("score", rows[-1] / max(data.n_users, 1))
        lists["personal"] = (item_rows, scores)
    sim = app_settings.SIMILAR_SIZE
    sim_rows = np.full((data.n_items, sim), -1, dtype=np.int64)
    sim_scores = np.zeros((data.n_items, sim), dtype=np.float32)
    for rows, similar, values in similar_items(reps.item_vectors, k=sim, allowed=data.allowed, batch=app_settings.SCORE_BATCH):
        sim_rows[rows, : similar.shape[1]] = similar
        sim_scores[rows, : values.shape[1]] = values
    lists["similar"] = (sim_rows, sim_scores)

    inter = result.interactions
    overall = popularity(inter.user, inter.item, data.n_items)
    lists[ListKind.POPULAR.value] = _popular_list(overall, data.allowed)
    finite = inter.time[np.isfinite(inter.time)]
    if finite.size:
        since = finite.max() - app_settings.POPULAR_RECENT_DAYS * 86400
        recent = popularity(inter.user, inter.item, data.n_items, time=inter.time, since=since)
        lists[ListKind.RECENT.value] = _popular_list(recent, data.allowed)
    return lists


def _popular_list(scores: np.ndarray, allowed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    rows = top_popular(scores, app_settings.POPULAR_SIZE, allowed)
    return rows, scores[rows]


def _store(run: TrainingRun, data, lists: dict, writer: storage.RunRows) -> dict:
    """Write the run's lists; users and items deleted since extraction are left out."""
    from django.contrib.auth import get_user_model

    user_ok = storage.existing(get_user_model(), data.users.keys)
    item_ok = storage.existing(sources.item_model(), data.items.keys)
    counts = {}
    if "personal" in lists:
        item_rows, scores = lists["personal"]
        valid = (item_rows >= 0) & item_ok[np.maximum(item_rows, 0)] & user_ok[:, None]
        keys = data.items.key(np.maximum(item_rows, 0))
        counts["recommendations"] = storage.store_personal(run, data.users.keys, keys, scores, valid, writer)
    else:
        counts["recommendations"] = 0
    sim_rows, sim_scores = lists["similar"]
    valid = (sim_rows >= 0) & item_ok[np.maximum(sim_rows, 0)] & item_ok[:, None]
    sim_keys = data.items.key(np.maximum(sim_rows, 0))
    counts["similar_items"] = storage.store_similar(run, data.items.keys, sim_keys, sim_scores, valid, writer)
    counts["popular_items"] = 0
    for kind in (ListKind.POPULAR.value, ListKind.RECENT.value):
        if kind in lists:
            rows, scores = lists[kind]
            keep = item_ok[rows]
            counts["popular_items"] += storage.store_popular(run, kind, data.items.key(rows[keep]), scores[keep], writer)
    writer.finish()
    return counts


def _artifact(data, result: TrainResult) -> dict[str, np.ndarray]:
    reps = result.reps
    meta = {
        "candidate": result.candidate.name,
        "hyper": result.hyper.as_dict(),
        "history_features": result.candidate.history_features,
        "item_metadata": result.candidate.item_metadata,
        "bucket_edges": data.edges,
    }
    return {
        "user_keys": data.users.keys,
        "item_keys": data.items.keys,
        "allowed": data.allowed,
        "user_vectors": reps.user_vectors,
        "user_biases": reps.user_biases,
        "item_vectors": reps.item_vectors,
        "item_biases": reps.item_biases,
        "user_feature_vectors": reps.user_feature_vectors,
        "user_feature_biases": reps.user_feature_biases,
        "item_feature_vectors": reps.item_feature_vectors,
        "item_feature_biases": reps.item_feature_biases,
        "user_feature_names": np.asarray(result.user_feature_names, dtype=str),
        "item_feature_names": np.asarray(result.item_feature_names, dtype=str),
        "meta": np.asarray(json.dumps(meta)),
    }


# -- one customer, between retrains ------------------------------------------------------------
@lru_cache(maxsize=2)
def _live_model(run_id: int, artifact: str) -> dict | None:
    """The arrays of a run's artifact, kept in memory for the next rescores (two runs at most)."""
    arrays = storage.load_artifact(artifact)
    if arrays is None:
        return None
    from .ml.ids import IdMap

    arrays["_users"] = IdMap(arrays["user_keys"])
    arrays["_items"] = IdMap(arrays["item_keys"])
    return arrays


def rescore_user(user_id) -> int:
    """Recompute one customer's list in the live run from its stored artifact (no retrain).

    What the customer owns now (e.g. the books just bought) is left out.  A customer the
    run has never seen gets a list from their history: the mean of the vectors of the items
    they bought or viewed.  Returns the number of rows written (0: nothing to do).
    """
    run = TrainingRun.objects.live().only("pk", "artifact", "decision").first()
    if run is None or not run.artifact or run.decision == TrainingRun.Decision.POPULARITY:
        cache.user_changed(user_id)
        return 0
    model = _live_model(run.pk, run.artifact)
    if model is None:  # the artifact no longer loads: keep serving the stored list
        cache.user_changed(user_id)
        return 0
    items = model["_items"]
    owned, history, weights = [], [], []
    for source in sources.sources():
        raw = source.read_user(user_id)
        rows = items.index(raw.items)
        known = rows >= 0
        if source.exclude:
            owned.append(rows[known])
        history.append(rows[known])
        weights.append(
            SourceData(raw.name, rows[known], rows[known], raw.values[known], raw.times[known],
                       scale=raw.scale, transform=raw.transform).weights()
        )  # fmt: skip
    history_rows = np.concatenate(history) if history else np.empty(0, np.int64)
    row = model["_users"].index([user_id])[0]
    if row >= 0:
        vector, bias = model["user_vectors"][row], float(model["user_biases"][row])
    elif history_rows.size:
        w = np.concatenate(weights).astype(np.float32)
        vector = (model["item_vectors"][history_rows] * w[:, None]).sum(axis=0) / max(w.sum(), 1e-9)
        bias = 0.0
    else:
        cache.user_changed(user_id)
        return 0
    exclude = np.zeros((1, items.keys.size), dtype=np.float32)
    owned_rows = np.concatenate(owned) if owned else np.empty(0, np.int64)
    exclude[0, owned_rows] = 1
    (_, item_rows, scores), = score_users(
        vector[None, :].astype(np.float32), np.array([bias], np.float32), model["item_vectors"], model["item_biases"],
        k=app_settings.LIST_SIZE, allowed=model["allowed"], exclude=sp.csr_matrix(exclude),
    )  # fmt: skip
    item_rows, scores = item_rows[0], scores[0]
    valid = item_rows >= 0
    with transaction.atomic():
        locked = TrainingRun.objects.select_for_update().filter(pk=run.pk, is_live=True).exists()
        if not locked:  # a new run went live meanwhile: it has its own list for this customer
            return 0
        Recommendation.objects.filter(run_id=run.pk, user_id=user_id).delete()
        written = storage.store_personal(
            run, np.array([user_id]), items.key(np.maximum(item_rows, 0))[None, :], scores[None, :], valid[None, :]
        )
    transaction.on_commit(lambda: cache.user_changed(user_id))
    return written
