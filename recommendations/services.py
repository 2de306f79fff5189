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
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from django.db import IntegrityError, connection, transaction
from django.db.models import Q
from django.utils import timezone

from . import cache, dispatch, ondemand, signals, sources, storage
from .conf import app_settings
from .ml import serving
from .ml.als import ALSHyper
from .ml.coldstart import Calibration, ContentTower
from .ml.families import Config
from .ml.ids import IdMap
from .ml.matrices import DataError
from .ml.pipeline import (
    EvaluationSettings,
    NewItemSettings,
    SearchSettings,
    SourceData,
    TrainResult,
    TrainSettings,
    train,
)
from .ml.scoring import popularity, similar_items, top_popular
from .ml.train import Hyper
from .models import ListKind, Recommendation, ScoringShard, TrainingRun

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


def als_from_settings() -> ALSHyper:
    return ALSHyper(**app_settings.ALS)


def evaluation_from_settings(enabled: bool | None = None) -> EvaluationSettings:
    conf = {k: v for k, v in app_settings.EVALUATION.items() if k != "target"}
    if enabled is not None:
        conf["enabled"] = enabled
    return EvaluationSettings(**conf)


def search_from_settings() -> SearchSettings:
    conf = dict(app_settings.SEARCH)
    conf["families"] = tuple(conf.get("families") or ())
    conf["scales"] = tuple(float(x) for x in conf.get("scales") or ())
    return SearchSettings(**conf)


def candidates_from_settings() -> list[Config]:
    """``CANDIDATES`` as configurations: ``source_scales`` "equal" weighs every source 1,
    "target" keeps the target sources only (see ``EVALUATION["target"]``)."""
    names = [s["name"] for s in app_settings.SOURCES]
    targets = sources.target_names()
    result = []
    for conf in app_settings.CANDIDATES:
        scales = conf.get("source_scales") or {}
        if scales == "equal":
            scales = {name: 1.0 for name in names}
        elif scales == "target":
            scales = {name: 0.0 for name in names if name not in targets}
        result.append(
            Config(
                name=conf["name"], family=conf.get("family", "lightfm"), params=dict(conf.get("hyper") or {}),
                source_scales={k: float(v) for k, v in scales.items()},
                item_metadata=conf.get("item_metadata", True), history_features=conf.get("history_features", False),
            )  # fmt: skip
        )
    return result


def train_settings(evaluate: bool | None = None) -> TrainSettings:
    return TrainSettings(
        hyper=hyper_from_settings(), als=als_from_settings(), candidates=candidates_from_settings(),
        evaluation=evaluation_from_settings(evaluate), search=search_from_settings(),
        new_items=NewItemSettings(**app_settings.NEW_ITEMS),
    )  # fmt: skip


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
            task_id = dispatch.send(tasks.retrain, [run.pk, evaluate], back_off=False, queue=app_settings.QUEUES.get("training"))
        except Exception as exc:  # BrokerUnreachable, kombu.OperationalError, OSError: all "unreachable"
            detail = str(exc) if isinstance(exc, dispatch.BrokerUnreachable) else f"{type(exc).__name__}: {exc}"
            reason = f"The task broker is unreachable, so the retrain could not be queued ({detail})."
            logger.error("Run #%s: %s", run.pk, reason)
            if TrainingRun.objects.filter(pk=run.pk, status=TrainingRun.Status.QUEUED).update(
                status=TrainingRun.Status.FAILED, error=reason, active=None, finished=timezone.now()
            ):
                signals.send_after_commit(signals.run_failed, TrainingRun.objects.get(pk=run.pk), error=reason)
            raise BrokerUnavailable(run, reason) from exc
        TrainingRun.objects.filter(pk=run.pk, task_id="").update(task_id=task_id or "")

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


def run_queued(run_id: int, *, task_id: str = "", evaluate: bool | None = None, fan_out: bool = False) -> TrainingRun | None:
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
    return retrain(run=run, evaluate=evaluate, fan_out=fan_out)


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
    scoring = app_settings.QUEUES.get("scoring") or "the default queue"
    for qs, reason in (
        (stale_running.filter(stage="shards"),
         f"The scoring shards stopped sending signs of life: no worker took them from the {scoring!r} queue "
         f"(start one with -Q {scoring}), or their workers were lost."),
        (stale_running.exclude(stage="shards"),
         "The retrain stopped sending signs of life (its worker was killed or ran out of memory)."),
        (overdue, "The retrain ran past its time limit without finishing (a hung process?)."),
        (stale_queued, "No worker picked up the queued retrain (is a worker consuming the "
                       f"{app_settings.QUEUES.get('training') or 'default'!r} queue?)."),
    ):
        for pk in list(qs.values_list("pk", flat=True)):
            # Conditional: a run that finished meanwhile is left alone.
            if qs.filter(pk=pk).update(status=TrainingRun.Status.FAILED, error=reason, active=None, finished=now):
                logger.warning("Run #%s marked failed: %s", pk, reason)
                ids.append(pk)
                run = TrainingRun.objects.get(pk=pk)
                _discard(run)
                signals.send_after_commit(signals.run_failed, run, error=reason)
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


def retrain(
    *, run: TrainingRun | None = None, evaluate: bool | None = None, trigger: str = "sync", user=None,
    fan_out: bool = False,
) -> TrainingRun:  # fmt: skip
    """Train, score and publish a new run; return it (check ``run.status``).

    Never raises for a failed run: the error is on the run, and the previous live run
    stays live.  ``evaluate=False`` skips the holdout and trains the first candidate.
    Raises :class:`AlreadyRunning` when another run is in flight (and ``run`` is None).

    ``fan_out``: after training, the customers' lists are scored by ``scoring`` tasks on
    any number of Celery workers (:func:`fan_out_shards`), and this returns the run still
    running; the last step (:func:`publish_run`) makes it live.  Otherwise every shard is
    scored here, one after another, with every core.
    """
    if run is None:
        run = start_run(trigger=trigger, user=user, status=TrainingRun.Status.RUNNING)
        run.worker = f"{socket.gethostname()} pid {os.getpid()}"
    now = timezone.now()
    run.status, run.started, run.heartbeat, run.error = TrainingRun.Status.RUNNING, run.started or now, now, ""
    run.save(update_fields=["status", "started", "heartbeat", "error", "worker"])
    with Heartbeat(run.pk):
        return _retrain(run, evaluate, fan_out)


def _retrain(run: TrainingRun, evaluate: bool | None, fan_out: bool) -> TrainingRun:
    rec = _Recorder(run)
    try:
        shards = _train(run, evaluate, rec)
        if shards and fan_out:
            fan_out_shards(run, shards)
            return run
        for number in range(shards):
            _score_shard(run, number, threads=None)
        _publish(run, rec)
    except NotEnoughData as exc:
        _fail(run, rec, TrainingRun.Status.NOT_ENOUGH_DATA, str(exc))
        return run
    except (DataError, ShardFailed) as exc:
        _fail(run, rec, TrainingRun.Status.FAILED, str(exc))
        return run
    except Exception as exc:
        if type(exc).__name__ == "SoftTimeLimitExceeded":
            _fail(run, rec, TrainingRun.Status.TIMED_OUT, "The retrain hit its time limit and was stopped.")
            raise
        logger.exception("Run #%s failed", run.pk)
        _fail(run, rec, TrainingRun.Status.FAILED, f"{type(exc).__name__}: {exc}")
        return run
    _after_live(run)
    return run


def _train(run: TrainingRun, evaluate: bool | None, rec: _Recorder) -> int:
    """Extract, build, train; score and write the lists shared by everyone (similar items,
    popular lists); save the model and each shard's inputs.  Returns the number of shards
    of customers to score (0: no personal lists, the popularity decision)."""
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

    result = train(data, train_settings(evaluate), progress=rec.progress)
    for name, seconds in result.seconds.items():
        rec.seconds[name] = round(seconds, 4)
    run.decision = result.decision
    run.metrics = result.metrics
    run.params = _params(result, data)
    run.counts.update(users=data.n_users, interactions=len(result.interactions), items_allowed=int(data.allowed.sum()))

    with rec.stage("score"):
        lists, how = _score(data, result, rec)
    run.metrics.setdefault("new_items", {})["mode"] = how
    personal = result.decision != TrainingRun.Decision.POPULARITY
    # Who gets a stored list (everyone but, with ACTIVE_DAYS, those who have not been back).
    stored = _active(data) if personal else np.ones(data.n_users, bool)
    with rec.stage("artifact"):
        run.artifact, run.artifact_record = storage.save_artifact(run, _artifact(data, result, how, stored, exclude))
        shards = _save_shard_inputs(run, data, result, exclude, np.flatnonzero(stored)) if personal else []
    with rec.stage("store"):
        writer = storage.RunRows(run)
        writer.prepare()
        with transaction.atomic():
            run.counts.update(_store_shared(run, data, lists, writer))
            ScoringShard.objects.bulk_create(shards)
    run.counts.update(recommendations=0, shards=len(shards), customers_stored=int(stored.sum()) if personal else 0,
                      customers_on_demand=int((~stored).sum()))  # fmt: skip
    run.stage, run.progress, run.stage_seconds = "shards", 0.0, rec.seconds
    run.save(update_fields=TRAIN_FIELDS)
    return len(shards)


TRAIN_FIELDS = ["stage", "progress", "artifact", "artifact_record", "stage_seconds", "decision", "metrics", "params",
                "counts", "data_until"]  # fmt: skip
RUN_FIELDS = [*TRAIN_FIELDS, "status", "finished", "active"]


def _csr(prefix: str, matrix: sp.csr_matrix) -> dict[str, np.ndarray]:
    matrix = sp.csr_matrix(matrix)
    return {f"{prefix}_data": matrix.data.astype(np.float32), f"{prefix}_indices": matrix.indices.astype(np.int64),
            f"{prefix}_indptr": matrix.indptr.astype(np.int64), f"{prefix}_shape": np.asarray(matrix.shape, np.int64)}  # fmt: skip


def _from_csr(arrays: dict, prefix: str, shape: tuple[int, int]) -> sp.csr_matrix | None:
    if f"{prefix}_data" not in arrays:
        return None
    if tuple(int(x) for x in arrays[f"{prefix}_shape"]) != shape:
        raise ShardFailed(f"the shard's {prefix} matrix is {tuple(arrays[f'{prefix}_shape'])}, not {shape}")
    matrix = sp.csr_matrix((arrays[f"{prefix}_data"], arrays[f"{prefix}_indices"], arrays[f"{prefix}_indptr"]), shape=shape)
    matrix.check_format(full_check=True)
    return matrix


def _active(data) -> np.ndarray:
    """The customers who get stored lists: all, or (``ACTIVE_DAYS``) those with an interaction
    in the last so many days.  A row without a time (a source without a timestamp) counts as
    recent: nothing says the customer left."""
    days = app_settings.ACTIVE_DAYS
    if days is None:
        return np.ones(data.n_users, bool)
    since = time.time() - float(days) * 86400.0
    active = np.zeros(data.n_users, bool)
    for source in data.sources:
        recent = ~(source.time < since)  # NaN (no time) counts as recent
        active[source.user[recent]] = True
    return active


def _save_shard_inputs(run: TrainingRun, data, result: TrainResult, exclude: sp.csr_matrix,
                       rows: np.ndarray) -> list[ScoringShard]:  # fmt: skip
    """Cut the customers to store (``rows``, in order) into ranges of ``SHARD_SIZE`` and save
    each range's inputs (its customers' rows, what they own, their metadata profiles) beside
    the model: a scoring task loads the model and its own range's inputs, never everyone's."""
    ni = result.new_items
    profiles = ni.profiles if ni is not None else None
    size = max(1, int(app_settings.SHARD_SIZE))
    shards = []
    for number, start in enumerate(range(0, rows.size, size)):
        part = rows[start : start + size].astype(np.int64)
        arrays = {"user_rows": part, **_csr("exclude", exclude[part])}
        if profiles is not None:
            arrays.update(_csr("profiles", profiles[part]))
        name, record = storage.save_artifact(run, arrays)
        shards.append(ScoringShard(run=run, number=number, customers=part.size, artifact=name, artifact_record=record))
    return shards


def fan_out_shards(run: TrainingRun, shards: int) -> None:
    """The scoring tasks as a Celery chord: a group of shards on the ``scoring`` queue, whose
    callback publishes the run once every shard is in."""
    from celery import chord, group

    from . import tasks

    queue = app_settings.QUEUES.get("scoring") or None
    header = group(tasks.score_shard.si(run.pk, number).set(queue=queue) for number in range(shards))
    chord(header)(tasks.publish_run.si(run.pk).set(queue=queue))
    logger.info("Run #%s: %s scoring shards sent to queue %r", run.pk, shards, queue or "default")


def can_fan_out() -> bool:
    """Whether shards can go to Celery workers: tasks go through a real broker, and a
    result backend is there for the chord to count them."""
    from celery import current_app
    from celery.backends.base import DisabledBackend

    if dispatch.mode() != "celery" or current_app.conf.task_always_eager:
        return False
    if isinstance(current_app.backend, DisabledBackend):
        logger.warning("Celery has no result backend (CELERY_RESULT_BACKEND), which a chord needs: the "
                       "customers' lists are scored in the training task instead of on scoring workers.")  # fmt: skip
        return False
    return True


class ShardFailed(Exception):
    """A shard cannot be scored (its inputs do not load, it was lost too often): the run fails."""


def _claim_shard(run_id: int, number: int) -> ScoringShard | None:
    """Mark the shard running for this process; None when there is nothing to do (the run
    is over, or another delivery finished the shard).  Raises :class:`ShardFailed` when the
    shard has used up its ``SHARD_ATTEMPTS``."""
    with transaction.atomic():
        shard = ScoringShard.objects.select_for_update(of=("self",)).filter(run_id=run_id, number=number).first()
        if shard is None or shard.status == ScoringShard.Status.DONE:
            return None
        run = TrainingRun.objects.filter(pk=run_id).only("pk", "status", "artifact", "artifact_record", "stage").first()
        if run is None or run.status != TrainingRun.Status.RUNNING:
            return None
        if shard.attempts >= app_settings.SHARD_ATTEMPTS:
            last = f" The last error: {shard.error}" if shard.error else " (its worker was lost each time?)"
            raise ShardFailed(f"Shard {number} was started {shard.attempts} times without finishing.{last}")
        shard.attempts += 1
        shard.status, shard.started = ScoringShard.Status.RUNNING, timezone.now()
        shard.worker = f"{socket.gethostname()} pid {os.getpid()}"
        shard.save(update_fields=["attempts", "status", "started", "worker"])
    shard.run = run
    return shard


def score_shard(run_id: int, number: int, *, threads: int | None = None) -> int | None:
    """Score and write shard ``number`` of run ``run_id`` (a ``scoring`` task); return the
    rows written, or None when there was nothing to do.  Raises when the shard failed: the
    task tries it again, and fails the run (:func:`fail_run`) when attempts run out."""
    shard = _claim_shard(run_id, number)
    if shard is None:
        return None
    with Heartbeat(run_id):
        return _score_claimed(shard, threads)


def _score_shard(run: TrainingRun, number: int, threads: int | None) -> None:
    """A shard scored in the training process (no workers to fan out to)."""
    shard = _claim_shard(run.pk, number)
    if shard is not None:
        _score_claimed(shard, threads)


def _cores(threads: int | None):
    """BLAS held to ``threads`` (the tower's products too) while a shard is scored: a scoring
    worker uses the cores it was given, however many workers share the machine."""
    if not threads:
        return nullcontext()
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=threads, user_api="blas")


_ITEMS_PRESENT: dict[str, tuple[float, np.ndarray]] = {}
ITEMS_PRESENT_SECONDS = 30.0


def _items_present(name: str, model: LiveModel) -> np.ndarray:
    """Which of the run's books still exist, read again at most every ``ITEMS_PRESENT_SECONDS``
    by this process: its next shards of the same run reuse the answer (the books are the
    same for every shard, and tens of thousands of them cost a query each time)."""
    now = time.monotonic()
    cached = _ITEMS_PRESENT.get(name)
    if cached is not None and now - cached[0] < ITEMS_PRESENT_SECONDS:
        return cached[1]
    present = storage.existing(sources.item_model(), model.items.keys)
    _ITEMS_PRESENT.clear()  # one run at a time
    _ITEMS_PRESENT[name] = (now, present)
    return present


def _score_claimed(shard: ScoringShard, threads: int | None) -> int | None:
    from django.contrib.auth import get_user_model

    run, seconds = shard.run, {}
    started = time.perf_counter()
    model = _live_model(run)
    inputs = storage.load_artifact(shard.artifact, shard.artifact_record)
    if model is None or inputs is None:
        raise ShardFailed(f"Shard {shard.number}: the run's model or the shard's inputs do not load (see the log).")
    rows = np.asarray(inputs["user_rows"], np.int64)
    if rows.size != shard.customers or (rows.size and (rows.min() < 0 or rows.max() >= len(model.users))):
        raise ShardFailed(f"Shard {shard.number}: its customers do not fit the run's model.")
    exclude = _from_csr(inputs, "exclude", (rows.size, len(model.items)))
    profiles = None
    if model.tower is not None:
        profiles = _from_csr(inputs, "profiles", (rows.size, model.tower.items.shape[1]))
    seconds["load"] = time.perf_counter() - started

    started = time.perf_counter()
    k = app_settings.LIST_SIZE
    item_rows = np.full((rows.size, k), -1, dtype=np.int64)
    scores = np.zeros((rows.size, k), dtype=np.float32)
    with _cores(threads):
        for part, items, values in serving.personal_lists(
            model.user_vectors[rows], model.user_biases[rows], model.item_vectors, model.item_biases,
            k=k, allowed=model.allowed, new_rows=model.new_rows, how=model.how, exclude=exclude,
            tower=model.tower, profiles=profiles, calibration=model.calibration,
            batch=app_settings.SCORE_BATCH, threads=threads,
        ):  # fmt: skip
            item_rows[part, : items.shape[1]] = items
            scores[part, : values.shape[1]] = values
    seconds["score"] = time.perf_counter() - started

    started = time.perf_counter()
    user_keys = model.users.keys[rows]
    # Customers and books deleted since the extraction are left out.
    user_ok = storage.existing(get_user_model(), user_keys)
    item_ok = _items_present(run.artifact, model)
    valid = (item_rows >= 0) & item_ok[np.maximum(item_rows, 0)] & user_ok[:, None]
    item_keys = model.items.key(np.maximum(item_rows, 0))
    seconds["check"] = time.perf_counter() - started
    with transaction.atomic():
        # The rows and the shard's "done" commit together: a worker lost before the commit
        # leaves nothing, and of two deliveries of one shard the second finds it done.
        locked = ScoringShard.objects.select_for_update().get(pk=shard.pk)
        if locked.status == ScoringShard.Status.DONE:
            return None
        written = storage.store_personal(run, user_keys, item_keys, scores, valid, storage.RunRows(run), user_rows=rows)
        seconds["store"] = time.perf_counter() - started
        ScoringShard.objects.filter(pk=shard.pk).update(
            status=ScoringShard.Status.DONE, rows=written, finished=timezone.now(), error="",
            seconds={name: round(value, 4) for name, value in seconds.items()},
        )  # fmt: skip
        shards = ScoringShard.objects.filter(run_id=run.pk)
        done = shards.filter(status=ScoringShard.Status.DONE).count()
        TrainingRun.objects.filter(pk=run.pk, status=TrainingRun.Status.RUNNING, stage="shards").update(
            progress=done / max(shards.count(), 1), heartbeat=timezone.now()
        )
    return written


def shard_failed(run_id: int, number: int, error: str) -> bool:
    """Record a shard's error; True when it has no attempts left (the run then fails)."""
    ScoringShard.objects.filter(run_id=run_id, number=number).exclude(status=ScoringShard.Status.DONE).update(
        status=ScoringShard.Status.FAILED, error=error[:2000]
    )
    attempts = ScoringShard.objects.filter(run_id=run_id, number=number).values_list("attempts", flat=True).first()
    if attempts is None or attempts >= app_settings.SHARD_ATTEMPTS:
        fail_run(run_id, f"Shard {number} failed {attempts or 0} times; the last error: {error}")
        return True
    return False


def fail_run(run_id: int, message: str, status: str = TrainingRun.Status.FAILED) -> bool:
    """Fail a running run from another process than its training's (a shard, the publisher).
    Conditional: a run that went live or failed meanwhile is left as it is."""
    if not TrainingRun.objects.filter(pk=run_id, status=TrainingRun.Status.RUNNING).update(
        status=status, error=message, finished=timezone.now(), active=None, is_live=None
    ):
        return False
    run = TrainingRun.objects.get(pk=run_id)
    logger.warning("Run #%s %s: %s", run_id, status, message)
    _discard(run)
    signals.send_after_commit(signals.run_failed, run, error=message)
    return True


def _discard(run: TrainingRun) -> None:
    """Delete what a run that did not go live wrote: its rows, its model and shard inputs."""
    storage.delete_artifact(run.artifact)
    for name in ScoringShard.objects.filter(run_id=run.pk).exclude(artifact="").values_list("artifact", flat=True):
        storage.delete_artifact(name)
    ScoringShard.objects.filter(run_id=run.pk).update(artifact="", artifact_record={})
    storage.discard_rows(run)
    TrainingRun.objects.filter(pk=run.pk).update(artifact="", artifact_record={})


def publish_run(run_id: int) -> str:
    """The chord's callback: once every shard is in, write the last pieces and switch the
    run live in one transaction.  Returns "live", "pending" (a shard is not done yet: the
    task asks again shortly) or "over" (the run failed, or another delivery published it)."""
    run = TrainingRun.objects.filter(pk=run_id).first()
    if run is None or run.status != TrainingRun.Status.RUNNING:
        return "over"
    if run.shards.exclude(status=ScoringShard.Status.DONE).exists():
        return "pending"
    # One publisher: the stage moves on once, conditionally.
    if not TrainingRun.objects.filter(pk=run_id, status=TrainingRun.Status.RUNNING, stage="shards").update(
        stage="publish", progress=1.0, heartbeat=timezone.now()
    ):
        return "over"
    run.refresh_from_db()
    rec = _Recorder(run)
    rec.seconds = dict(run.stage_seconds)
    try:
        with Heartbeat(run.pk):
            _publish(run, rec)
    except Exception as exc:
        logger.exception("Run #%s failed while publishing", run.pk)
        fail_run(run.pk, f"{type(exc).__name__}: {exc}")
        return "over"
    _after_live(run)
    return "live"


def _publish(run: TrainingRun, rec: _Recorder) -> None:
    """Index the run's rows and switch it live in one transaction (the previous run serves
    until the commit)."""
    shards = list(run.shards.all())
    for shard in shards:
        for name in ("load", "score", "store"):
            if name in shard.seconds:
                stage = "artifact" if name == "load" else name
                rec.seconds[stage] = round(rec.seconds.get(stage, 0.0) + float(shard.seconds[name]), 4)
    if shards and all(s.started and s.finished for s in shards):
        # Wall-clock seconds from the first shard's start to the last one's end: what more
        # scoring workers shorten.
        rec.seconds["shards"] = round((max(s.finished for s in shards) - min(s.started for s in shards)).total_seconds(), 4)
    with rec.stage("store"):
        writer = storage.RunRows(run)
        writer.finish()
        with transaction.atomic():
            storage.publish(run)
            writer.attach()
            run.counts["recommendations"] = sum(s.rows for s in shards)
            run.status, run.stage, run.progress, run.finished = TrainingRun.Status.SUCCEEDED, "done", 1.0, timezone.now()
            run.stage_seconds, run.active = rec.seconds, None
            run.save(update_fields=RUN_FIELDS)
            generation = cache.generation(run.pk, run.created)
            transaction.on_commit(lambda: (ondemand.remember(generation, run), cache.published(generation)))
            signals.send_after_commit(signals.run_live, run)
    # The store stage's own seconds are known only now that it is over (the run went live
    # inside it): one more UPDATE of that column alone.
    run.stage_seconds = rec.seconds
    TrainingRun.objects.filter(pk=run.pk).update(stage_seconds=rec.seconds)


def _after_live(run: TrainingRun) -> None:
    """Housekeeping once a run is live, which must never undo that."""
    logger.info("Run #%s is live: %s", run.pk, json.dumps(run.metrics.get("model") or {}))
    try:
        for name in ScoringShard.objects.filter(run_id=run.pk).exclude(artifact="").values_list("artifact", flat=True):
            storage.delete_artifact(name)  # a shard's inputs are needed only while it is scored
        ScoringShard.objects.filter(run_id=run.pk).update(artifact="", artifact_record={})
        storage.prune()
    except Exception:
        logger.exception("Pruning old runs after run #%s failed; they will be pruned next time", run.pk)


def _fail(run: TrainingRun, rec: _Recorder, status: str, message: str) -> None:
    logger.warning("Run #%s %s: %s", run.pk, status, message)
    _discard(run)
    run.status, run.error, run.finished = status, message, timezone.now()
    run.stage_seconds, run.is_live, run.artifact, run.artifact_record, run.active = rec.seconds, None, "", {}, None
    run.save(update_fields=["status", "error", "finished", "stage_seconds", "is_live", "artifact", "artifact_record",
                            "active", "decision", "metrics", "params", "counts", "data_until"])  # fmt: skip
    signals.send_after_commit(signals.run_failed, run, error=message)


def _params(result: TrainResult, data) -> dict:
    cfg = result.config
    parts = list(cfg.parts) if cfg.family == "blend" else [(cfg, 1.0)]
    hyper = {}
    for part, _ in parts:
        if part.family == "als":
            hyper["als"] = als_from_settings().with_(**part.params).as_dict() | {"iterations": result.epochs.get("als")}
        else:
            hyper["lightfm"] = hyper_from_settings().with_(**part.params).as_dict() | {"epochs": result.epochs.get("lightfm")}
    scales = _scales(result)
    return {
        "item_model": app_settings.ITEM_MODEL,
        "family": cfg.family,
        "config": cfg.describe(),
        "hyperparameters": hyper,
        **({"lightfm": hyper["lightfm"]} if "lightfm" in hyper else {}),
        "candidate": {"name": cfg.name, "family": cfg.family, "item_metadata": cfg.item_metadata,
                      "history_features": cfg.history_features, "source_scales": scales},  # fmt: skip
        "sources": {s.name: {"scale": scales.get(s.name, s.scale), "transform": s.transform, "target": s.target}
                    for s in data.sources},  # fmt: skip
        "evaluation": app_settings.EVALUATION,
        "search": app_settings.SEARCH,
        "new_items": app_settings.NEW_ITEMS,
        "list_size": app_settings.LIST_SIZE,
        "similar_size": app_settings.SIMILAR_SIZE,
        "bucket_edges": data.edges,
        "item_features": len(result.item_feature_names),
        "user_features": len(result.user_feature_names),
    }


def _scales(result: TrainResult) -> dict:
    cfg = result.config
    return dict(cfg.parts[0][0].source_scales if cfg.family == "blend" else cfg.source_scales)


def _represents_new(result: TrainResult) -> bool:
    """Whether the served factors score books without interactions from their features."""
    return result.config.family == "lightfm" and result.config.item_metadata


def _score(data, result: TrainResult, rec: _Recorder) -> tuple[dict, str]:
    """The lists shared by everyone: similar items and popular lists (the customers' own
    lists are scored in shards, :func:`score_shard`); and how new books are served."""
    f, ni = result.factors, result.new_items
    new_rows = ni.new if ni is not None else np.empty(0, np.int64)
    calibration = ni.calibration if ni is not None else None
    how = serving.mode(new_rows, calibration, _represents_new(result), ni.max_share if ni else 0.0)
    lists: dict = {}
    sim = app_settings.SIMILAR_SIZE
    sim_rows = np.full((data.n_items, sim), -1, dtype=np.int64)
    sim_scores = np.zeros((data.n_items, sim), dtype=np.float32)
    # Books the model cannot represent (zero vectors) are neither given nor offered as similar
    # by the model; the metadata tower finds theirs.
    by_model = data.allowed.copy()
    if how != "model" and new_rows.size:
        by_model[new_rows] = False
    for rows, similar, values in similar_items(f.item_vectors, k=sim, allowed=by_model, batch=app_settings.SCORE_BATCH):
        sim_rows[rows, : similar.shape[1]] = similar
        sim_scores[rows, : values.shape[1]] = values
    if how != "model" and new_rows.size and ni is not None:
        touched = np.zeros(data.n_items, bool)
        for source in data.sources:
            touched[source.item] = True
        rows_new = np.flatnonzero(~touched)
        for start in range(0, rows_new.size, 1024):
            chunk = rows_new[start : start + 1024]
            found, values = ni.tower.similar(chunk, np.flatnonzero(data.allowed), sim)
            sim_rows[chunk], sim_scores[chunk] = found, values
    lists["similar"] = (sim_rows, sim_scores)

    inter = result.interactions
    overall = popularity(inter.user, inter.item, data.n_items)
    lists[ListKind.POPULAR.value] = _popular_list(overall, data.allowed)
    finite = inter.time[np.isfinite(inter.time)]
    if finite.size:
        since = finite.max() - app_settings.POPULAR_RECENT_DAYS * 86400
        recent = popularity(inter.user, inter.item, data.n_items, time=inter.time, since=since)
        lists[ListKind.RECENT.value] = _popular_list(recent, data.allowed)
    return lists, how


def _popular_list(scores: np.ndarray, allowed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    rows = top_popular(scores, app_settings.POPULAR_SIZE, allowed)
    return rows, scores[rows]


def _store_shared(run: TrainingRun, data, lists: dict, writer: storage.RunRows) -> dict:
    """Write the similar items and the popular lists; books deleted since extraction are left out."""
    item_ok = storage.existing(sources.item_model(), data.items.keys)
    counts = {}
    sim_rows, sim_scores = lists["similar"]
    valid = (sim_rows >= 0) & item_ok[np.maximum(sim_rows, 0)] & item_ok[:, None]
    sim_keys = data.items.key(np.maximum(sim_rows, 0))
    counts["similar_items"] = storage.store_similar(run, data.items.keys, sim_keys, sim_scores, valid, writer)
    counts["popular_items"] = 0
    for kind in storage.POPULAR_KINDS:
        if kind in lists:
            rows, scores = lists[kind]
            keep = item_ok[rows]
            counts["popular_items"] += storage.store_popular(run, kind, data.items.key(rows[keep]), scores[keep], writer)
    return counts


ARTIFACT_VERSION = 2


def _artifact(data, result: TrainResult, how: str, stored: np.ndarray, exclude: sp.csr_matrix) -> dict[str, np.ndarray]:
    f, ni = result.factors, result.new_items
    meta = {
        "version": ARTIFACT_VERSION,
        "config": result.config.describe(),
        "parts": f.parts,
        "source_scales": _scales(result),
        "new_items": how,
        "bucket_edges": data.edges,
    }
    arrays = {
        "user_keys": data.users.keys,
        "item_keys": data.items.keys,
        "allowed": data.allowed,
        "user_vectors": f.user_vectors,
        "user_biases": f.user_biases,
        "item_vectors": f.item_vectors,
        "item_biases": f.item_biases,
        "user_feature_names": np.asarray(result.user_feature_names, dtype=str),
        "item_feature_names": np.asarray(result.item_feature_names, dtype=str),
        "meta": np.asarray(json.dumps(meta)),
        **{k: np.asarray(v) for k, v in f.arrays.items()},
    }
    if not stored.all():
        # Customers scored on demand (ACTIVE_DAYS): which ones, and what they owned then.
        arrays.update(stored=stored, **_csr("owned", exclude))
    if ni is not None:
        tower = ni.tower.items
        arrays.update(
            new_rows=ni.new.astype(np.int64),
            tower_data=tower.data, tower_indices=tower.indices.astype(np.int64), tower_indptr=tower.indptr.astype(np.int64),
            tower_shape=np.asarray(tower.shape, dtype=np.int64), tower_idf=ni.tower.idf,
        )  # fmt: skip
        if ni.calibration is not None:
            arrays.update(ni.calibration.as_arrays())
    return arrays


# -- one customer, between retrains ------------------------------------------------------------
@dataclass
class LiveModel:
    """A run's artifact, checked and ready to rescore customers (see :func:`_live_model`)."""

    users: IdMap
    items: IdMap
    allowed: np.ndarray
    user_vectors: np.ndarray
    user_biases: np.ndarray
    item_vectors: np.ndarray
    item_biases: np.ndarray
    parts: list
    scales: dict
    how: str
    new_rows: np.ndarray
    tower: ContentTower | None
    calibration: Calibration | None
    stored: np.ndarray | None = None  # customers with stored lists (None: all of them)
    owned: sp.csr_matrix | None = None  # what each customer owned at the run (with ``stored``)

    def on_demand(self, row: int) -> bool:
        """Whether the customer of ``row`` has no stored list and is scored when asked."""
        return self.stored is not None and 0 <= row < self.stored.size and not self.stored[row]


def _live_from_arrays(arrays: dict) -> LiveModel:
    """Raises ``ValueError``/``KeyError`` when the arrays do not make a consistent model."""
    meta = json.loads(str(arrays["meta"]))
    users, items = IdMap(arrays["user_keys"]), IdMap(arrays["item_keys"])
    uv, iv = np.asarray(arrays["user_vectors"], np.float32), np.asarray(arrays["item_vectors"], np.float32)
    ub, ib = np.asarray(arrays["user_biases"], np.float32), np.asarray(arrays["item_biases"], np.float32)
    allowed = np.asarray(arrays["allowed"], bool)
    n_u, n_i = len(users), len(items)
    if uv.ndim != 2 or iv.ndim != 2 or uv.shape != (n_u, iv.shape[1]) or iv.shape[0] != n_i:
        raise ValueError(f"vectors of shapes {uv.shape} and {iv.shape} do not fit {n_u} users and {n_i} items")
    if ub.shape != (n_u,) or ib.shape != (n_i,) or allowed.shape != (n_i,):
        raise ValueError("biases or the allowed mask do not fit the id maps")
    parts = list(meta.get("parts") or [{"family": "lightfm", "start": 0, "stop": iv.shape[1], "weight": 1.0}])
    for p in parts:
        if not (0 <= int(p["start"]) < int(p["stop"]) <= iv.shape[1]) or p.get("family") not in ("lightfm", "als"):
            raise ValueError(f"a part {p!r} does not fit the vectors")
    tower = calibration = None
    new_rows = np.asarray(arrays.get("new_rows", np.empty(0, np.int64)), np.int64)
    if new_rows.size and (new_rows.min() < 0 or new_rows.max() >= n_i):
        raise ValueError("new book rows out of range")
    if "tower_data" in arrays:
        shape = tuple(int(x) for x in arrays["tower_shape"])
        matrix = sp.csr_matrix((arrays["tower_data"], arrays["tower_indices"], arrays["tower_indptr"]), shape=shape)
        matrix.check_format(full_check=True)
        if shape[0] != n_i:
            raise ValueError("the metadata tower does not fit the items")
        tower = ContentTower.from_arrays(matrix, arrays["tower_idf"])
        calibration = Calibration.from_arrays(arrays)
    stored = owned = None
    if "stored" in arrays:
        stored = np.asarray(arrays["stored"], bool)
        owned = _from_csr(arrays, "owned", (n_u, n_i))
        if stored.shape != (n_u,) or owned is None:
            raise ValueError("the stored-customers mask or the owned items do not fit the id maps")
    return LiveModel(users, items, allowed, uv, ub, iv, ib, parts, dict(meta.get("source_scales") or {}),
                     str(meta.get("new_items", "model")), new_rows, tower, calibration, stored, owned)  # fmt: skip


class _LiveModels:
    """Loaded artifacts, kept in memory for the next rescores (two at most), by name (unique
    to its run and database: ``storage.save_artifact``).

    A failed load is remembered for ``RETRY_SECONDS`` only, then tried again: a storage
    that was briefly unreachable must not disable rescoring for the life of the process.
    """

    RETRY_SECONDS = 60.0
    SIZE = 2

    def __init__(self) -> None:
        self._models: dict[str, LiveModel] = {}
        self._failed: dict[str, float] = {}
        self._lock = threading.Lock()

    def __call__(self, run: TrainingRun) -> LiveModel | None:
        key = run.artifact
        with self._lock:
            if key in self._models:
                return self._models[key]
            if time.monotonic() < self._failed.get(key, 0.0):
                return None
        model = self._load(run)
        with self._lock:
            if model is None:
                self._failed[key] = time.monotonic() + self.RETRY_SECONDS
            else:
                self._failed.pop(key, None)
                while len(self._models) >= self.SIZE:
                    self._models.pop(next(iter(self._models)))
                self._models[key] = model
        return model

    @staticmethod
    def _load(run: TrainingRun) -> LiveModel | None:
        arrays = storage.load_artifact(run.artifact, run.artifact_record)
        if arrays is None:
            return None
        try:
            return _live_from_arrays(arrays)
        except Exception as exc:  # an outdated artifact is "no model", never a crash
            logger.error("Model artifact %s of run #%s is not usable (%s); not rescoring from it.", run.artifact, run.pk, exc)
            return None

    def cache_clear(self) -> None:
        with self._lock:
            self._models.clear()
            self._failed.clear()


_live_model = _LiveModels()


def _fold_in(model: LiveModel, row: int, history: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, float] | None:
    """The customer's vector and bias: ALS parts are solved again from their history (so a
    purchase since the run counts), LightFM parts are the stored vector, or for a customer
    the run has not seen, the weighted mean of their books' vectors."""
    vector = np.zeros(model.item_vectors.shape[1], np.float32)
    known = row >= 0
    if not known and history.size == 0:
        return None
    for p in model.parts:
        cols = slice(int(p["start"]), int(p["stop"]))
        if p["family"] == "als" and history.size:
            from .ml.als import fold_in

            vector[cols] = fold_in(model.item_vectors[:, cols], history, weights, p) * np.float32(p["weight"])
        elif known:
            vector[cols] = model.user_vectors[row, cols]
        elif history.size:
            w = weights.astype(np.float32)
            vector[cols] = (model.item_vectors[history, cols] * w[:, None]).sum(axis=0) / max(float(w.sum()), 1e-9)
    bias = float(model.user_biases[row]) if known else 0.0
    return vector, bias


def rescore_user(user_id) -> int:
    """Recompute one customer's list in the live run from its stored artifact (no retrain).

    What the customer owns now (e.g. the books just bought) is left out, and new books reach
    them as they reach everyone.  Returns the number of rows written (0: nothing to do).
    """
    run = TrainingRun.objects.live().only("pk", "artifact", "artifact_record", "decision").first()
    if run is None or not run.artifact or run.decision == TrainingRun.Decision.POPULARITY:
        cache.user_changed(user_id)
        return 0
    model = _live_model(run)
    if model is None:  # the artifact no longer loads: keep serving the stored list
        cache.user_changed(user_id)
        return 0
    if model.on_demand(int(model.users.index([user_id])[0])):
        # Scored when they ask (ACTIVE_DAYS), what they bought left out by the read query:
        # their cached list is dropped, and no stored list is written.
        cache.user_changed(user_id)
        return 0
    items = model.items
    owned, history, weights = [], [], []
    for source in sources.sources():
        raw = source.read_user(user_id)
        rows = items.index(raw.items)
        known = rows >= 0
        if source.exclude:
            owned.append(rows[known])
        scale = model.scales.get(raw.name, raw.scale)
        if scale <= 0:
            continue
        history.append(rows[known])
        weights.append(
            SourceData(raw.name, rows[known], rows[known], raw.values[known], raw.times[known],
                       scale=scale, transform=raw.transform).weights()
        )  # fmt: skip
    history_rows = np.concatenate(history) if history else np.empty(0, np.int64)
    history_w = np.concatenate(weights) if weights else np.empty(0)
    row = int(model.users.index([user_id])[0])
    folded = _fold_in(model, row, history_rows, history_w)
    if folded is None:
        cache.user_changed(user_id)
        return 0
    vector, bias = folded
    n_items = len(items)
    owned_rows = np.concatenate(owned) if owned else np.empty(0, np.int64)
    exclude = sp.csr_matrix((np.ones(owned_rows.size, np.float32), (np.zeros(owned_rows.size, np.int64), owned_rows)),
                            shape=(1, n_items))  # fmt: skip
    profiles = None
    if model.tower is not None:
        hist = sp.csr_matrix((history_w.astype(np.float32), (np.zeros(history_rows.size, np.int64), history_rows)),
                             shape=(1, n_items))  # fmt: skip
        profiles = model.tower.profiles(hist)
    ((_, item_rows, scores),) = serving.personal_lists(
        vector[None, :], np.array([bias], np.float32), model.item_vectors, model.item_biases,
        k=app_settings.LIST_SIZE, allowed=model.allowed, new_rows=model.new_rows, how=model.how, exclude=exclude,
        tower=model.tower, profiles=profiles, calibration=model.calibration, threads=1,
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


# -- customers without a stored list (ACTIVE_DAYS) ---------------------------------------------
def on_demand_picks(run_id: int, artifact: str, record: dict, user_id) -> tuple[np.ndarray, np.ndarray] | None:
    """``(item keys, scores)``, best first, of a customer the live run knows but stored no list
    for (``ACTIVE_DAYS``), from the run's model held in this process; None for anyone else.

    What they owned at the run is left out here; what they bought since, by the read query.
    Costs no query: the model is loaded once per run and process (``_live_model``).
    """
    if not artifact:
        return None
    model = _live_model(_ArtifactRef(run_id, artifact, record))
    if model is None or model.stored is None:
        return None
    row = int(model.users.index([user_id])[0])
    if not model.on_demand(row):
        return None
    exclude = model.owned[row]
    profiles = model.tower.profiles(exclude) if model.tower is not None else None
    ((_, item_rows, scores),) = serving.personal_lists(
        model.user_vectors[row : row + 1], model.user_biases[row : row + 1], model.item_vectors, model.item_biases,
        k=app_settings.LIST_SIZE, allowed=model.allowed, new_rows=model.new_rows, how=model.how, exclude=exclude,
        tower=model.tower, profiles=profiles, calibration=model.calibration, threads=1,
    )  # fmt: skip
    valid = item_rows[0] >= 0
    return model.items.key(item_rows[0][valid]), scores[0][valid]


@dataclass
class _ArtifactRef:
    """What ``_live_model`` reads of a run: enough to load its artifact without the run's row."""

    pk: int
    artifact: str
    artifact_record: dict
