"""The time holdout and ranking metrics: precision@k, recall@k, ndcg@k, AUC, coverage."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from .matrices import Interactions
from .scoring import Candidates, top_k


def time_split(inter: Interactions, *, holdout: float, min_interactions: int) -> np.ndarray:
    """Boolean mask of the held-out pairs: the most recent ``holdout`` share of each user's
    interactions (at least one), for users with at least ``min_interactions`` of them.

    Pairs without a time are never held out.  Ties in time are broken by item row, so the
    split is deterministic.
    """
    n = len(inter)
    test = np.zeros(n, dtype=bool)
    if n == 0:
        return test
    time = np.nan_to_num(inter.time, nan=-np.inf)
    order = np.lexsort((inter.item, time, inter.user))
    users = inter.user[order]
    counts = np.bincount(users, minlength=inter.n_users)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    pos_from_end = counts[users] - (np.arange(n) - starts[users])  # 1 = the user's latest
    n_test = np.where(counts >= max(min_interactions, 2), np.maximum(1, np.floor(holdout * counts)), 0)
    held = pos_from_end <= n_test[users]
    held &= np.isfinite(time[order])
    test[order] = held
    return test


@dataclass
class Metrics:
    precision: float
    recall: float
    ndcg: float
    auc: float
    coverage: float
    users: int

    def as_dict(self, k: int) -> dict:
        return {
            f"precision@{k}": round(self.precision, 6),
            f"recall@{k}": round(self.recall, 6),
            f"ndcg@{k}": round(self.ndcg, 6),
            "auc": round(self.auc, 6),
            "coverage": round(self.coverage, 6),
            "users": self.users,
        }


def evaluate(
    user_vectors: np.ndarray,
    item_vectors: np.ndarray,
    item_biases: np.ndarray,
    train: sp.csr_matrix,
    test: sp.csr_matrix,
    *,
    k: int,
    users: np.ndarray,
    allowed: np.ndarray | None = None,
    batch: int = 1024,
    auc: bool = True,
) -> Metrics:
    """Rank every allowed item not in the user's training data; compare with the test items.

    Works for any model that scores ``user_vector · item_vector + item_bias``; popularity is
    the one-dimensional case (user vector 1, item vector 0, bias = popularity).  ``auc=False``
    skips the AUC (its pass over every held-out pair costs more than the rest); it is then 0.5.
    """
    n_items = item_vectors.shape[0]
    cand = Candidates.from_mask(np.ones(n_items, bool) if allowed is None else allowed)
    right = np.hstack([item_vectors[cand.items], item_biases[cand.items, None]]).astype(np.float32).T
    right = np.ascontiguousarray(right)
    discount = 1.0 / np.log2(np.arange(2, k + 2))
    sums = {"precision": 0.0, "recall": 0.0, "ndcg": 0.0, "auc": 0.0}
    counted = 0
    recommended = np.zeros(cand.items.size, dtype=bool)
    for start in range(0, users.size, batch):
        rows = users[start : start + batch]
        left = np.hstack([user_vectors[rows], np.ones((rows.size, 1), np.float32)]).astype(np.float32)
        scores = left @ right
        tr = train[rows]
        r = np.repeat(np.arange(rows.size), np.diff(tr.indptr))
        c = cand.position[tr.indices]
        scores[r[c >= 0], c[c >= 0]] = -np.inf

        te = test[rows]
        te_r = np.repeat(np.arange(rows.size), np.diff(te.indptr))
        te_c = cand.position[te.indices]
        keep = te_c >= 0
        te_r, te_c = te_r[keep], te_c[keep]
        n_rel = np.bincount(te_r, minlength=rows.size)
        has = n_rel > 0
        if not has.any():
            continue

        cols, values = top_k(scores, k)
        valid = np.isfinite(values)
        recommended[cols[valid]] = True
        width = scores.shape[1]
        test_keys = np.sort(te_r.astype(np.int64) * width + te_c)
        hit = np.isin(np.arange(rows.size)[:, None].astype(np.int64) * width + cols, test_keys) & valid
        hits = hit.sum(axis=1)
        dcg = (hit * discount[: hit.shape[1]]).sum(axis=1)
        ideal = np.cumsum(discount)[np.minimum(n_rel, k) - 1]

        sums["precision"] += float((hits[has] / k).sum())
        sums["recall"] += float((hits[has] / n_rel[has]).sum())
        sums["ndcg"] += float((dcg[has] / ideal[has]).sum())
        counted += int(has.sum())
        if not auc:
            sums["auc"] += 0.5 * int(has.sum())
            continue
        # AUC: for each held-out item, the share of the user's negatives scored below it.
        pos_scores = scores[te_r, te_c]
        above = np.empty(te_r.size, dtype=np.int64)
        for s in range(0, te_r.size, 512):
            sl = slice(s, s + 512)
            above[sl] = (scores[te_r[sl]] > pos_scores[sl, None]).sum(axis=1)
        # Held-out items scored above this one are not negatives.
        order = np.lexsort((-pos_scores, te_r))
        first = np.searchsorted(te_r[order], te_r[order])
        above_pos = np.empty_like(above)
        above_pos[order] = np.arange(order.size) - first
        n_train = np.bincount(r[c >= 0], minlength=rows.size)
        negatives = width - n_train - n_rel
        neg_above = above - above_pos
        with np.errstate(invalid="ignore", divide="ignore"):
            pair_auc = 1.0 - neg_above / negatives[te_r]
        pair_auc = np.where(negatives[te_r] > 0, pair_auc, 0.5)
        user_auc = np.bincount(te_r, weights=pair_auc, minlength=rows.size) / np.maximum(n_rel, 1)

        sums["auc"] += float(user_auc[has].sum())
    if counted == 0:
        return Metrics(0.0, 0.0, 0.0, 0.5, 0.0, 0)
    return Metrics(
        precision=sums["precision"] / counted,
        recall=sums["recall"] / counted,
        ndcg=sums["ndcg"] / counted,
        auc=sums["auc"] / counted,
        coverage=float(recommended.sum()) / max(cand.items.size, 1),
        users=counted,
    )
