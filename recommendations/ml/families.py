"""The model families the holdout chooses from, behind one interface, and their factors.

Every family ends in the same place: a vector per customer and per book, and a bias per
book, so that a score is ``user · item + item bias`` (+ the customer's bias, which does not
change their ranking).  Scoring, storing and rescoring never ask which family made them.

* ``lightfm``: LightFM (WARP or WARP-kOS), optionally with the books' metadata and the
  customers' history as features (:mod:`.train`).
* ``als``: implicit's alternating least squares on the weighted interactions (:mod:`.als`).
* ``blend``: two factor models at once, as one dot product over their concatenated,
  weighted factors (:func:`blend`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from .als import ALSHyper, ALSTrainer
from .matrices import Interactions, history_affinities, item_features, user_features
from .train import Hyper, WarmTrainer

FAMILIES = ("lightfm", "als")


@dataclass(frozen=True)
class Config:
    """One configuration: a family, its hyper-parameters, the sources' scales, the features.

    ``params`` are the family's hyper-parameters (LightFM's ``Hyper`` or ``ALSHyper`` fields)
    on top of the settings' defaults; ``epochs`` counts LightFM's epochs or ALS's iterations.
    A blend holds its parts and their weights in ``parts``.
    """

    name: str
    family: str = "lightfm"
    params: dict = field(default_factory=dict)
    source_scales: dict = field(default_factory=dict)
    item_metadata: bool = True
    history_features: bool = False
    parts: tuple = ()  # ((Config, weight), ...) of a blend

    def describe(self) -> dict:
        out = {"name": self.name, "family": self.family, "source_scales": dict(self.source_scales)}
        if self.family == "blend":
            out["parts"] = [{**cfg.describe(), "weight": round(float(w), 6)} for cfg, w in self.parts]
            return out
        out["params"] = dict(self.params)
        if self.family == "lightfm":
            out.update(item_metadata=self.item_metadata, history_features=self.history_features)
        return out


@dataclass
class Factors:
    """What scoring needs: float32 vectors and biases for customers and books.

    ``parts`` says which columns came from which family and how to fold in a customer the
    model has not seen (see ``services.rescore_user``); ``arrays`` holds what a family
    keeps besides (LightFM's per-feature vectors).
    """

    user_vectors: np.ndarray
    user_biases: np.ndarray
    item_vectors: np.ndarray
    item_biases: np.ndarray
    parts: list = field(default_factory=list)
    arrays: dict = field(default_factory=dict)

    @property
    def dims(self) -> int:
        return int(self.item_vectors.shape[1])


class Trainer:
    """A family's model on one set of interactions, trained a stretch at a time."""

    epochs: int

    def advance(self, epochs: int) -> None:  # pragma: no cover - interface
        raise NotImplementedError

    def factors(self) -> Factors:  # pragma: no cover - interface
        raise NotImplementedError


class LightFMTrainer(Trainer):
    def __init__(self, inter: Interactions, metadata: sp.csr_matrix, attributes, config: Config, hyper: Hyper,
                 max_history_features: int) -> None:  # fmt: skip
        self.hyper = hyper.with_(**{k: v for k, v in config.params.items() if k in Hyper.__dataclass_fields__})
        warm = np.bincount(inter.item, minlength=inter.n_items) > 0
        meta = metadata if config.item_metadata and metadata.shape[1] else None
        ifeat = item_features(meta, warm)
        history = None
        if config.history_features and metadata.shape[1]:
            history = history_affinities(inter.matrix(), metadata, keep=max_history_features)
        ufeat = user_features(inter.n_users, attributes, history)
        self.inner = WarmTrainer(inter, ufeat, ifeat, self.hyper)
        self.epochs = 0

    def advance(self, epochs: int) -> None:
        self.inner.advance(epochs)
        self.epochs = self.inner.epochs

    def factors(self) -> Factors:
        reps = self.inner.representations()
        return Factors(
            reps.user_vectors, reps.user_biases, reps.item_vectors, reps.item_biases,
            parts=[{"family": "lightfm", "start": 0, "stop": int(reps.item_vectors.shape[1]), "weight": 1.0}],
            arrays={
                "user_feature_vectors": reps.user_feature_vectors,
                "user_feature_biases": reps.user_feature_biases,
                "item_feature_vectors": reps.item_feature_vectors,
                "item_feature_biases": reps.item_feature_biases,
            },
        )  # fmt: skip


class ALSFamilyTrainer(Trainer):
    def __init__(self, inter: Interactions, config: Config, hyper: ALSHyper) -> None:
        self.hyper = hyper.with_(**{k: v for k, v in config.params.items() if k in ALSHyper.__dataclass_fields__})
        self.inner = ALSTrainer(inter, self.hyper)
        self.epochs = 0

    def advance(self, epochs: int) -> None:
        self.inner.advance(epochs)
        self.epochs = self.inner.epochs

    def factors(self) -> Factors:
        users, items = self.inner.vectors()
        fold = {k: getattr(self.hyper, k) for k in ("factors", "regularization", "alpha")}
        return Factors(
            users, np.zeros(users.shape[0], np.float32), items, np.zeros(items.shape[0], np.float32),
            parts=[{"family": "als", "start": 0, "stop": int(items.shape[1]), "weight": 1.0, **fold}],
        )  # fmt: skip


def blend(parts: list[tuple[Factors, float]]) -> Factors:
    """One factor model from several: concatenated vectors, each part's scaled by its weight
    (on the customer's side), biases summed with the same weights.  Its scores are the
    weighted sums of the parts' scores."""
    users, items, ubias, ibias, meta, arrays = [], [], 0.0, 0.0, [], {}
    start = 0
    for i, (f, w) in enumerate(parts):
        users.append(f.user_vectors * np.float32(w))
        items.append(f.item_vectors)
        ubias = ubias + f.user_biases * np.float32(w)
        ibias = ibias + f.item_biases * np.float32(w)
        for p in f.parts:
            meta.append({**p, "start": start + p["start"], "stop": start + p["stop"], "weight": p["weight"] * float(w)})
        arrays.update({f"part{i}_{k}": v for k, v in f.arrays.items()})
        start += f.dims
    return Factors(
        np.ascontiguousarray(np.hstack(users), dtype=np.float32), np.asarray(ubias, np.float32),
        np.ascontiguousarray(np.hstack(items), dtype=np.float32), np.asarray(ibias, np.float32),
        parts=meta, arrays=arrays,
    )  # fmt: skip


def score_spread(f: Factors, users: np.ndarray, rng: np.random.Generator, sample: int = 256) -> float:
    """The standard deviation of a sample of ``f``'s scores: what puts two families' scores on
    one footing before they are blended."""
    users = np.asarray(users)
    pick_u = users if users.size <= sample else rng.choice(users, sample, replace=False)
    n_items = f.item_vectors.shape[0]
    pick_i = np.arange(n_items) if n_items <= 4 * sample else rng.choice(n_items, 4 * sample, replace=False)
    s = f.user_vectors[pick_u] @ f.item_vectors[pick_i].T + f.item_biases[pick_i][None, :]
    spread = float(np.std(s))
    return spread if np.isfinite(spread) and spread > 0 else 1.0
