"""Vectorised scoring: every user's top-k, similar items, popularity.

Scores are ``user_vector · item_vector + item_bias`` (the user's bias does not change a
user's ranking, so lists store it added back to match LightFM's ``predict``).  Users are
scored in chunks: one matrix product per chunk, then a top-k selection.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

def group_size(m: int, k: int) -> int:
    """Members per group in :func:`top_k` for ``m`` columns: about sqrt(m / k), which
    balances the work on group maxima against the work on the candidates."""
    return max(1, int(round(math.sqrt(m / max(k, 1)))))


def top_k(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Column indices and values of the ``k`` largest entries of each row, best first.

    A plain ``argpartition`` over every row costs several times the matrix product that
    made the scores.  So the columns are dealt into ``G`` groups of ``b`` (column ``j``
    joins group ``j % G``: viewed as ``(n, b, G)``, each group's maximum is an elementwise
    maximum of ``b`` contiguous slabs, which numpy vectorises); a row's top ``k`` entries
    all lie in its ``k`` groups with the largest maxima (were one elsewhere, those ``k``
    groups would hold ``k`` larger entries); the selection then runs on ``k × b`` candidates.
    Hand-written because numpy has no partial sort across rows that avoids a full pass of
    ``argpartition``.  Rows with fewer than ``k`` finite entries end in ``-inf`` values.
    """
    n, m = scores.shape
    k = min(k, m)
    if k <= 0 or n == 0:
        return np.empty((n, 0), dtype=np.int64), np.empty((n, 0), dtype=scores.dtype)
    b = group_size(m, k)
    if b >= 4 and 2 * k * b < m:
        groups = -(-m // b)
        if groups * b != m:  # pad to whole groups; score_users hands over padded rows already
            scores = np.pad(scores, ((0, 0), (0, groups * b - m)), constant_values=-np.inf)
        group_max = scores.reshape(n, b, groups).max(axis=1)
        best = np.argpartition(group_max, groups - k, axis=1)[:, groups - k :]
        cand_cols = (best[:, :, None] + groups * np.arange(b)[None, None, :]).reshape(n, k * b)
        cand = np.take_along_axis(scores, cand_cols, axis=1)
    else:
        cand_cols, cand = None, scores
    width = cand.shape[1]
    part = np.argpartition(cand, width - k, axis=1)[:, width - k :] if k < width else np.tile(np.arange(width), (n, 1))
    values = np.take_along_axis(cand, part, axis=1)
    order = np.argsort(-values, axis=1, kind="stable")
    part = np.take_along_axis(part, order, axis=1)
    values = np.take_along_axis(values, order, axis=1)
    cols = part if cand_cols is None else np.take_along_axis(cand_cols, part, axis=1)
    return cols.astype(np.int64), values


@dataclass
class Candidates:
    """The items that may be recommended, as positions into the item matrix."""

    items: np.ndarray  # item rows allowed, ascending
    position: np.ndarray  # item row -> position among allowed, -1 if not allowed

    @classmethod
    def from_mask(cls, allowed: np.ndarray) -> Candidates:
        items = np.flatnonzero(allowed)
        position = np.full(allowed.size, -1, dtype=np.int64)
        position[items] = np.arange(items.size)
        return cls(items, position)


def score_users(
    user_vectors: np.ndarray,
    user_biases: np.ndarray,
    item_vectors: np.ndarray,
    item_biases: np.ndarray,
    *,
    k: int,
    allowed: np.ndarray | None = None,
    exclude: sp.csr_matrix | None = None,
    users: np.ndarray | None = None,
    batch: int = 2048,
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Yield ``(user_rows, item_rows, scores)`` chunk by chunk: each user's top ``k``.

    ``allowed`` masks the items that may be recommended; ``exclude`` (users × items) marks
    what each user must not get (what they bought).  ``item_rows`` is ``(n, k)``, best first,
    with ``-1`` where a user has fewer than ``k`` candidates.
    """
    n_items = item_vectors.shape[0]
    cand = Candidates.from_mask(np.ones(n_items, bool) if allowed is None else allowed)
    if cand.items.size == 0:
        return
    # The item bias rides along as one more column of the product: one BLAS call per chunk.
    # Padding items (zero vector, bias -inf) round the columns up to whole groups of
    # top_k, so that it selects from the product's own output without copying it.
    items = np.hstack([item_vectors[cand.items], item_biases[cand.items, None]]).astype(np.float32)
    n_cand = items.shape[0]
    b = group_size(n_cand, k)
    pad = (-n_cand) % b
    if pad:
        filler = np.zeros((pad, items.shape[1]), np.float32)
        filler[:, -1] = -np.inf
        items = np.vstack([items, filler])
    items_t = np.ascontiguousarray(items.T)
    rows_all = np.arange(user_vectors.shape[0]) if users is None else np.asarray(users, dtype=np.int64)
    for start in range(0, rows_all.size, batch):
        rows = rows_all[start : start + batch]
        left = np.hstack([user_vectors[rows], np.ones((rows.size, 1), np.float32)]).astype(np.float32)
        scores = left @ items_t
        if exclude is not None:
            block = exclude[rows]
            r = np.repeat(np.arange(rows.size), np.diff(block.indptr))
            c = cand.position[block.indices]
            ok = c >= 0
            scores[r[ok], c[ok]] = -np.inf
        cols, values = top_k(scores, k)
        item_rows = np.where(np.isfinite(values), cand.items[np.minimum(cols, n_cand - 1)], -1)
        yield rows, item_rows, values + user_biases[rows, None]


def similar_items(
    item_vectors: np.ndarray, *, k: int, allowed: np.ndarray | None = None, batch: int = 2048
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Yield ``(item_rows, similar_rows, cosine)`` chunk by chunk: each item's ``k`` nearest
    allowed items by cosine of their representations, itself excluded."""
    n = item_vectors.shape[0]
    norms = np.linalg.norm(item_vectors, axis=1, keepdims=True)
    unit = np.divide(item_vectors, norms, out=np.zeros_like(item_vectors), where=norms > 0).astype(np.float32)
    cand = Candidates.from_mask(np.ones(n, bool) if allowed is None else allowed)
    if cand.items.size == 0:
        return
    right = np.ascontiguousarray(unit[cand.items].T)
    for start in range(0, n, batch):
        rows = np.arange(start, min(start + batch, n))
        scores = unit[rows] @ right
        own = cand.position[rows]
        mine = own >= 0
        scores[np.flatnonzero(mine), own[mine]] = -np.inf
        cols, values = top_k(scores, k)
        similar = np.where(np.isfinite(values), cand.items[cols], -1)
        yield rows, similar, values


def popularity(
    user: np.ndarray, item: np.ndarray, n_items: int, *, time: np.ndarray | None = None, since: float | None = None
) -> np.ndarray:
    """Distinct users per item (optionally only interactions at or after ``since``).

    Counting people, not weight, keeps one customer's thousand reloads from making a
    book everyone's top pick.
    """
    mask = np.ones(user.size, bool)
    if since is not None and time is not None:
        mask &= np.nan_to_num(time, nan=-np.inf) >= since
    pairs = np.unique(user[mask].astype(np.int64) * n_items + item[mask])
    return np.bincount(pairs % n_items, minlength=n_items).astype(np.float32)


def top_popular(scores: np.ndarray, k: int, allowed: np.ndarray | None = None) -> np.ndarray:
    """Item rows of the ``k`` highest scores (ties: lower row first); zero scores left out."""
    s = scores.astype(np.float64).copy()
    if allowed is not None:
        s[~allowed] = -np.inf
    order = np.lexsort((np.arange(s.size), -s))
    order = order[np.isfinite(s[order]) & (s[order] > 0)]
    return order[:k]
