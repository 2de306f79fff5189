"""New books (no sales, no views yet): scored from their metadata, put on the served model's scale.

A collaborative model knows nothing of a book nobody has touched, and the usual hybrid
(identity plus metadata) dilutes a new book's metadata and ranks it on a scale of its own.
So new books get a tower of their own and a calibration:

* :class:`ContentTower` scores a book for a customer by the cosine between the book's
  metadata (tf-idf weighted: a shared author says more than a shared "fiction") and the
  customer's history in the same space.
* :class:`Calibration` turns scores into the chance that the customer buys the book, one
  monotone curve for the served model's scores (fitted on the time holdout) and one for the
  tower's (fitted on the cold-item holdout: books held out whole), by isotonic regression.
  A new book's score is then mapped to the served model's score that has the same chance,
  so new and known books are ranked on one scale (:func:`merge`), and at most
  ``max_share`` of a list's slots go to new books.  A ``boost`` added to new books' chances
  is what showing one is worth to the shop: the holdout picks the one that brings new books
  to the most buyers at a cost of at most ``NEW_ITEMS["max_loss"]`` of its precision.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from scipy.optimize import isotonic_regression

from .matrices import keep_top_per_row
from .scoring import top_k


def _l2_rows(m: sp.spmatrix) -> sp.csr_matrix:
    m = sp.csr_matrix(m, dtype=np.float32)
    norms = np.sqrt(np.asarray(m.multiply(m).sum(axis=1)).ravel())
    scale = np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0).astype(np.float32)
    return sp.csr_matrix(sp.diags(scale) @ m)


class ContentTower:
    """Customers and books in the space of the books' metadata.

    ``metadata`` is ``(n_items, n_features)`` binary; ``trained`` marks the books with
    interactions, from which the inverse document frequencies are counted.
    """

    # A customer's strongest metadata affinities kept (memory: customers × this).  Generous: an
    # author met once is weak beside "fiction" met fifty times, yet it is what finds the sequel.
    PROFILE_FEATURES = 512

    def __init__(self, metadata: sp.csr_matrix, trained: np.ndarray, names: list[str] | None = None) -> None:
        metadata = sp.csr_matrix(metadata, dtype=np.float32)
        n_trained = int(trained.sum())
        df = np.asarray((metadata[trained] > 0).sum(axis=0)).ravel()
        # A value every trained book has tells nothing (weight 0), a rare one much.  A value no
        # trained book has (a debut author) weighs what a typical value of its kind weighs: the
        # customer has not read that author, as for any author they have not read.  (No weight
        # at all measured three times worse on real data: a debut's genres alone then outrank
        # the sequel of a book the customer loved.)
        idf = np.log((1.0 + n_trained) / (1.0 + df)).astype(np.float32)
        kinds = np.array([n.split("=", 1)[0] for n in names]) if names is not None else np.zeros(idf.size, str)
        for kind in np.unique(kinds):
            of_kind = kinds == kind
            known = of_kind & (df > 0)
            idf[of_kind & (df == 0)] = idf[known].mean() if known.any() else 0.0
        self.idf = idf
        self.items = _l2_rows(metadata @ sp.diags(idf))

    @classmethod
    def from_arrays(cls, items: sp.csr_matrix, idf: np.ndarray) -> ContentTower:
        tower = cls.__new__(cls)
        tower.items, tower.idf = sp.csr_matrix(items, dtype=np.float32), np.asarray(idf, np.float32)
        return tower

    @property
    def usable(self) -> bool:
        return self.items.shape[1] > 0 and self.items.nnz > 0

    def profiles(self, weights: sp.csr_matrix) -> sp.csr_matrix:
        """``(n_users, n_features)``: each customer's history (``weights``, users × items) in
        metadata space, unit length."""
        return _l2_rows(keep_top_per_row(sp.csr_matrix(weights @ self.items), self.PROFILE_FEATURES))

    def scores(self, profiles: sp.csr_matrix, items: np.ndarray) -> np.ndarray:
        """Dense ``(n_profiles, len(items))`` cosines."""
        if len(items) == 0 or profiles.shape[0] == 0:
            return np.zeros((profiles.shape[0], len(items)), dtype=np.float32)
        return np.asarray((profiles @ self.items[items].T).toarray(), dtype=np.float32)

    def similar(self, rows: np.ndarray, candidates: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Each of ``rows``' ``k`` nearest ``candidates`` by metadata cosine (itself excluded);
        ``-1`` where fewer than ``k`` share any metadata."""
        if len(rows) == 0 or len(candidates) == 0 or k <= 0:
            return np.full((len(rows), k), -1, dtype=np.int64), np.zeros((len(rows), k), dtype=np.float32)
        sims = np.asarray((self.items[rows] @ self.items[candidates].T).toarray(), dtype=np.float32)
        sims[sims <= 0] = -np.inf
        sims[candidates[None, :] == np.asarray(rows)[:, None]] = -np.inf
        return _best(sims, candidates, k)


def _curve(scores: np.ndarray, hits: np.ndarray, per_bin: int = 10, max_bins: int = 200) -> tuple[np.ndarray, np.ndarray]:
    """Knots ``(x, p)`` of the isotonic (non-decreasing) hit rate as a function of the score.

    The scores are pooled into bins of equal counts first, about one per ``per_bin``
    purchases (at least 2, at most ``max_bins``): each knot then stands on enough purchases
    to mean something, and a small store gets a coarse curve rather than a noisy one.
    """
    scores = np.asarray(scores, np.float64).ravel()
    hits = np.asarray(hits, np.float64).ravel()
    ok = np.isfinite(scores)
    scores, hits = scores[ok], hits[ok]
    if scores.size == 0:
        return np.zeros(0), np.zeros(0)
    order = np.argsort(scores, kind="stable")
    scores, hits = scores[order], hits[order]
    bins = int(np.clip(hits.sum() // per_bin, 2, max_bins))
    edges = np.unique(np.linspace(0, scores.size, min(bins, scores.size) + 1).astype(np.int64))
    counts = np.diff(edges)
    x = np.add.reduceat(scores, edges[:-1]) / counts
    y = np.add.reduceat(hits, edges[:-1]) / counts
    p = isotonic_regression(y, weights=counts.astype(np.float64), increasing=True).x
    return x, p


@dataclass
class Calibration:
    """Two monotone curves, score → chance of a purchase, and the cap on new books' slots."""

    warm_x: np.ndarray
    warm_p: np.ndarray
    cold_x: np.ndarray
    cold_p: np.ndarray
    max_share: float = 0.0
    boost: float = 0.0  # added to a new book's chance: what showing a new book is worth to the shop

    @classmethod
    def fit(cls, warm_scores, warm_hits, cold_scores, cold_hits, max_share: float = 0.0, boost: float = 0.0) -> Calibration:
        wx, wp = _curve(warm_scores, warm_hits)
        cx, cp = _curve(cold_scores, cold_hits)
        return cls(wx, wp, cx, cp, max_share, boost)

    @property
    def usable(self) -> bool:
        return self.warm_x.size > 1 and self.cold_x.size > 0 and float(self.cold_p.max(initial=0)) > 0

    def cold_chance(self, scores: np.ndarray, boosted: bool = True) -> np.ndarray:
        # The boost is added: showing a new book is worth something whatever its chance (it
        # has no other way to be seen).  Books that share nothing with a customer's history
        # never get here (the tower leaves them out).
        return np.interp(scores, self.cold_x, self.cold_p) + (self.boost if boosted else 0.0)

    def warm_chance(self, scores: np.ndarray) -> np.ndarray:
        return np.interp(scores, self.warm_x, self.warm_p)

    def to_warm(self, cold_scores: np.ndarray) -> np.ndarray:
        """The served model's score with the same chance of a purchase as each new book's.

        Where the warm curve is flat (the data cannot tell those scores apart) a chance on
        the flat stretch maps to its middle.  Chances above every warm score's land above
        the highest warm score, and below them, below the lowest.
        """
        p = self.cold_chance(np.asarray(cold_scores, np.float64))
        levels, first = np.unique(self.warm_p, return_index=True)
        last = np.r_[first[1:], self.warm_p.size] - 1
        # np.unique sorts the levels; the curve is non-decreasing, so runs are contiguous.
        mid = (self.warm_x[first] + self.warm_x[last]) / 2.0
        lo_x, hi_x = float(self.warm_x[0]), float(self.warm_x[-1])
        spread = max(hi_x - lo_x, 1e-6)
        out = np.interp(p, levels, mid) if levels.size > 1 else np.full(p.shape, mid[0] if mid.size else 0.0)
        above, below = p > levels[-1], p < levels[0]
        # Beyond the curve, a chance moves the score at the curve's own pace (a flat curve, at
        # the pace of its level), so a chance just above every warm one lands just above them.
        span = max(float(levels[-1] - levels[0]), 0.5 * float(levels[-1]), 1e-9)
        out = np.where(above, hi_x + spread * (p - levels[-1]) / span, out)
        out = np.where(below, lo_x - spread * (levels[0] - p) / span - spread, out)
        return out.astype(np.float32)

    def as_arrays(self) -> dict[str, np.ndarray]:
        return {
            "calibration_warm_x": self.warm_x.astype(np.float64),
            "calibration_warm_p": self.warm_p.astype(np.float64),
            "calibration_cold_x": self.cold_x.astype(np.float64),
            "calibration_cold_p": self.cold_p.astype(np.float64),
            "calibration_max_share": np.asarray(self.max_share, dtype=np.float64),
            "calibration_boost": np.asarray(self.boost, dtype=np.float64),
        }

    @classmethod
    def from_arrays(cls, arrays: dict) -> Calibration | None:
        try:
            return cls(
                np.asarray(arrays["calibration_warm_x"], np.float64), np.asarray(arrays["calibration_warm_p"], np.float64),
                np.asarray(arrays["calibration_cold_x"], np.float64), np.asarray(arrays["calibration_cold_p"], np.float64),
                float(arrays["calibration_max_share"]), float(arrays.get("calibration_boost", 0.0)),
            )  # fmt: skip
        except KeyError:
            return None


def slots(max_share: float, length: int) -> int:
    """How many of ``length`` slots new books may take at most."""
    return int(np.floor(max(0.0, min(1.0, max_share)) * length + 0.5))


def merge(warm_items: np.ndarray, warm_scores: np.ndarray, new_items: np.ndarray, new_scores: np.ndarray,
          length: int, max_new: int, *, extra: tuple[np.ndarray, np.ndarray] | None = None):  # fmt: skip
    """Each row's best ``length`` of its known books (``warm_*``, best first, ``-1`` padding)
    and its best ``max_new`` new books (``new_*``, best first, already on the warm scale).

    Ties go to the known book; the result is best first, ``-1`` padded.  With ``extra`` (one
    array aligned with the warm columns, one with the new ones), its entries are returned
    too, gathered in the same order.
    """
    n = warm_items.shape[0]
    new_items, new_scores = new_items[:, :max_new], new_scores[:, :max_new]
    items = np.hstack([warm_items, new_items])
    scores = np.hstack([warm_scores, new_scores]).astype(np.float32)
    scores = np.where(items >= 0, scores, -np.inf)
    order = np.argsort(-scores, axis=1, kind="stable")[:, :length]
    items = np.take_along_axis(items, order, axis=1)
    scores = np.take_along_axis(scores, order, axis=1)
    gathered = None
    if extra is not None:
        gathered = np.take_along_axis(np.hstack([extra[0], extra[1][:, :max_new]]), order, axis=1)
    if items.shape[1] < length:
        pad = length - items.shape[1]
        items = np.hstack([items, np.full((n, pad), -1, np.int64)])
        scores = np.hstack([scores, np.full((n, pad), -np.inf, np.float32)])
        if gathered is not None:
            gathered = np.hstack([gathered, np.zeros((n, pad), gathered.dtype)])
    scores = np.where(items >= 0, scores, 0.0).astype(np.float32)
    if gathered is not None:
        return items, scores, np.where(items >= 0, gathered, 0)
    return items, scores


def top_new(tower: ContentTower, profiles: sp.csr_matrix, new_rows: np.ndarray, k: int,
            exclude: sp.csr_matrix | None = None, users: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """Each profile's best ``k`` of ``new_rows`` by the tower's score, best first (``-1``
    padding; books with no shared metadata are left out).  ``exclude[users]`` marks books a
    row must not get."""
    n = profiles.shape[0]
    if min(k, len(new_rows)) == 0 or n == 0:
        return np.full((n, k), -1, dtype=np.int64), np.zeros((n, k), dtype=np.float32)
    s = tower.scores(profiles, new_rows)
    s[s <= 0] = -np.inf
    if exclude is not None and users is not None:
        block = sp.csr_matrix(exclude[users][:, new_rows])
        r, c = block.nonzero()
        s[r, c] = -np.inf
    return _best(s, new_rows, k)


def _best(scores: np.ndarray, columns: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Each row's ``k`` best finite ``scores`` as ``columns`` entries, best first; ``-1`` and
    0 where a row has fewer (``scores`` may be overwritten)."""
    n = scores.shape[0]
    items = np.full((n, k), -1, dtype=np.int64)
    values = np.zeros((n, k), dtype=np.float32)
    cols, best = top_k(scores, min(k, scores.shape[1]))
    ok = np.isfinite(best)
    items[:, : cols.shape[1]] = np.where(ok, columns[cols], -1)
    values[:, : cols.shape[1]] = np.where(ok, best, 0.0)
    return items, values
