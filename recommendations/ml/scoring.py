"""Vectorised scoring: every user's top-k, similar items, popularity.

Scores are ``user_vector · item_vector + item_bias`` (the user's bias does not change a
user's ranking, so lists store it added back to match LightFM's ``predict``).  Users are
scored in chunks, each cut into cache-sized tiles that one thread per CPU multiplies and
selects from (see :class:`_Selector`).
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from .ids import distinct


try:
    from numba import njit
except ImportError:  # pragma: no cover - numba is a dependency; the fallback is tested
    njit = None


def _compiled(fn):
    """``fn`` compiled by numba (cached on disk, releasing the GIL), or None without numba.

    The selection kernels below are written by hand because neither numpy nor scipy selects
    the top k of many rows at once without a full ``argpartition`` pass per row, which costs
    several times the matrix product that made the scores.  With numpy reductions they
    select in three steps (see :class:`Layout`): numpy takes the maximum of each group of
    columns and of each group of groups with wide vector instructions, which numba's loops
    do not emit for a maximum; the compiled loop then looks only inside the best of those.
    They live at module level: numba's disk cache misses on functions that close over other
    compiled functions, and would compile them again in every process.
    """
    return njit(cache=True, nogil=True)(fn) if njit is not None else None


@_compiled
def _insert(vals, idxs, size, k, v, j):  # pragma: no cover - compiled
    """Offer entry ``(v, j)`` to ``vals[:size]``, the best ``k`` so far in order (ties: the
    lower ``j`` first); return the new size.  Most entries fail the first test: a sorted
    insertion then costs less than a heap, whose branches the processor cannot predict."""
    if size == k and not (v > vals[k - 1] or (v == vals[k - 1] and j < idxs[k - 1])):
        return size
    pos = size if size < k else k - 1
    while pos > 0 and (vals[pos - 1] < v or (vals[pos - 1] == v and idxs[pos - 1] > j)):
        vals[pos] = vals[pos - 1]
        idxs[pos] = idxs[pos - 1]
        pos -= 1
    vals[pos] = v
    idxs[pos] = j
    return size + 1 if size < k else size

@_compiled
def _best_children(parents, n_parents, children, stride, values, out_v, out_i, k):  # pragma: no cover - compiled
    """The best ``k`` of ``values[p + s * stride]`` for the first ``n_parents`` ``p`` of
    ``parents`` and ``s`` below ``children``, into ``out_v``/``out_i``; return how many."""
    size = 0
    for q in range(n_parents):
        for s in range(children):
            c = parents[q] + s * stride
            size = _insert(out_v, out_i, size, k, values[c], c)
    return size

@_compiled
def _mask_rows(scores, n_valid, rows, indptr, indices, position):  # pragma: no cover - compiled
    """Set to -inf the padding columns (``n_valid`` on) and, for row ``r``, the columns
    ``position[indices[indptr[rows[r]]:indptr[rows[r] + 1]]]`` that are not -1."""
    n, m = scores.shape
    for r in range(n):
        for j in range(n_valid, m):
            scores[r, j] = -np.inf
        g = rows[r]
        for p in range(indptr[g], indptr[g + 1]):
            c = position[indices[p]]
            if c >= 0:
                scores[r, c] = -np.inf

@_compiled
def _select_grouped(scores, group_max, super_max, k, out_idx, out_val):  # pragma: no cover - compiled
    """Each row's best ``k`` columns, best first, into ``out_idx``/``out_val``.

    Column ``j`` belongs to group ``j % G`` (``G`` = ``group_max.shape[1]``), whose
    maximum is ``group_max[r, j % G]``; group ``g`` belongs to super-group ``g % S``
    (``S`` = ``super_max.shape[1]``), whose maximum is ``super_max[r, g % S]``.  A row's
    best ``k`` entries all lie in its ``k`` groups with the largest maxima (were one
    elsewhere, those groups would hold ``k`` larger entries), and those groups in its
    ``k`` best super-groups: only their members are looked at.
    """
    n, m = scores.shape
    groups = group_max.shape[1]
    supers = super_max.shape[1]
    members = m // groups
    per_super = groups // supers
    ks = min(k, supers)
    kg = min(k, groups)
    super_v = np.empty(ks, scores.dtype)
    super_i = np.empty(ks, np.int64)
    group_v = np.empty(kg, scores.dtype)
    group_i = np.empty(kg, np.int64)
    root = np.zeros(1, np.int64)
    for r in range(n):
        _best_children(root, 1, supers, 1, super_max[r], super_v, super_i, ks)
        _best_children(super_i, ks, per_super, supers, group_max[r], group_v, group_i, kg)
        vals = out_val[r]
        idxs = out_idx[r]
        size = _best_children(group_i, kg, members, groups, scores[r], vals, idxs, k)
        for j in range(size, k):  # fewer entries than k: only when m < k
            vals[j] = -np.inf
            idxs[j] = 0


_KERNELS = None if njit is None else (_mask_rows, _select_grouped)


def group_size(m: int, k: int) -> int:
    """Members per group in :func:`top_k_numpy` for ``m`` columns: about sqrt(m / k), which
    balances the work on group maxima against the work on the candidates."""
    return max(1, int(round(math.sqrt(m / max(k, 1)))))


@dataclass(frozen=True)
class Layout:
    """How the compiled selection groups ``m`` columns for the top ``k``: ``members``
    columns per group, ``per_super`` groups per super-group; ``width`` is ``m`` rounded up
    to whole super-groups (the padding columns hold -inf).  Both factors are about
    (m / k)^(1/3), which balances the three steps' work."""

    members: int
    per_super: int
    supers: int

    @classmethod
    def for_columns(cls, m: int, k: int) -> Layout:
        b = max(1, int(round((m / max(k, 1)) ** (1 / 3))))
        return cls(b, b, -(-m // (b * b)))

    @property
    def groups(self) -> int:
        return self.per_super * self.supers

    @property
    def width(self) -> int:
        return self.members * self.groups

    def maxima(self, scores: np.ndarray, group_max: np.ndarray | None = None, super_max: np.ndarray | None = None):
        """The group and super-group maxima of each row of ``scores`` (``width`` columns),
        by numpy's vectorised maximum of contiguous slabs."""
        n = scores.shape[0]
        group_max = np.max(scores.reshape(n, self.members, self.groups), axis=1, out=group_max)
        super_max = np.max(group_max.reshape(n, self.per_super, self.supers), axis=1, out=super_max)
        return group_max, super_max


def usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


class _Selector:
    """Top ``k`` of ``left @ right`` row by row, computed a tile of rows at a time.

    A tile's scores (about 4 MB) are still in the processor's cache when the selection reads
    them, and tiles are shared out to ``threads`` threads: each runs its own product (BLAS on
    one thread) and selection, so every core multiplies and selects instead of the cores
    taking turns.  ``right`` has ``n_valid`` real columns; the rest are padding up to whole groups.
    """

    def __init__(self, right: np.ndarray, n_valid: int, k: int, threads: int | None = None):
        self.k = k
        self.n_valid = n_valid
        self.layout = Layout.for_columns(n_valid, k)
        width = self.layout.width
        self.right = np.zeros((right.shape[0], width), dtype=np.float32)
        self.right[:, :n_valid] = right
        self.tile = int(np.clip((1 << 22) // (4 * width), 16, 256))
        self.threads = max(1, threads or usable_cpus())
        self._local = threading.local()

    def _buffers(self):
        local = self._local
        if not hasattr(local, "scores"):
            local.scores = np.empty((self.tile, self.right.shape[1]), dtype=np.float32)
            local.group_max = np.empty((self.tile, self.layout.groups), dtype=np.float32)
            local.super_max = np.empty((self.tile, self.layout.supers), dtype=np.float32)
        return local

    def run(self, left: np.ndarray, rows: np.ndarray, exclude: tuple, pool: ThreadPoolExecutor | None):
        """Select for every row of ``left``; ``exclude`` = (indptr, indices, position) with
        row ``rows[i]`` of the CSR arrays naming the columns row ``i`` must not get."""
        n = left.shape[0]
        cols = np.empty((n, self.k), dtype=np.int64)
        values = np.empty((n, self.k), dtype=np.float32)
        mask_rows, select_grouped = _KERNELS

        def tiles(start: int, stop: int) -> None:
            buf = self._buffers()
            for lo in range(start, stop, self.tile):
                hi = min(lo + self.tile, stop)
                scores = np.matmul(left[lo:hi], self.right, out=buf.scores[: hi - lo])
                mask_rows(scores, self.n_valid, rows[lo:hi], *exclude)
                gmax, smax = self.layout.maxima(scores, buf.group_max[: hi - lo], buf.super_max[: hi - lo])
                select_grouped(scores, gmax, smax, self.k, cols[lo:hi], values[lo:hi])

        if pool is None:
            tiles(0, n)
        else:  # one contiguous share of whole tiles per thread
            share = -(-n // (self.threads * self.tile)) * self.tile
            for _ in pool.map(lambda start: tiles(start, min(start + share, n)), range(0, n, share)):
                pass
        return cols, values


@contextmanager
def _workers(threads: int):
    """A thread pool (or None for one thread) with BLAS held to one thread meanwhile: each
    worker runs its own products, and two thread pools on the same cores slow each other.

    One thread means one core, BLAS included: left alone, BLAS would start a thread per core
    in each process, and with two scoring workers on two cores the shards' scoring took six
    times as long as with one (four spinning BLAS threads on two cores)."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        if threads <= 1:
            yield None
        else:
            with ThreadPoolExecutor(threads, "recommendations-score") as pool:
                yield pool


def top_k(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Column indices and values of the ``k`` largest entries of each row, best first
    (ties: lower column first).  Rows with fewer than ``k`` finite entries end in ``-inf``.

    With numba installed, the compiled selection over group maxima (see :class:`Layout`);
    without it, :func:`top_k_numpy`.  ``scores`` may be overwritten.
    """
    n, m = scores.shape
    k = min(k, m)
    if _KERNELS is None or k <= 0 or n == 0 or scores.dtype not in (np.float32, np.float64):
        return top_k_numpy(scores, k)
    layout = Layout.for_columns(m, k)
    if layout.width != m:  # whole super-groups: pad with -inf
        scores = np.pad(scores, ((0, 0), (0, layout.width - m)), constant_values=-np.inf)
    scores = np.ascontiguousarray(scores)
    group_max, super_max = layout.maxima(scores)
    cols = np.empty((n, k), dtype=np.int64)
    values = np.empty((n, k), dtype=scores.dtype)
    _KERNELS[1](scores, group_max, super_max, k, cols, values)
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
        if groups * b != m:  # pad to whole groups
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


def _select_chunks(left_of, rows_all, right, k, exclude: sp.csr_matrix | None, cand: Candidates, batch: int,
                   threads: int | None):  # fmt: skip
    """Yield ``(rows, cols, values)`` per chunk of ``batch`` rows: the top ``k`` columns of
    ``left_of(rows) @ right``, leaving out for each row the items its row of ``exclude``
    marks (see :func:`score_users`)."""
    n_cand = right.shape[1]
    if _KERNELS is None:  # numpy only: one product per chunk, then top_k_numpy
        for start in range(0, rows_all.size, batch):
            rows = rows_all[start : start + batch]
            scores = left_of(rows) @ right
            if exclude is not None:
                block = exclude[rows]
                r = np.repeat(np.arange(rows.size), np.diff(block.indptr))
                c = cand.position[block.indices]
                scores[r[c >= 0], c[c >= 0]] = -np.inf
            yield rows, *top_k_numpy(scores, k)
        return
    if exclude is None:  # one empty row of exclusions, shared by every row
        indptr, indices = np.zeros(2, np.int64), np.zeros(0, np.int64)
    else:
        indptr, indices = exclude.indptr, exclude.indices
    selector = _Selector(right, n_cand, k, threads)
    with _workers(min(selector.threads, -(-rows_all.size // selector.tile))) as pool:
        for start in range(0, rows_all.size, batch):
            rows = rows_all[start : start + batch]
            excl_rows = np.zeros(rows.size, np.int64) if exclude is None else rows
            cols, values = selector.run(left_of(rows), excl_rows, (indptr, indices, cand.position), pool)
            yield rows, cols, values


# A customer or a few (a rescore, a list scored on demand): one product over the items as
# they are, without copying them into tiles; a millisecond or less for 50,000 books.
FEW_USERS = 8


def _score_few(user_vectors, user_biases, item_vectors, item_biases, k, allowed, exclude, rows):
    scores = user_vectors[rows] @ item_vectors.T + item_biases[None, :]
    if allowed is not None:
        scores[:, ~np.asarray(allowed, bool)] = -np.inf
    if exclude is not None:
        block = exclude[rows]
        scores[np.repeat(np.arange(rows.size), np.diff(block.indptr)), block.indices] = -np.inf
    n_allowed = item_vectors.shape[0] if allowed is None else int(np.count_nonzero(allowed))
    if n_allowed == 0:
        return
    cols, values = top_k_numpy(scores.astype(np.float32, copy=False), min(k, n_allowed))
    item_rows = np.where(np.isfinite(values), cols, -1)
    yield rows, item_rows, values + user_biases[rows, None]


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
    threads: int | None = None,
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Yield ``(user_rows, item_rows, scores)`` chunk by chunk: each user's top ``k``.

    ``allowed`` masks the items that may be recommended; ``exclude`` (users × items) marks
    what each user must not get (what they bought).  ``item_rows`` is ``(n, k)``, best first,
    with ``-1`` where a user has fewer than ``k`` candidates.  ``threads`` (default: the
    usable CPUs) share each chunk's tiles.
    """
    n_items = item_vectors.shape[0]
    rows_all = np.arange(user_vectors.shape[0]) if users is None else np.asarray(users, dtype=np.int64)
    if rows_all.size <= FEW_USERS:
        yield from _score_few(user_vectors, user_biases, item_vectors, item_biases, k, allowed, exclude, rows_all)
        return
    cand = Candidates.from_mask(np.ones(n_items, bool) if allowed is None else allowed)
    if cand.items.size == 0:
        return
    # The item bias rides along as one more column of the product: one BLAS call per tile.
    right = np.hstack([item_vectors[cand.items], item_biases[cand.items, None]]).astype(np.float32).T

    def left_of(rows):
        left = np.ones((rows.size, right.shape[0]), dtype=np.float32)
        left[:, :-1] = user_vectors[rows]
        return left

    k = min(k, cand.items.size)
    for rows, cols, values in _select_chunks(left_of, rows_all, right, k, exclude, cand, batch, threads):
        item_rows = np.where(np.isfinite(values), cand.items[np.minimum(cols, cand.items.size - 1)], -1)
        yield rows, item_rows, values + user_biases[rows, None]


def similar_items(
    item_vectors: np.ndarray, *, k: int, allowed: np.ndarray | None = None, batch: int = 2048, threads: int | None = None
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Yield ``(item_rows, similar_rows, cosine)`` chunk by chunk: each item's ``k`` nearest
    allowed items by cosine of their representations, itself excluded."""
    n = item_vectors.shape[0]
    norms = np.linalg.norm(item_vectors, axis=1, keepdims=True)
    unit = np.divide(item_vectors, norms, out=np.zeros_like(item_vectors), where=norms > 0).astype(np.float32)
    cand = Candidates.from_mask(np.ones(n, bool) if allowed is None else allowed)
    if cand.items.size == 0:
        return
    right = unit[cand.items].T
    own = sp.identity(n, dtype=np.int8, format="csr")  # each item excludes itself
    k = min(k, cand.items.size)
    for rows, cols, values in _select_chunks(lambda rows: unit[rows], np.arange(n), right, k, own, cand, batch, threads):
        yield rows, np.where(np.isfinite(values), cand.items[np.minimum(cols, cand.items.size - 1)], -1), values


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
    pairs = distinct(user[mask].astype(np.int64) * n_items + item[mask])
    return np.bincount(pairs % n_items, minlength=n_items).astype(np.float32)


def top_popular(scores: np.ndarray, k: int, allowed: np.ndarray | None = None) -> np.ndarray:
    """Item rows of the ``k`` highest scores (ties: lower row first); zero scores left out."""
    s = scores.astype(np.float64).copy()
    if allowed is not None:
        s[~allowed] = -np.inf
    order = np.lexsort((np.arange(s.size), -s))
    order = order[np.isfinite(s[order]) & (s[order] > 0)]
    return order[:k]
