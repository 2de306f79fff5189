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

def _compile_top_k():
    """The per-row heap selection, compiled by numba (None when numba is not installed).

    Written by hand because neither numpy nor scipy selects the top k of many rows at once
    without a full ``argpartition`` pass per row, which costs several times the matrix
    product; numba compiles this loop.
    """
    try:
        from numba import njit
    except ImportError:  # pragma: no cover - numba is a dependency; the fallback is tested
        return None

    @njit(cache=True, nogil=True)
    def top_k_rows(scores, k, out_idx, out_val):  # pragma: no cover - compiled
        n, m = scores.shape
        for r in range(n):
            vals = out_val[r]
            idxs = out_idx[r]
            size = 0  # vals[:size] is a min-heap of the best so far: vals[0] the weakest
            for j in range(m):
                v = scores[r, j]
                if size < k:
                    pos = size
                    size += 1
                    while pos > 0:
                        parent = (pos - 1) >> 1
                        if vals[parent] > v or (vals[parent] == v and idxs[parent] < j):
                            vals[pos] = vals[parent]
                            idxs[pos] = idxs[parent]
                            pos = parent
                        else:
                            break
                    vals[pos] = v
                    idxs[pos] = j
                elif v > vals[0]:
                    pos = 0
                    while True:
                        child = 2 * pos + 1
                        if child >= k:
                            break
                        right = child + 1
                        if right < k and (vals[right] < vals[child] or (vals[right] == vals[child] and idxs[right] > idxs[child])):
                            child = right
                        if vals[child] < v:
                            vals[pos] = vals[child]
                            idxs[pos] = idxs[child]
                            pos = child
                        else:
                            break
                    vals[pos] = v
                    idxs[pos] = j
            for a in range(1, k):  # best first; k is small, so an insertion sort
                v = vals[a]
                i = idxs[a]
                b = a - 1
                while b >= 0 and (vals[b] < v or (vals[b] == v and idxs[b] > i)):
                    vals[b + 1] = vals[b]
                    idxs[b + 1] = idxs[b]
                    b -= 1
                vals[b + 1] = v
                idxs[b + 1] = i

    return top_k_rows


_top_k_rows = _compile_top_k()


def group_size(m: int, k: int) -> int:
    """Members per group in :func:`top_k` for ``m`` columns: about sqrt(m / k), which
    balances the work on group maxima against the work on the candidates."""
    return max(1, int(round(math.sqrt(m / max(k, 1)))))


def top_k(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Column indices and values of the ``k`` largest entries of each row, best first
    (ties: lower column first).  Rows with fewer than ``k`` finite entries end in ``-inf``.

    With numba installed, a compiled pass over each row keeps a heap of its best ``k``
    (most entries cost one comparison).  It runs on one thread: BLAS already uses the
    cores for the product, and two thread pools spinning on two cores slow each other
    down.  Without numba, :func:`top_k_numpy`.
    """
    n, m = scores.shape
    k = min(k, m)
    if _top_k_rows is None or k <= 0 or n < 64 or scores.dtype not in (np.float32, np.float64):
        return top_k_numpy(scores, k)  # a few rows (one customer's rescore): not worth a kernel launch
    scores = np.ascontiguousarray(scores)
    cols = np.empty((n, k), dtype=np.int64)
    values = np.empty((n, k), dtype=scores.dtype)
    _top_k_rows(scores, k, cols, values)
    return cols, values


def top_k_numpy(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """:func:`top_k` in plain numpy, for when numba is not installed.

    A plain ``argpartition`` over every row costs several times the matrix product that
    made the scores.  So the columns are dealt into ``G`` groups of ``b`` (column ``j``
    joins group ``j % G``: viewed as ``(n, b, G)``, each group's maximum is an elementwise
    maximum of ``b`` contiguous slabs, which numpy vectorises); a row's top ``k`` entries
    all lie in its ``k`` groups with the largest maxima (were one elsewhere, those ``k``
    groups would hold ``k`` larger entries); the selection then runs on ``k × b`` candidates.
    Hand-written because numpy has no partial sort across rows that avoids a full pass of
    ``argpartition``.
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
    # One buffer for every chunk's product and one for its left operand: a fresh array of
    # batch × items floats per chunk would cost its page faults each time.
    out = np.empty((min(batch, rows_all.size), items_t.shape[1]), dtype=np.float32)
    left_buf = np.ones((out.shape[0], items_t.shape[0]), dtype=np.float32)
    for start in range(0, rows_all.size, batch):
        rows = rows_all[start : start + batch]
        left = left_buf[: rows.size]
        left[:, :-1] = user_vectors[rows]
        scores = np.matmul(left, items_t, out=out[: rows.size])
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
    out = np.empty((min(batch, n), right.shape[1]), dtype=np.float32)
    for start in range(0, n, batch):
        rows = np.arange(start, min(start + batch, n))
        scores = np.matmul(unit[start : start + rows.size], right, out=out[: rows.size])
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
