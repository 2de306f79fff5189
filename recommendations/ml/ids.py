"""Explicit maps between a host's keys (primary keys, product ids) and matrix rows."""

from __future__ import annotations

import numpy as np


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
        self.keys = np.unique(keys)

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
