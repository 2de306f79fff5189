"""Training with LightFM, the only module that imports ``lightfm``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, replace

import numpy as np
import scipy.sparse as sp

from .matrices import DataError, Interactions


class ModelDiverged(DataError):
    """Training produced non-finite parameters."""


@dataclass(frozen=True)
class Hyper:
    """LightFM hyper-parameters (see ``lightfm.LightFM``) and the number of epochs."""

    loss: str = "warp"
    no_components: int = 32
    learning_rate: float = 0.05
    item_alpha: float = 1e-6
    user_alpha: float = 1e-6
    max_sampled: int = 10
    epochs: int = 20
    num_threads: int = 1
    random_state: int = 42

    def with_(self, **changes) -> Hyper:
        return replace(self, **changes)

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class Representations:
    """What scoring needs: dense float32 vectors and biases for users and items."""

    user_vectors: np.ndarray
    user_biases: np.ndarray
    item_vectors: np.ndarray
    item_biases: np.ndarray
    # Per-feature parameters, to represent users or items that arrive after training.
    user_feature_vectors: np.ndarray
    user_feature_biases: np.ndarray
    item_feature_vectors: np.ndarray
    item_feature_biases: np.ndarray


def new_model(hyper: Hyper):
    from lightfm import LightFM

    return LightFM(
        no_components=hyper.no_components,
        loss=hyper.loss,
        learning_rate=hyper.learning_rate,
        item_alpha=hyper.item_alpha,
        user_alpha=hyper.user_alpha,
        max_sampled=hyper.max_sampled,
        random_state=np.random.RandomState(hyper.random_state),
    )


def representations(model, user_features: sp.csr_matrix, item_features: sp.csr_matrix) -> Representations:
    """Users' and items' vectors and biases: feature rows times per-feature parameters.

    ``item_features`` may have more rows than the model was trained on (books without
    interactions, see :func:`fit_warm`); features that no trained row uses keep a zero
    vector and bias instead of their random initial values.
    """
    uf_vec = np.asarray(model.user_embeddings, dtype=np.float32)
    uf_bias = np.asarray(model.user_biases, dtype=np.float32)
    if_vec = np.asarray(model.item_embeddings, dtype=np.float32).copy()
    if_bias = np.asarray(model.item_biases, dtype=np.float32).copy()
    trained = getattr(model, "trained_item_features_", None)
    if trained is not None:
        if_vec[~trained] = 0.0
        if_bias[~trained] = 0.0
    for name, values in (("user", uf_vec), ("item", if_vec), ("user bias", uf_bias), ("item bias", if_bias)):
        if not np.isfinite(values).all():
            raise ModelDiverged(f"Not all estimated parameters are finite ({name} parameters); the model diverged.")
    return Representations(
        user_vectors=np.asarray(user_features @ uf_vec, dtype=np.float32),
        user_biases=np.asarray(user_features @ uf_bias, dtype=np.float32),
        item_vectors=np.asarray(item_features @ if_vec, dtype=np.float32),
        item_biases=np.asarray(item_features @ if_bias, dtype=np.float32),
        user_feature_vectors=uf_vec,
        user_feature_biases=uf_bias,
        item_feature_vectors=if_vec,
        item_feature_biases=if_bias,
    )


class WarmTrainer:
    """LightFM trained on the items that have interactions only, one stretch at a time.

    WARP samples its negatives among all the items it is given; a book nobody has bought
    yet would be everybody's negative, and the features only it carries (a new author)
    would learn to push it down: new books would never be recommended.  So cold books stay
    out of training and get their representation afterwards, from the features they share
    with trained books (:meth:`representations`).

    ``advance(epochs)`` continues training up to ``epochs`` in total, so a caller can look
    at the model between stretches (and stop early).
    """

    def __init__(self, interactions: Interactions, user_features: sp.csr_matrix, item_features: sp.csr_matrix,
                 hyper: Hyper) -> None:  # fmt: skip
        check_finite("user features", user_features.data)
        check_finite("item features", item_features.data)
        check_finite("interaction weights", interactions.weight)
        warm = np.bincount(interactions.item, minlength=interactions.n_items) > 0
        warm_rows = np.flatnonzero(warm)
        remap = np.full(interactions.n_items, -1, dtype=np.int64)
        remap[warm_rows] = np.arange(warm_rows.size)
        warm_inter = Interactions(
            interactions.user, remap[interactions.item], interactions.weight, interactions.time,
            interactions.n_users, int(warm_rows.size),
        )  # fmt: skip
        self.matrix, self.weights = warm_inter.for_lightfm()
        self.user_features = user_features
        self.item_features = item_features
        self.warm_features = item_features[warm_rows]
        self.hyper = hyper
        self.model = new_model(hyper)
        self.model.trained_item_features_ = np.asarray(self.warm_features.getnnz(axis=0)).ravel() > 0
        self.epochs = 0

    def advance(self, epochs: int) -> None:
        if epochs <= self.epochs:
            return
        try:
            self.model.fit_partial(
                self.matrix,
                user_features=self.user_features,
                item_features=self.warm_features,
                # k-OS ranks by the k-th positive and takes no weights (LightFM refuses them).
                sample_weight=None if self.hyper.loss == "warp-kos" else self.weights,
                epochs=epochs - self.epochs,
                num_threads=self.hyper.num_threads,
            )
        except ValueError as exc:
            if "finite" in str(exc):
                raise ModelDiverged(
                    f"Training diverged before epoch {epochs}: {exc} "
                    f"(learning rate {self.hyper.learning_rate}; try a smaller one)."
                ) from exc
            raise
        self.epochs = epochs

    def representations(self) -> Representations:
        return representations(self.model, self.user_features, self.item_features)


def fit_warm(
    interactions: Interactions,
    user_features: sp.csr_matrix,
    item_features: sp.csr_matrix,
    hyper: Hyper,
    *,
    on_epoch: Callable[[int], None] | None = None,
    steps: int = 1,
):
    """Train a :class:`WarmTrainer` for ``hyper.epochs`` epochs (reporting ``steps`` times) and
    return its model."""
    trainer = WarmTrainer(interactions, user_features, item_features, hyper)
    marks = sorted({max(1, round(hyper.epochs * (i + 1) / steps)) for i in range(steps)})
    for epoch in marks:
        trainer.advance(epoch)
        if on_epoch:
            on_epoch(epoch)
    return trainer.model


def check_finite(what: str, values: np.ndarray) -> None:
    values = np.asarray(values)
    if values.size and not np.isfinite(values).all():
        bad = int((~np.isfinite(values)).sum())
        raise DataError(f"{what}: {bad} values are NaN or infinite.")
