"""Candidate selection on a time holdout, then a refit on all data.

``train(data, settings)`` is everything between "arrays from the database" and "vectors to
score with": it builds the matrices of each candidate configuration, trains it on the
older part of each customer's history, measures it on the most recent part against a
popularity baseline, keeps the best, and refits that one on everything.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from . import evaluate as ev
from .ids import IdMap, distinct
from .matrices import DataError, Interactions, combine, history_affinities, item_features, user_features
from .scoring import popularity
from .train import Hyper, Representations, WarmTrainer, fit_warm, representations

logger = logging.getLogger(__name__)


@dataclass
class SourceData:
    """One interaction source as matrix rows: who, what, how much (before scaling), when."""

    name: str
    user: np.ndarray
    item: np.ndarray
    value: np.ndarray
    time: np.ndarray
    scale: float = 1.0
    transform: str = "log1p"  # or "linear"

    def weights(self, scale: float | None = None) -> np.ndarray:
        v = np.asarray(self.value, dtype=np.float64)
        if not np.isfinite(v).all():
            bad = np.flatnonzero(~np.isfinite(v))
            raise DataError(
                f"Source {self.name!r}: {bad.size} weights are NaN or infinite "
                f"(first: user row {self.user[bad[0]]}, item row {self.item[bad[0]]})."
            )
        if (v < 0).any():
            raise DataError(f"Source {self.name!r}: {int((v < 0).sum())} weights are negative.")
        w = np.log2(1.0 + v) if self.transform == "log1p" else v
        return w * (self.scale if scale is None else scale)


@dataclass
class TrainingData:
    users: IdMap
    items: IdMap
    sources: list[SourceData]
    item_metadata: sp.csr_matrix  # (n_items, n_metadata), binary
    item_metadata_names: list[str]
    allowed: np.ndarray  # items that may be recommended
    user_attributes: sp.csr_matrix | None = None
    user_attribute_names: list[str] = field(default_factory=list)
    max_history_features: int = 20
    edges: dict = field(default_factory=dict)  # bucket edges of number features
    weight_clip_quantile: float = 0.99

    @property
    def n_users(self) -> int:
        return len(self.users)

    @property
    def n_items(self) -> int:
        return len(self.items)

    def interactions(self, scales: dict[str, float] | None = None) -> Interactions:
        scales = scales or {}
        parts = [s for s in self.sources if s.user.size]
        if not parts:
            return combine(np.empty(0), np.empty(0), np.empty(0), np.empty(0), self.n_users, self.n_items)
        inter = combine(
            np.concatenate([s.user for s in parts]),
            np.concatenate([s.item for s in parts]),
            np.concatenate([s.weights(scales.get(s.name)) for s in parts]),
            np.concatenate([s.time for s in parts]),
            self.n_users,
            self.n_items,
        )
        # No single pair may weigh more than the heaviest 1 % of pairs do: one customer
        # reloading a page a million times is one strong interest, not a million.
        if len(inter) and self.weight_clip_quantile < 1:
            cap = np.quantile(inter.weight, self.weight_clip_quantile)
            inter.weight = np.minimum(inter.weight, cap).astype(np.float32)
        return inter


@dataclass(frozen=True)
class Candidate:
    """One configuration the holdout may choose."""

    name: str
    item_metadata: bool = True
    history_features: bool = False
    source_scales: dict = field(default_factory=dict)
    hyper: dict = field(default_factory=dict)


@dataclass
class EvaluationSettings:
    enabled: bool = True
    k: int = 10
    holdout: float = 0.2
    min_interactions: int = 3
    max_users: int = 10000
    metric: str = "precision"
    min_users: int = 10
    checkpoints: tuple[float, ...] = (0.5, 1.0)  # shares of the epochs evaluated per candidate


@dataclass
class TrainResult:
    reps: Representations
    user_features: sp.csr_matrix
    item_features: sp.csr_matrix
    interactions: Interactions
    candidate: Candidate
    hyper: Hyper
    decision: str  # "model", "popularity" or "model (not evaluated)"
    metrics: dict
    item_feature_names: list[str]
    user_feature_names: list[str]
    seconds: dict[str, float]


def matrices_for(
    data: TrainingData, inter: Interactions, candidate: Candidate
) -> tuple[sp.csr_matrix, sp.csr_matrix, list[str], list[str]]:
    """User and item feature matrices of ``candidate``, built from ``inter`` only."""
    warm = np.bincount(inter.item, minlength=data.n_items) > 0
    meta = data.item_metadata if candidate.item_metadata else None
    ifeat = item_features(meta, warm)
    inames = [f"item={k}" for k in data.items.keys.tolist()] + (data.item_metadata_names if meta is not None else [])
    history = None
    unames = [f"user={k}" for k in data.users.keys.tolist()] + list(data.user_attribute_names)
    if candidate.history_features and data.item_metadata.shape[1]:
        history = history_affinities(inter.matrix(), data.item_metadata, keep=data.max_history_features)
        unames += [f"history:{n}" for n in data.item_metadata_names]
    ufeat = user_features(data.n_users, data.user_attributes, history)
    return ufeat, ifeat, unames, inames


def train(
    data: TrainingData,
    hyper: Hyper,
    candidates: list[Candidate],
    settings: EvaluationSettings,
    *,
    progress: Callable[[str, float], None] | None = None,
) -> TrainResult:
    """Choose a candidate on the time holdout (when enabled and possible), refit it on all data."""
    if not candidates:
        raise ValueError("at least one candidate configuration is needed")
    progress = progress or (lambda stage, share: None)
    seconds: dict[str, float] = {}
    base = data.interactions()
    if len(base) == 0:
        raise DataError("There are no interactions to train on.")
    metrics: dict = {"k": settings.k, "candidates": []}
    chosen, epochs, decision = candidates[0], hyper.epochs, "model (not evaluated)"

    started = time.perf_counter()
    if settings.enabled:
        test_mask = ev.time_split(base, holdout=settings.holdout, min_interactions=settings.min_interactions)
        test = base.subset(test_mask)
        eval_users = distinct(test.user)
        if eval_users.size >= settings.min_users and data.allowed.any():
            chosen, epochs, decision = _select(
                data, hyper, candidates, settings, test_mask, eval_users, metrics, progress
            )
        else:
            metrics["skipped"] = (
                f"only {eval_users.size} customers have enough history to hold out "
                f"(need {settings.min_users}); trained without evaluation"
            )
    seconds["evaluate"] = time.perf_counter() - started

    started = time.perf_counter()
    progress("fit", 0.0)
    final_hyper = hyper.with_(**chosen.hyper, epochs=epochs)
    inter = data.interactions(chosen.source_scales)
    ufeat, ifeat, unames, inames = matrices_for(data, inter, chosen)
    model = fit_warm(inter, ufeat, ifeat, final_hyper, on_epoch=lambda e: progress("fit", e / final_hyper.epochs), steps=5)
    reps = representations(model, ufeat, ifeat)
    seconds["fit"] = time.perf_counter() - started
    metrics["chosen"] = {"candidate": chosen.name, "epochs": epochs}
    metrics["decision"] = decision
    return TrainResult(
        reps=reps,
        user_features=ufeat,
        item_features=ifeat,
        interactions=inter,
        candidate=chosen,
        hyper=final_hyper,
        decision=decision,
        metrics=metrics,
        item_feature_names=inames,
        user_feature_names=unames,
        seconds=seconds,
    )


def _select(data, hyper, candidates, settings, test_mask, eval_users, metrics, progress):
    rng = np.random.default_rng(hyper.random_state)
    if eval_users.size > settings.max_users:
        eval_users = np.sort(rng.choice(eval_users, size=settings.max_users, replace=False))
    k = settings.k
    key = f"{settings.metric}@{k}" if settings.metric != "auc" else "auc"

    # Popularity on the same split: distinct customers per book in the training part.
    base = data.interactions()
    train_part, test_part = base.subset(~test_mask), base.subset(test_mask)
    train_matrix, test_matrix = train_part.matrix(), test_part.matrix()
    pop = popularity(train_part.user, train_part.item, data.n_items)
    baseline = ev.evaluate(
        np.ones((data.n_users, 1), np.float32), np.zeros((data.n_items, 1), np.float32), pop,
        train_matrix, test_matrix, k=k, users=eval_users, allowed=data.allowed,
    )  # fmt: skip
    metrics["popularity"] = baseline.as_dict(k)
    metrics["holdout"] = {
        "share": settings.holdout,
        "held_out_pairs": int(test_mask.sum()),
        "evaluated_users": int(eval_users.size),
    }

    # Successive halving: every candidate trains to the first checkpoint; the better half
    # goes on to the next, and so on; a candidate whose metric fell since its last
    # checkpoint (it is overfitting) stops there.  The best (candidate, epochs) seen wins.
    trainers: dict[int, WarmTrainer] = {}
    last_score: dict[int, float] = {}
    best = None
    plans = []
    for i, cand in enumerate(candidates):
        cand_hyper = hyper.with_(**cand.hyper)
        plans.append(sorted({max(1, int(round(s * cand_hyper.epochs))) for s in settings.checkpoints}))
    total = sum(plan[-1] for plan in plans) or 1
    done = 0
    alive = list(range(len(candidates)))
    for step in range(max(len(p) for p in plans)):
        scores = {}
        for i in alive:
            if step >= len(plans[i]):
                continue
            cand = candidates[i]
            if i not in trainers:
                inter = data.interactions(cand.source_scales)
                if not np.array_equal(inter.user, base.user) or not np.array_equal(inter.item, base.item):
                    raise ValueError(f"candidate {cand.name!r}: every source scale must be positive")
                train_i = inter.subset(~test_mask)
                ufeat, ifeat, _, _ = matrices_for(data, train_i, cand)
                trainers[i] = WarmTrainer(train_i, ufeat, ifeat, hyper.with_(**cand.hyper))
            trainer = trainers[i]
            started = time.perf_counter()
            before = trainer.epochs
            trainer.advance(plans[i][step])
            done += trainer.epochs - before
            progress("evaluate", done / total)
            reps = trainer.representations()
            m = ev.evaluate(
                reps.user_vectors, reps.item_vectors, reps.item_biases, train_matrix, test_matrix,
                k=k, users=eval_users, allowed=data.allowed,
            )  # fmt: skip
            row = {"candidate": cand.name, "epochs": trainer.epochs, **m.as_dict(k),
                   "seconds": round(time.perf_counter() - started, 3)}  # fmt: skip
            metrics["candidates"].append(row)
            logger.info("candidate %s @%d epochs: %s=%.4f", cand.name, trainer.epochs, key, row[key])
            if best is None or row[key] > best[0][key]:
                best = (row, cand, trainer.epochs)
            scores[i] = row[key]
        ranked = sorted(scores, key=lambda i: (-scores[i], i))
        keep = ranked[: max(1, (len(ranked) + 1) // 2)]
        alive = [i for i in keep if scores[i] >= last_score.get(i, -np.inf)]
        last_score.update(scores)
        for i in list(trainers):
            if i not in alive:
                del trainers[i]  # free its model and matrices
        if not alive:
            break
    row, cand, epoch = best
    metrics["model"] = {kk: v for kk, v in row.items() if kk not in {"candidate", "epochs", "seconds"}}
    if row[key] <= metrics["popularity"][key]:
        return cand, epoch, "popularity"
    return cand, epoch, "model"
