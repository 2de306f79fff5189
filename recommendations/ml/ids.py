"""Explicit maps between a host's keys (primary keys, product ids) and matrix rows."""

from __future__ import annotations

import numpy as np


def distinct(values) -> np.ndarray:
    """The sorted distinct values of an array, by one sort.

    ``np.unique`` without ``return_*`` arguments takes a hash-based path since numpy 2.3,
    which measured 15 times slower than a sort on two million int64 keys; this is the sort.
    """
    values = np.sort(np.asarray(values).ravel())
    if values.size < 2:
        return values
    keep = np.empty(values.size, dtype=bool)
    keep[0] = True
    np.not_equal(values[1:], values[:-1], out=keep[1:])
    return values[keep]


class IdMap:
    """Sorted unique external keys; row ``i`` of a matrix belongs to ``keys[i]``.

    Keys are integers or strings (stored as a fixed-width unicode array, so that an id map
    can be saved in an ``.npz`` without pickle).
    """

    __slots__ = ("keys",)

    def __init__(self, keys) -> None:
        keys = np.asarray(keys)
        if keys.dtype == object:
            keys = keys.astype(str)
        self.keys = distinct(keys)

    def __len__(self) -> int:
        return int(self.keys.size)

    def __repr__(self) -> str:
        return f"IdMap({len(self)} keys)"

    def index(self, keys, *, missing: int = -1) -> np.ndarray:
        """Rows of ``keys``; ``missing`` for keys the map does not know."""
        keys = np.asarray(keys)
        if keys.dtype == object:
            keys = keys.astype(str)
        if self.keys.size == 0 or keys.size == 0:
            return np.full(keys.shape, missing, dtype=np.int64)
        if (keys.dtype.kind in "iu") != (self.keys.dtype.kind in "iu"):
            return np.full(keys.shape, missing, dtype=np.int64)
        pos = np.searchsorted(self.keys, keys)
        pos_clipped = np.minimum(pos, self.keys.size - 1)
        found = self.keys[pos_clipped] == keys
        return np.where(found, pos_clipped, missing).astype(np.int64)

    def key(self, rows) -> np.ndarray:
        return self.keys[np.asarray(rows, dtype=np.int64)]
