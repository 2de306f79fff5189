"""Every customer's list as it is served: the model's books and the new books, on one scale.

Three ways a new book (allowed, never bought nor viewed) can reach a list, recorded as the
run's ``mode``:

* ``calibrated``: the metadata tower picks each customer's best new books, the calibration
  puts them on the model's scale, and at most ``max_share`` of the slots go to them
  (:mod:`.coldstart`);
* ``model``: without a calibration (no cold-item holdout: too little data, or evaluation
  off), a LightFM model with metadata scores new books from their features, as it scores
  any book;
* ``none``: a model that cannot represent them (ALS, or LightFM without metadata) and no
  calibration: new books are left out of personal lists rather than ranked on zero vectors.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import scipy.sparse as sp

from . import coldstart
from .coldstart import Calibration, ContentTower
from .scoring import score_users


def mode(new_rows: np.ndarray, calibration: Calibration | None, represents_new: bool, max_share: float) -> str:
    if new_rows.size and calibration is not None and calibration.usable and max_share > 0:
        return "calibrated"
    if calibration is not None and calibration.usable:
        return "none"  # the holdout chose to give new books no slots
    return "model" if represents_new else "none"


def personal_lists(
    user_vectors: np.ndarray,
    user_biases: np.ndarray,
    item_vectors: np.ndarray,
    item_biases: np.ndarray,
    *,
    k: int,
    allowed: np.ndarray,
    new_rows: np.ndarray,
    how: str,
    exclude: sp.csr_matrix | None = None,
    tower: ContentTower | None = None,
    profiles: sp.csr_matrix | None = None,
    calibration: Calibration | None = None,
    users: np.ndarray | None = None,
    batch: int = 2048,
    threads: int | None = None,
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Yield ``(user_rows, item_rows, scores)`` chunk by chunk, as :func:`~.scoring.score_users`
    does, with new books mixed in as ``how`` (a :func:`mode`) says.

    ``profiles`` are the tower's rows of the same users as ``user_vectors``.  Scores include
    the customer's bias; a new book's score is the model's score with the same chance of a
    purchase.
    """
    warm_allowed = np.asarray(allowed, bool).copy()
    if how != "model":
        warm_allowed[new_rows] = False
    max_new = coldstart.slots(calibration.max_share, k) if how == "calibrated" and calibration is not None else 0
    for rows, items, scores in score_users(
        user_vectors, user_biases, item_vectors, item_biases,
        k=k, allowed=warm_allowed, exclude=exclude, users=users, batch=batch, threads=threads,
    ):  # fmt: skip
        if max_new and tower is not None and profiles is not None:
            bias = user_biases[rows, None]
            new_items, new_scores = coldstart.top_new(tower, profiles[rows], new_rows, max_new, exclude=exclude, users=rows)
            mapped = np.where(new_items >= 0, calibration.to_warm(new_scores), -np.inf)
            warm = np.where(items >= 0, scores - bias, -np.inf)
            items, merged = coldstart.merge(items, warm, new_items, mapped, items.shape[1], max_new)
            scores = np.where(items >= 0, merged + bias, 0.0).astype(np.float32)
        yield rows, items, scores
