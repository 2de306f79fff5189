"""Alternating least squares from the ``implicit`` library, the only module that imports it.

ALS factorises the confidence matrix ``alpha × weight`` (Hu, Koren and Volinsky, 2008):
every customer and every book gets a vector, and a score is their dot product, so its
factors go through the same scoring, storing and rescoring path as LightFM's (with zero
item biases).  A customer the model has not seen is folded in exactly as training would
have solved for them (:func:`fold_in`), from their history and the stored item vectors.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace

import numpy as np
import scipy.sparse as sp

from .matrices import DataError, Interactions


@dataclass(frozen=True)
class ALSHyper:
    """``implicit.als.AlternatingLeastSquares`` parameters and the number of iterations."""

    factors: int = 64
    regularization: float = 1.0
    alpha: float = 1.0
    iterations: int = 15
    num_threads: int = 0  # 0: every core (each customer's solve is independent: deterministic)
    random_state: int = 42

    def with_(self, **changes) -> ALSHyper:
        return replace(self, **changes)

    def as_dict(self) -> dict:
        return asdict(self)


@contextmanager
def _one_blas_thread():
    """implicit runs its own threads; a multithreaded BLAS under them only contends (and
    implicit warns about it at construction), so BLAS is held to one thread meanwhile."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        yield


def _model(hyper: ALSHyper):
    from implicit.cpu.als import AlternatingLeastSquares

    return AlternatingLeastSquares(
        factors=hyper.factors,
        regularization=hyper.regularization,
        alpha=hyper.alpha,
        iterations=hyper.iterations,
        num_threads=hyper.num_threads,
        random_state=hyper.random_state,
        calculate_training_loss=False,
    )


class ALSTrainer:
    """ALS on the interactions' weights, trained a stretch of iterations at a time.

    ``advance(n)`` continues up to ``n`` iterations in total (implicit's ``fit`` keeps the
    factors it already has), so the search can look at the model between stretches.
    """

    family = "als"

    def __init__(self, interactions: Interactions, hyper: ALSHyper) -> None:
        weights = np.asarray(interactions.weight, dtype=np.float32)
        if weights.size and not np.isfinite(weights).all():
            raise DataError(f"interaction weights: {int((~np.isfinite(weights)).sum())} values are NaN or infinite.")
        self.matrix = sp.csr_matrix(
            (weights, (interactions.user, interactions.item)),
            shape=(interactions.n_users, interactions.n_items), dtype=np.float32,
        )  # fmt: skip
        self.hyper = hyper
        with _one_blas_thread():
            self.model = _model(hyper)
        self.epochs = 0

    def advance(self, iterations: int) -> None:
        if iterations <= self.epochs:
            return
        self.model.iterations = iterations - self.epochs
        with _one_blas_thread():
            self.model.fit(self.matrix, show_progress=False)
        for name in ("user_factors", "item_factors"):
            if not np.isfinite(getattr(self.model, name)).all():
                raise DataError(
                    f"Not all estimated parameters are finite (ALS {name}); "
                    f"try a larger regularization than {self.hyper.regularization}."
                )
        self.epochs = iterations

    def vectors(self) -> tuple[np.ndarray, np.ndarray]:
        """User and item factors (float32, C-contiguous)."""
        users = np.ascontiguousarray(self.model.user_factors, dtype=np.float32)
        items = np.ascontiguousarray(self.model.item_factors, dtype=np.float32)
        return users, items


def fold_in(item_vectors: np.ndarray, items: np.ndarray, weights: np.ndarray, hyper: dict) -> np.ndarray:
    """The vector ALS would give a customer with ``weights`` on ``items``, the item factors
    fixed: implicit's own least-squares solve for one user (``recalculate_user``)."""
    model = _model(ALSHyper(**{k: v for k, v in hyper.items() if k in ALSHyper.__dataclass_fields__}))
    model.item_factors = np.ascontiguousarray(item_vectors, dtype=np.float32)
    row = sp.csr_matrix(
        (np.asarray(weights, np.float32), (np.zeros(len(items), np.int64), np.asarray(items, np.int64))),
        shape=(1, item_vectors.shape[0]),
    )
    row.sum_duplicates()
    with _one_blas_thread():
        return np.asarray(model.recalculate_user(0, row), dtype=np.float32)
