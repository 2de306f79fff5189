"""Sparse matrices for LightFM: interactions, item features and user features.

Shapes and meanings (rows are always the rows of an :class:`~recommendations.ml.ids.IdMap`):

* interactions ``(n_users, n_items)``: 1 where the customer bought or viewed the book; the
  weights matrix of the same shape holds how much (purchases and views combined).
* item features ``(n_items, n_items + n_metadata)``: the first ``n_items`` columns are one
  identity feature per book, the rest metadata ("author=17", "genres=3", "price=q2", …).
  Books without interactions get **no** identity feature: their untrained identity
  embedding would be noise, and it would dilute their metadata.  The identity and the
  metadata block weigh half each; rows sum to 1.
* user features ``(n_users, n_users + n_attributes + n_history)``: an identity feature per
  customer, optional attributes, and optionally the customer's history as metadata
  affinities (the share of their interactions with each genre, author, …).  Rows sum to 1.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp


class DataError(ValueError):
    """The input data cannot be trained on; the message says what and where."""


@dataclass
class Interactions:
    """One row per (user, item) pair: combined weight and the time of the first interaction."""

    user: np.ndarray
    item: np.ndarray
    weight: np.ndarray
    time: np.ndarray
    n_users: int
    n_items: int

    def __len__(self) -> int:
        return int(self.user.size)

    def subset(self, mask: np.ndarray) -> Interactions:
        return Interactions(
            self.user[mask], self.item[mask], self.weight[mask], self.time[mask], self.n_users, self.n_items
        )

    def matrix(self, values: np.ndarray | None = None) -> sp.csr_matrix:
        """``(n_users, n_items)`` CSR of ``values`` (default: the weights)."""
        data = self.weight if values is None else values
        return sp.csr_matrix(
            (data.astype(np.float32), (self.user, self.item)), shape=(self.n_users, self.n_items), dtype=np.float32
        )

    def for_lightfm(self) -> tuple[sp.coo_matrix, sp.coo_matrix]:
        """Binary interactions and sample weights as COO matrices with the same entry order."""
        shape = (self.n_users, self.n_items)
        ones = np.ones(len(self), dtype=np.float32)
        interactions = sp.coo_matrix((ones, (self.user, self.item)), shape=shape)
        weights = sp.coo_matrix((self.weight.astype(np.float32), (self.user, self.item)), shape=shape)
        return interactions, weights


def combine(
    user: np.ndarray, item: np.ndarray, weight: np.ndarray, time: np.ndarray, n_users: int, n_items: int
) -> Interactions:
    """Sum the weights of repeated (user, item) pairs and keep their earliest time.

    ``time`` is in seconds (NaN where unknown).  Raises :class:`DataError` on non-finite or
    negative weights.
    """
    user = np.asarray(user, dtype=np.int64)
    item = np.asarray(item, dtype=np.int64)
    weight = np.asarray(weight, dtype=np.float64)
    time = np.asarray(time, dtype=np.float64)
    if not np.isfinite(weight).all():
        bad = np.flatnonzero(~np.isfinite(weight))
        raise DataError(f"{bad.size} interaction weights are NaN or infinite (first at row {bad[0]}).")
    if (weight < 0).any():
        raise DataError(f"{int((weight < 0).sum())} interaction weights are negative.")
    keep = weight > 0
    user, item, weight, time = user[keep], item[keep], weight[keep], time[keep]
    if user.size == 0:
        empty = np.empty(0, dtype=np.int64)
        return Interactions(empty, empty, np.empty(0, np.float32), np.empty(0), n_users, n_items)
    key = user * n_items + item
    uniq, inverse = np.unique(key, return_inverse=True)
    total = np.bincount(inverse, weights=weight)
    first = np.full(uniq.size, np.inf)
    np.minimum.at(first, inverse, np.where(np.isnan(time), np.inf, time))
    first[np.isinf(first)] = np.nan
    return Interactions(
        user=(uniq // n_items).astype(np.int64),
        item=(uniq % n_items).astype(np.int64),
        weight=total.astype(np.float32),
        time=first,
        n_users=n_users,
        n_items=n_items,
    )


@dataclass
class FeatureSet:
    """Binary metadata features of the rows of an id map: a CSR matrix and a name per column."""

    n_rows: int
    names: list[str] = field(default_factory=list)
    rows: list[np.ndarray] = field(default_factory=list)
    cols: list[np.ndarray] = field(default_factory=list)
    edges: dict[str, list[float]] = field(default_factory=dict)

    def add_category(self, name: str, values: np.ndarray) -> None:
        """One feature per distinct value; ``None``/empty values get none."""
        values = np.asarray(values, dtype=object)
        present = np.array([v is not None and v != "" for v in values], dtype=bool)
        rows = np.flatnonzero(present)
        labels = np.array([str(v) for v in values[present]], dtype=str) if rows.size else np.empty(0, str)
        self._add(name, rows, labels)

    def add_tags(self, name: str, rows: np.ndarray, values: np.ndarray) -> None:
        """Several values per row (a many-to-many field): ``rows[i]`` has tag ``values[i]``."""
        rows = np.asarray(rows, dtype=np.int64)
        labels = np.array([str(v) for v in values], dtype=str) if len(values) else np.empty(0, str)
        self._add(name, rows, labels)

    def add_number(self, name: str, values: np.ndarray, buckets: int) -> None:
        """Quantile buckets of a number (NaN: no feature).  The edges come from the data."""
        values = np.asarray(values, dtype=np.float64)
        present = ~np.isnan(values)
        if not present.any():
            return
        inner = np.unique(np.quantile(values[present], np.linspace(0, 1, buckets + 1)[1:-1]))
        self.edges[name] = inner.tolist()
        rows = np.flatnonzero(present)
        codes = np.searchsorted(inner, values[present], side="right")
        self._add(name, rows, np.array([f"q{c}" for c in codes], dtype=str))

    def _add(self, name: str, rows: np.ndarray, labels: np.ndarray) -> None:
        if rows.size == 0:
            return
        uniq, codes = np.unique(labels, return_inverse=True)
        self.rows.append(rows)
        self.cols.append(codes + len(self.names))
        self.names.extend(f"{name}={u}" for u in uniq)

    def matrix(self) -> sp.csr_matrix:
        if not self.rows:
            return sp.csr_matrix((self.n_rows, 0), dtype=np.float32)
        rows, cols = np.concatenate(self.rows), np.concatenate(self.cols)
        m = sp.csr_matrix(
            (np.ones(rows.size, np.float32), (rows, cols)), shape=(self.n_rows, len(self.names)), dtype=np.float32
        )
        m.sum_duplicates()
        m.data[:] = 1.0
        return m


def normalize_rows(m: sp.spmatrix) -> sp.csr_matrix:
    """Scale each row to sum 1 (empty rows stay empty)."""
    m = sp.csr_matrix(m, dtype=np.float32)
    sums = np.asarray(m.sum(axis=1)).ravel()
    scale = np.divide(1.0, sums, out=np.zeros_like(sums), where=sums > 0)
    return sp.csr_matrix(sp.diags(scale.astype(np.float32)) @ m)


def item_features(metadata: sp.csr_matrix | None, warm: np.ndarray) -> sp.csr_matrix:
    """Identity (for ``warm`` items only) plus metadata; rows sum to 1.

    The metadata block gets the same total weight as the identity feature, however many
    metadata values a book has: with one weight per feature, a book with six values would
    keep only a seventh of its identity, and the model would lose what sets it apart.
    An item that is neither warm nor has metadata keeps its identity feature, so that no row
    is empty (an empty row would give the item a zero representation).
    """
    n = warm.size
    if metadata is None or metadata.shape[1] == 0:
        return sp.identity(n, dtype=np.float32, format="csr")
    has_meta = np.asarray(metadata.getnnz(axis=1)) > 0
    identity_rows = warm | ~has_meta
    identity = sp.diags(identity_rows.astype(np.float32), format="csr")
    return normalize_rows(sp.hstack([identity, normalize_rows(metadata)], format="csr"))


def history_affinities(interactions: sp.csr_matrix, item_metadata: sp.csr_matrix, keep: int = 20) -> sp.csr_matrix:
    """``(n_users, n_metadata)``: each user's share of interaction weight per metadata feature.

    Only each user's ``keep`` strongest affinities are kept: the long tail of features met
    once adds noise, and training time grows with the non-zeros of the feature matrix.
    """
    m = sp.csr_matrix(interactions @ item_metadata, dtype=np.float32)
    if keep > 0:
        m = keep_top_per_row(m, keep)
    return normalize_rows(m)


def keep_top_per_row(m: sp.csr_matrix, keep: int) -> sp.csr_matrix:
    """Zero all but the ``keep`` largest entries of each row."""
    m = sp.csr_matrix(m)
    m.sort_indices()
    counts = np.diff(m.indptr)
    if counts.max(initial=0) <= keep:
        return m
    rows = np.repeat(np.arange(m.shape[0]), counts)
    order = np.lexsort((-m.data, rows))
    rank = np.empty(order.size, dtype=np.int64)
    rank[order] = np.arange(order.size) - m.indptr[rows[order]]
    data = np.where(rank < keep, m.data, 0).astype(m.dtype)
    out = sp.csr_matrix((data, m.indices, m.indptr), shape=m.shape)
    out.eliminate_zeros()
    return out


def user_features(
    n_users: int, attributes: sp.csr_matrix | None = None, history: sp.csr_matrix | None = None
) -> sp.csr_matrix:
    """Identity plus optional attributes and history affinities, rows normalised to sum 1.

    The history block is given the same total weight as the identity feature.
    """
    blocks = [sp.identity(n_users, dtype=np.float32, format="csr")]
    if attributes is not None and attributes.shape[1]:
        blocks.append(sp.csr_matrix(attributes, dtype=np.float32))
    if history is not None and history.shape[1]:
        blocks.append(normalize_rows(history))
    if len(blocks) == 1:
        return blocks[0]
    return normalize_rows(sp.hstack(blocks, format="csr"))
