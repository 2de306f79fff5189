"""``retrain()``: extract → build → evaluate → fit → score → store, the one entry point.

Each stage is timed and recorded on the :class:`~recommendations.models.TrainingRun`; the
run's lists are written and switched live in one transaction, so a failure anywhere leaves
the previous run serving.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
from contextlib import contextmanager

import numpy as np
from django.db import transaction
from django.utils import timezone

from . import sources, storage
from .conf import app_settings
from .ml.matrices import DataError
from .ml.pipeline import Candidate, EvaluationSettings, TrainResult, train
from .ml.scoring import popularity, score_users, similar_items, top_popular
from .ml.train import Hyper
from .models import ListKind, TrainingRun

logger = logging.getLogger(__name__)


class NotEnoughData(Exception):
    """Nothing sensible can be trained; the run says why and the live run stays."""


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


def start_run(*, trigger: str = "", user=None) -> TrainingRun:
    return TrainingRun.objects.create(trigger=trigger, requested_by=user if getattr(user, "pk", None) else None)


def retrain(*, run: TrainingRun | None = None, evaluate: bool | None = None, trigger: str = "sync", user=None) -> TrainingRun:
    """Train, score and publish a new run; return it (check ``run.status``).

    Never raises for a failed run: the error is on the run, and the previous live run
    stays live.  ``evaluate=False`` skips the holdout and trains the first candidate.
    """
    run = run or start_run(trigger=trigger, user=user)
    now = timezone.now()
    run.status, run.started, run.heartbeat, run.error = TrainingRun.Status.RUNNING, now, now, ""
    run.save(update_fields=["status", "started", "heartbeat", "error"])
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
            with transaction.atomic():
                counts = _store(run, data, lists)
                run.counts.update(counts)
                storage.publish(run)
                now = timezone.now()
                run.status, run.stage, run.progress, run.finished, run.artifact = (
                    TrainingRun.Status.SUCCEEDED, "done", 1.0, now, artifact,
                )  # fmt: skip
                run.stage_seconds = rec.seconds
                run.save()
        storage.prune()
        logger.info("Run #%s is live: %s", run.pk, json.dumps(run.metrics.get("model") or {}))
    except NotEnoughData as exc:
        _fail(run, rec, TrainingRun.Status.NOT_ENOUGH_DATA, str(exc), artifact)
    except DataError as exc:
        _fail(run, rec, TrainingRun.Status.FAILED, str(exc), artifact)
    except Exception as exc:
        if type(exc).__name__ == "SoftTimeLimitExceeded":
            _fail(run, rec, TrainingRun.Status.TIMED_OUT, "The retrain hit its time limit and was stopped.", artifact)
            raise
        logger.exception("Run #%s failed", run.pk)
        _fail(run, rec, TrainingRun.Status.FAILED, f"{type(exc).__name__}: {exc}", artifact)
    return run


def _fail(run: TrainingRun, rec: _Recorder, status: str, message: str, artifact: str) -> None:
    logger.warning("Run #%s %s: %s", run.pk, status, message)
    storage.delete_artifact(artifact)
    storage.discard_rows(run)
    run.status, run.error, run.finished = status, message, timezone.now()
    run.stage_seconds, run.is_live, run.artifact = rec.seconds, False, ""
    run.save()


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


def _store(run: TrainingRun, data, lists: dict) -> dict:
    counts = {}
    if "personal" in lists:
        item_rows, scores = lists["personal"]
        keys = data.items.key(np.maximum(item_rows, 0))
        counts["recommendations"] = storage.store_personal(run, data.users.keys, keys, scores, item_rows >= 0)
    else:
        counts["recommendations"] = 0
    sim_rows, sim_scores = lists["similar"]
    sim_keys = data.items.key(np.maximum(sim_rows, 0))
    counts["similar_items"] = storage.store_similar(run, data.items.keys, sim_keys, sim_scores, sim_rows >= 0)
    counts["popular_items"] = 0
    for kind in (ListKind.POPULAR.value, ListKind.RECENT.value):
        if kind in lists:
            rows, scores = lists[kind]
            counts["popular_items"] += storage.store_popular(run, kind, data.items.key(rows), scores)
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
