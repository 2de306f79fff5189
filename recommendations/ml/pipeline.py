"""Choosing a model on two holdouts, then refitting it on all data.

``train(data, settings)`` is everything between "arrays from the database" and "vectors to
score with":

1. **Holdouts.**  The most recent share of each customer's interactions is held out (the
   *time holdout*), and so is every row of a sample of the books that sold in that period
   (the *cold-item holdout*: books the model will see as new).  Successes are held-out rows
   of the *target* sources (purchases by default), and lists are scored as they will be
   shown: without what the customer touched before the cut.
2. **Search.**  Optuna tries the configured candidates first, then proposes others over the
   families (LightFM, ALS), their hyper-parameters, the sources' scales and the features,
   pruning at epoch checkpoints, within a budget of trials and seconds (:mod:`.search`).
   The two best families may be blended.
3. **New books.**  The chosen model's scores and the metadata tower's are calibrated into
   chances of a purchase (:mod:`.coldstart`); the cap on new books' slots is the one that
   served the holdout best, unless the settings fix it.
4. **Refit** the choice on all the data, so every customer gets a vector.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from . import coldstart
from . import evaluate as ev
from . import search as srch
from .als import ALSHyper
from .coldstart import Calibration, ContentTower
from .families import FAMILIES, ALSFamilyTrainer, Config, Factors, LightFMTrainer, blend, score_spread
from .ids import IdMap, distinct
from .matrices import DataError, Interactions, combine
from .scoring import popularity, score_users
from .train import Hyper

logger = logging.getLogger(__name__)


@dataclass
class SourceData:
    """One interaction source as matrix rows: who, what, how much (before scaling), when."""

    name: str
    user: np.ndarray
    item: np.ndarray
    value: np.ndarray
    time: np.ndarray
    scale: float = 1.0
    transform: str = "log1p"  # or "linear"
    target: bool = False  # its held-out rows count as successes

    def weights(self, scale: float | None = None) -> np.ndarray:
        v = np.asarray(self.value, dtype=np.float64)
        if not np.isfinite(v).all():
            bad = np.flatnonzero(~np.isfinite(v))
            raise DataError(
                f"Source {self.name!r}: {bad.size} weights are NaN or infinite "
                f"(first: user row {self.user[bad[0]]}, item row {self.item[bad[0]]})."
            )
        if (v < 0).any():
            raise DataError(f"Source {self.name!r}: {int((v < 0).sum())} weights are negative.")
        w = np.log2(1.0 + v) if self.transform == "log1p" else v
        return w * (self.scale if scale is None else scale)


@dataclass
class TrainingData:
    users: IdMap
    items: IdMap
    sources: list[SourceData]
    item_metadata: sp.csr_matrix  # (n_items, n_metadata), binary
    item_metadata_names: list[str]
    allowed: np.ndarray  # items that may be recommended
    user_attributes: sp.csr_matrix | None = None
    user_attribute_names: list[str] = field(default_factory=list)
    max_history_features: int = 20
    edges: dict = field(default_factory=dict)  # bucket edges of number features
    weight_clip_quantile: float = 0.99

    @property
    def n_users(self) -> int:
        return len(self.users)

    @property
    def n_items(self) -> int:
        return len(self.items)

    @property
    def target_sources(self) -> list[SourceData]:
        """The sources whose rows are successes; all of them when none is marked."""
        marked = [s for s in self.sources if s.target]
        return marked or list(self.sources)

    def interactions(self, scales: dict[str, float] | None = None) -> Interactions:
        """All sources combined per (customer, book), each scaled (``scales`` over the
        sources' own); a source scaled to 0 is left out."""
        scales = scales or {}
        parts = [s for s in self.sources if s.user.size and scales.get(s.name, s.scale) > 0]
        if not parts:
            return combine(np.empty(0), np.empty(0), np.empty(0), np.empty(0), self.n_users, self.n_items)
        inter = combine(
            np.concatenate([s.user for s in parts]),
            np.concatenate([s.item for s in parts]),
            np.concatenate([s.weights(scales.get(s.name)) for s in parts]),
            np.concatenate([s.time for s in parts]),
            self.n_users,
            self.n_items,
        )
        # No single pair may weigh more than the heaviest 1 % of pairs do: one customer
        # reloading a page a million times is one strong interest, not a million.
        if len(inter) and self.weight_clip_quantile < 1:
            cap = np.quantile(inter.weight, self.weight_clip_quantile)
            inter.weight = np.minimum(inter.weight, cap).astype(np.float32)
        return inter

    def target_keys(self) -> np.ndarray:
        """Sorted ``user * n_items + item`` of every pair found in a target source."""
        parts = [s.user.astype(np.int64) * self.n_items + s.item for s in self.target_sources if s.user.size]
        return distinct(np.concatenate(parts)) if parts else np.empty(0, np.int64)


# -- settings ---------------------------------------------------------------------------------
@dataclass
class EvaluationSettings:
    enabled: bool = True
    k: int = 10
    holdout: float = 0.2
    min_interactions: int = 3
    max_users: int = 10000
    metric: str = "precision"
    min_users: int = 10
    cold_items: float = 0.1  # share of the books sold in the held-out period held out whole
    min_cold_buyers: int = 10  # fewer customers bought a held-out book: no new-book calibration


@dataclass
class SearchSettings:
    trials: int = 40
    seconds: float | None = None  # None: time_ratio × a full fit of the first candidate
    min_seconds: float = 120.0  # ... but never less than this (small stores: fits take seconds)
    time_ratio: float = 1.25
    families: tuple[str, ...] = FAMILIES
    max_epochs: int | None = None  # LightFM epochs tried at most; None: twice LIGHTFM's
    checkpoints: int = 6  # epoch checkpoints up to the default epochs (more beyond)
    patience: int = 2  # checkpoints without improvement before a trial stops
    scales: tuple[float, ...] = (0.0, 0.05, 0.1, 0.25, 0.5, 1.0)
    blend: bool = True


@dataclass
class NewItemSettings:
    enabled: bool = True
    max_share: float | None = None  # None: the share the cold-item holdout chose
    max_loss: float = 0.02  # the share of the holdout's precision new books may cost


@dataclass
class TrainSettings:
    hyper: Hyper = field(default_factory=Hyper)
    als: ALSHyper = field(default_factory=ALSHyper)
    candidates: list[Config] = field(default_factory=lambda: [Config("hybrid")])
    evaluation: EvaluationSettings = field(default_factory=EvaluationSettings)
    search: SearchSettings = field(default_factory=SearchSettings)
    new_items: NewItemSettings = field(default_factory=NewItemSettings)


# -- result ----------------------------------------------------------------------------------
@dataclass
class NewItems:
    """How new books are served: the tower, each customer's profile, the calibration."""

    tower: ContentTower
    profiles: sp.csr_matrix
    new: np.ndarray  # item rows served as new books (allowed, no interactions)
    calibration: Calibration | None

    @property
    def active(self) -> bool:
        return bool(self.new.size) and self.calibration is not None and self.calibration.usable and self.max_share > 0

    @property
    def max_share(self) -> float:
        return 0.0 if self.calibration is None else float(self.calibration.max_share)


@dataclass
class TrainResult:
    factors: Factors
    interactions: Interactions
    config: Config
    epochs: dict  # family -> epochs (or iterations) of the refit
    decision: str  # "model", "popularity" or "model (not evaluated)"
    metrics: dict
    new_items: NewItems | None
    item_feature_names: list[str]
    user_feature_names: list[str]
    seconds: dict[str, float]


# -- the holdouts ------------------------------------------------------------------------------
@dataclass
class Holdout:
    """The time holdout and the cold-item holdout, over the pairs of all sources at scale 1."""

    train_keys: np.ndarray  # sorted keys of the training part (cold books' pairs left out)
    cold: np.ndarray  # bool per item: held out whole
    seen: sp.csr_matrix  # users × items: touched before the cut (never a success)
    truth_warm: sp.csr_matrix  # held-out target pairs of the other books
    truth_cold: sp.csr_matrix  # held-out target pairs of the cold books
    users: np.ndarray  # evaluated customers
    allowed_warm: np.ndarray
    stats: dict

    @property
    def truth_all(self) -> sp.csr_matrix:
        return sp.csr_matrix(self.truth_warm + self.truth_cold)

    def train_part(self, inter: Interactions) -> Interactions:
        """``inter``'s pairs in the training part (a configuration's own weights)."""
        keys = inter.user.astype(np.int64) * inter.n_items + inter.item
        pos = np.minimum(np.searchsorted(self.train_keys, keys), max(self.train_keys.size - 1, 0))
        inside = (self.train_keys.size > 0) & (self.train_keys[pos] == keys) if keys.size else np.zeros(0, bool)
        return inter.subset(inside)


def build_holdout(data: TrainingData, settings: EvaluationSettings, rng: np.random.Generator) -> Holdout | str:
    """The holdouts of ``data``, or why there are none (a sentence for the run's record)."""
    base = data.interactions({s.name: 1.0 for s in data.sources})
    if len(base) == 0:
        return "there are no interactions"
    test_mask = ev.time_split(base, holdout=settings.holdout, min_interactions=settings.min_interactions)
    keys = base.user.astype(np.int64) * data.n_items + base.item
    target = np.isin(keys, data.target_keys(), assume_unique=False)
    success = test_mask & target & data.allowed[base.item]
    users = distinct(base.user[success])
    if users.size < settings.min_users:
        return (
            f"only {users.size} customers have a held-out {'/'.join(s.name for s in data.target_sources)} row "
            f"(need {settings.min_users}); trained without evaluation"
        )
    # The cold-item holdout: a sample of the books that sold in the held-out period, held out
    # whole (every row of theirs, before and after the cut), as if they were new.
    sold = distinct(base.item[success])
    n_cold = int(np.floor(settings.cold_items * sold.size)) if sold.size >= 10 else 0
    cold = np.zeros(data.n_items, dtype=bool)
    if n_cold:
        cold[rng.choice(sold, size=n_cold, replace=False)] = True
    train_mask = ~test_mask & ~cold[base.item]
    if not (train_mask & ~cold[base.item]).any():
        return "nothing is left to train on after the holdout"

    def pairs(mask: np.ndarray) -> sp.csr_matrix:
        m = sp.csr_matrix(
            (np.ones(int(mask.sum()), np.float32), (base.user[mask], base.item[mask])), shape=(data.n_users, data.n_items)
        )
        m.sum_duplicates()
        return m

    if users.size > settings.max_users:
        users = np.sort(rng.choice(users, size=settings.max_users, replace=False))
    warm_success, cold_success = success & ~cold[base.item], success & cold[base.item]
    cold_buyers = distinct(base.user[cold_success])
    stats = {
        "share": settings.holdout,
        "held_out_pairs": int(test_mask.sum()),
        "successes": int(success.sum()),
        "evaluated_users": int(users.size),
        "target": [s.name for s in data.target_sources],
        "cold_items": int(cold.sum()),
        "cold_successes": int(cold_success.sum()),
        "cold_buyers": int(cold_buyers.size),
    }
    return Holdout(
        train_keys=np.sort(keys[train_mask]),
        cold=cold,
        seen=pairs(~test_mask),
        truth_warm=pairs(warm_success),
        truth_cold=pairs(cold_success),
        users=users,
        allowed_warm=data.allowed & ~cold,
        stats=stats,
    )


# -- configurations ------------------------------------------------------------------------------
def _trainer(data: TrainingData, inter: Interactions, config: Config, settings: TrainSettings):
    if config.family == "als":
        return ALSFamilyTrainer(inter, config, settings.als)
    if config.family == "lightfm":
        return LightFMTrainer(inter, data.item_metadata, data.user_attributes, config, settings.hyper,
                              data.max_history_features)  # fmt: skip
    raise ValueError(f"unknown model family {config.family!r}")


def default_epochs(config: Config, settings: TrainSettings) -> int:
    if config.family == "als":
        return int(config.params.get("iterations", settings.als.iterations))
    return int(config.params.get("epochs", settings.hyper.epochs))


def checkpoints(config: Config, settings: TrainSettings) -> list[int]:
    """The epoch counts at which a trial is measured: evenly up to the configuration's
    epochs, and on at the same pace up to the search's maximum (early stopping decides)."""
    epochs = default_epochs(config, settings)
    if config.family == "als":  # ALS converges in a few iterations; each measurement costs more
        return sorted({max(1, epochs // 2), epochs, 2 * epochs})
    else:
        top = settings.search.max_epochs or 2 * epochs
        step = max(1, round(epochs / max(settings.search.checkpoints, 1)))
    return sorted({*range(step, top + 1, step), epochs})


def _interactions_of(data: TrainingData, config: Config) -> Interactions:
    inter = data.interactions(config.source_scales)
    if len(inter) == 0:
        raise DataError(f"Configuration {config.name!r} leaves no interactions to train on (every source scaled to 0).")
    return inter


# -- training ----------------------------------------------------------------------------------
def train(data: TrainingData, settings: TrainSettings, *, progress: Callable[[str, float], None] | None = None,
          rng_seed: int | None = None) -> TrainResult:  # fmt: skip
    """Choose a configuration on the holdouts (when enabled and possible) and refit it on all data."""
    if not settings.candidates:
        raise ValueError("at least one candidate configuration is needed")
    progress = progress or (lambda stage, share: None)
    seconds: dict[str, float] = {}
    if len(data.interactions()) == 0:
        raise DataError("There are no interactions to train on.")
    rng = np.random.default_rng(settings.hyper.random_state if rng_seed is None else rng_seed)
    k = settings.evaluation.k
    metrics: dict = {"k": k, "trials": []}
    choice = _Choice(settings.candidates[0], {settings.candidates[0].family: default_epochs(settings.candidates[0], settings)},
                     "model (not evaluated)", None)  # fmt: skip

    started = time.perf_counter()
    holdout = None
    if settings.evaluation.enabled:
        holdout = build_holdout(data, settings.evaluation, rng)
        if isinstance(holdout, str):
            metrics["skipped"] = holdout
            holdout = None
        elif not data.allowed.any():
            metrics["skipped"] = "no book may be recommended"
            holdout = None
    if holdout is not None:
        choice = _choose(data, settings, holdout, metrics, progress, rng)
    seconds["evaluate"] = time.perf_counter() - started

    started = time.perf_counter()
    progress("fit", 0.0)
    factors, inter, feature_names = _refit(data, settings, choice, progress)
    seconds["fit"] = time.perf_counter() - started

    new_items = _new_items(data, inter, choice.calibration, settings.new_items)
    metrics["chosen"] = {"candidate": choice.config.name, "family": choice.config.family, "epochs": choice.epochs,
                         "config": choice.config.describe()}  # fmt: skip
    metrics["decision"] = choice.decision
    metrics["new_items"] = {
        "served": int(new_items.new.size) if new_items else 0,
        "max_share": new_items.max_share if new_items else 0.0,
        "calibrated": bool(new_items and new_items.calibration is not None),
    }
    return TrainResult(
        factors=factors, interactions=inter, config=choice.config, epochs=choice.epochs, decision=choice.decision,
        metrics=metrics, new_items=new_items, item_feature_names=feature_names[1],
        user_feature_names=feature_names[0], seconds=seconds,
    )  # fmt: skip


@dataclass
class _Choice:
    config: Config
    epochs: dict
    decision: str
    calibration: Calibration | None


@dataclass
class _Kept:
    """A trial's model at its best checkpoint, kept for blending and calibration."""

    factors: Factors
    config: Config
    epochs: int


def _metric_key(settings: EvaluationSettings) -> str:
    return "auc" if settings.metric == "auc" else f"{settings.metric}@{settings.k}"


def _choose(data, settings: TrainSettings, holdout: Holdout, metrics: dict, progress, rng) -> _Choice:
    es, k = settings.evaluation, settings.evaluation.k
    key = _metric_key(es)
    metrics["holdout"] = holdout.stats

    # Popularity on the same split: distinct customers per book in the training part.
    base_train = holdout.train_part(data.interactions({s.name: 1.0 for s in data.sources}))
    pop = popularity(base_train.user, base_train.item, data.n_items)
    pop_metrics = ev.evaluate(
        np.ones((data.n_users, 1), np.float32), np.zeros((data.n_items, 1), np.float32), pop,
        holdout.seen, holdout.truth_warm, k=k, users=holdout.users, allowed=holdout.allowed_warm,
    )  # fmt: skip
    metrics["popularity"] = pop_metrics.as_dict(k)

    families = [f for f in settings.search.families if f in FAMILIES]
    seeds = [c for c in settings.candidates if c.family in FAMILIES]
    sources = {s.name: float(s.scale) for s in data.sources}
    fixed = {s.name for s in data.target_sources}
    has_meta = data.item_metadata.shape[1] > 0
    best_kept: dict[str, tuple[float, _Kept]] = {}

    seed_params = [(c.name, _params_of(c, settings, sources, fixed, has_meta)) for c in seeds]
    # A categorical's choices must hold every seed's value (Optuna refuses others).
    seen_values: dict[str, set] = {}
    for _, params in seed_params:
        for name, value in params.items():
            seen_values.setdefault(name, set()).add(value)

    def build(trial) -> Config:
        config = _suggest(trial, settings, families or ["lightfm"], sources, fixed, has_meta, seen_values)
        seed_name = trial.user_attrs.get("name")
        return dataclasses.replace(config, name=seed_name) if seed_name else config

    def run(config: Config, report) -> srch.Outcome:
        try:
            inter = holdout.train_part(_interactions_of(data, config))
            trainer = _trainer(data, inter, config, settings)
        except DataError as exc:
            raise srch.Failed(str(exc)) from exc
        best: srch.Outcome | None = None
        stale = 0
        plan = checkpoints(config, settings)
        for step in plan:
            try:
                trainer.advance(step)
            except DataError as exc:
                if best is None:
                    raise srch.Failed(str(exc)) from exc
                break
            f = trainer.factors()
            m = _measure(f, holdout, k, auc=(key == "auc"))
            value = float(m[key])
            if best is None or value > best.value:
                best, stale = srch.Outcome(value, step, m, _Kept(f, config, step)), 0
            else:
                stale += 1
            best.trained = step
            try:
                # ALS costs seconds: it is never pruned nor compared with LightFM by epoch.
                report(value, step, config.family == "lightfm")
            except (srch.Pruned, srch.OutOfTime) as exc:
                exc.outcome = best
                raise
            if stale >= settings.search.patience:
                break
        return best

    def on_trial(record: srch.TrialRecord) -> None:
        row = {"trial": record.number, "candidate": record.name, "family": record.config.family,
               "state": record.state, "epochs": record.epochs, "seconds": record.seconds,
               "config": record.config.describe(), **record.metrics}  # fmt: skip
        metrics["trials"].append(row)
        progress("evaluate", min(len(metrics["trials"]) / max(settings.search.trials, 1), 1.0))
        if record.keep is not None and record.value is not None:
            fam = record.config.family
            if fam not in best_kept or record.value > best_kept[fam][0]:
                best_kept[fam] = (record.value, record.keep)
        logger.info("trial %s (%s) %s: %s=%s @%s", record.number, record.name, record.state, key, record.value, record.epochs)

    train_share = max(len(holdout.train_keys), 1) / max(len(data.interactions()), 1)

    def unit(name: str, seconds: float, epochs: int) -> float | None:
        """The seconds a full fit of the first candidate would take: its trial's pace per
        epoch at its first checkpoint (a measurement included), over all the data, for its
        default epochs."""
        if name != seeds[0].name or epochs <= 0:
            return None
        return seconds / epochs * default_epochs(seeds[0], settings) / train_share

    budget = srch.Budget(settings.search.trials, settings.search.seconds, settings.search.time_ratio,
                         settings.hyper.random_state, unit if seeds else None, settings.search.min_seconds)  # fmt: skip
    srch.search(build, run, seed_params, budget, on_trial=on_trial)
    if not best_kept:
        raise DataError("No configuration could be trained: " + "; ".join(
            f"{t['candidate']}: {t['state']}" for t in metrics["trials"]) )  # fmt: skip

    # The best single model, then (optionally) a blend of the two best families.
    family, (value, kept) = max(best_kept.items(), key=lambda kv: kv[1][0])
    chosen_factors, config, epochs = kept.factors, kept.config, {kept.config.family: kept.epochs}
    best_row = next(r for r in metrics["trials"] if r["family"] == family and r.get(key) == value)
    best_metrics = {kk: best_row[kk] for kk in best_row if kk in {f"precision@{k}", f"recall@{k}", f"ndcg@{k}", "auc", "coverage", "users"}}
    if settings.search.blend and len(best_kept) >= 2:
        blended = _try_blends(data, holdout, best_kept, settings, key, value, rng)
        metrics["blends"] = blended["rows"]
        if blended["best"] is not None:
            value, chosen_factors, config, epochs, best_metrics = blended["best"]
    # The chosen model's AUC too (the trials skip it: it costs more than the rest together).
    metrics["model"] = best_metrics if key == "auc" else _measure(chosen_factors, holdout, k, auc=True)

    calibration = None
    if settings.new_items.enabled:
        calibration = _calibrate(data, holdout, chosen_factors, config, settings, metrics)
    decision = "popularity" if value <= metrics["popularity"].get(key, 0.0) else "model"
    return _Choice(config, epochs, decision, calibration)


def _suggest(trial, settings: TrainSettings, families, sources, fixed, has_meta, seeded: dict) -> Config:
    """One configuration from Optuna's ``trial`` (define-by-run: each family its own space).
    ``seeded`` holds the seeds' values, which each categorical's choices must include."""

    def choices(name: str, values) -> list:
        return sorted({*values, *seeded.get(name, ())}, key=lambda v: (str(type(v)), v))

    def span(name: str, low: float, high: float) -> tuple[float, float]:
        values = [float(v) for v in seeded.get(name, ())]
        return min([low, *values]), max([high, *values])

    family = trial.suggest_categorical("family", choices("family", families))
    scales = {}
    for name, own in sources.items():
        if name in fixed:
            continue
        scales[name] = float(trial.suggest_categorical(f"scale:{name}", choices(f"scale:{name}", [*settings.search.scales, float(own)])))
    h, a = settings.hyper, settings.als
    if family == "als":
        params = {
            "factors": int(trial.suggest_categorical("als_factors", choices("als_factors", [32, 64, 128, 256, a.factors]))),
            "regularization": trial.suggest_float("als_regularization", *span("als_regularization", 1e-3, 100.0), log=True),
            "alpha": trial.suggest_float("als_alpha", *span("als_alpha", 0.1, 100.0), log=True),
        }
        return Config(f"als #{trial.number}", "als", params, scales)
    params = {
        "no_components": int(trial.suggest_categorical("lfm_components", choices("lfm_components", [16, 32, 64, 128, h.no_components]))),
        "learning_rate": trial.suggest_float("lfm_learning_rate", *span("lfm_learning_rate", 0.005, 0.2), log=True),
        "loss": trial.suggest_categorical("lfm_loss", choices("lfm_loss", ["warp", "warp-kos", h.loss])),
        "item_alpha": trial.suggest_float("lfm_item_alpha", *span("lfm_item_alpha", 1e-9, 1e-3), log=True),
        "user_alpha": trial.suggest_float("lfm_user_alpha", *span("lfm_user_alpha", 1e-9, 1e-3), log=True),
        "max_sampled": trial.suggest_int("lfm_max_sampled", *map(int, span("lfm_max_sampled", 5, 50)), log=True),
    }
    metadata = bool(trial.suggest_categorical("lfm_item_metadata", [True, False])) if has_meta else False
    history = bool(trial.suggest_categorical("lfm_history", [False, True])) if has_meta else False
    return Config(f"lightfm #{trial.number}", "lightfm", params, scales, item_metadata=metadata, history_features=history)


def _params_of(config: Config, settings: TrainSettings, sources, fixed, has_meta) -> dict:
    """The Optuna params that make :func:`_suggest` return ``config`` (a seed trial)."""
    params: dict = {"family": config.family}
    for name, own in sources.items():
        if name not in fixed:
            params[f"scale:{name}"] = float(config.source_scales.get(name, own))
    if config.family == "als":
        a = settings.als.with_(**{k: v for k, v in config.params.items() if k in ALSHyper.__dataclass_fields__})
        params.update(als_factors=a.factors, als_regularization=a.regularization, als_alpha=a.alpha)
        return params
    h = settings.hyper.with_(**{k: v for k, v in config.params.items() if k in Hyper.__dataclass_fields__})
    params.update(
        lfm_components=h.no_components, lfm_learning_rate=h.learning_rate, lfm_loss=h.loss,
        lfm_item_alpha=max(h.item_alpha, 1e-9), lfm_user_alpha=max(h.user_alpha, 1e-9), lfm_max_sampled=h.max_sampled,
    )  # fmt: skip
    if has_meta:
        params.update(lfm_item_metadata=bool(config.item_metadata), lfm_history=bool(config.history_features))
    return params


def _try_blends(data, holdout: Holdout, best_kept, settings: TrainSettings, key, best_value, rng) -> dict:
    """Blends of the two best families' holdout models, each part's scores put on one footing
    by their spread; the holdout keeps a blend only if it beats the best single model."""
    k = settings.evaluation.k
    (va, a), (vb, b) = sorted(best_kept.values(), key=lambda x: -x[0])[:2]
    sa = score_spread(a.factors, holdout.users, rng)
    sb = score_spread(b.factors, holdout.users, rng)
    rows, best = [], None
    for w in (0.25, 0.5, 0.75):
        wa, wb = w / sa, (1 - w) / sb
        f = blend([(a.factors, wa), (b.factors, wb)])
        m = _measure(f, holdout, k, auc=(key == "auc"))
        rows.append({"parts": [a.config.name, b.config.name], "weight": w, **m})
        if m[key] > best_value and (best is None or m[key] > best[0]):
            cfg = Config(
                f"blend of {a.config.name} and {b.config.name}", "blend",
                parts=((a.config, float(wa)), (b.config, float(wb))),
            )  # fmt: skip
            best = (m[key], f, cfg, {a.config.family: a.epochs, b.config.family: b.epochs},
                    {kk: m[kk] for kk in m if kk != "seconds"})  # fmt: skip
    return {"rows": rows, "best": best}


def _calibrate(data, holdout: Holdout, factors: Factors, config: Config, settings: TrainSettings, metrics: dict):
    """New books on the holdouts: the tower's lists of cold books, the calibration of both
    scores into chances of a purchase, and the cap on new books' slots that served best.

    The boost, the cap and the figures come from two folds of the held-out books: the new
    books' curve is fitted on one half of them and judged on the lists of the other half.
    (Folds of customers would not do: the same few books would sit on both sides, and a
    curve that learnt those books' appeal would flatter itself.)
    """
    es, k = settings.evaluation, settings.evaluation.k
    cold_rows = np.flatnonzero(holdout.cold & data.allowed)
    if not holdout.cold.any() or holdout.stats["cold_buyers"] < es.min_cold_buyers:
        metrics["cold"] = {"skipped": f"only {holdout.stats['cold_buyers']} customers bought a held-out book "
                                      f"(need {es.min_cold_buyers}); new books are not calibrated"}  # fmt: skip
        return None
    users = holdout.users
    scales = _scales_of(config)
    inter = holdout.train_part(data.interactions(scales))
    trained = np.bincount(inter.item, minlength=data.n_items) > 0
    tower = ContentTower(data.item_metadata, trained, data.item_metadata_names)
    if not tower.usable:
        metrics["cold"] = {"skipped": "the books have no metadata to score new books by"}
        return None
    profiles = tower.profiles(inter.matrix())[users]
    length = 2 * k  # the warm curve needs the scores just below the cut too
    warm_items, warm_scores = _warm_lists(factors, holdout, users, length)
    new_items, new_scores = coldstart.top_new(tower, profiles, cold_rows, k, exclude=holdout.seen, users=users)
    truth = holdout.truth_all[users]
    warm_hits = _hits(truth, warm_items)
    new_hits = _hits(truth, new_items)
    valid_w, valid_n = warm_items >= 0, new_items >= 0
    final = Calibration.fit(warm_scores[valid_w], warm_hits[valid_w], new_scores[valid_n], new_hits[valid_n])
    if not final.usable:
        metrics["cold"] = {"skipped": "no held-out new book was bought from the tower's lists; new books get no slots"}
        return None
    halves = [cold_rows[0::2], cold_rows[1::2]]
    lists = [coldstart.top_new(tower, profiles, half, k, exclude=holdout.seen, users=users) for half in halves]
    folds = []  # (the other half's calibration, this half's lists and their hits)
    for f in (0, 1):
        items_o, scores_o = lists[1 - f]
        hits_o = _hits(truth, items_o)
        cal = Calibration.fit(warm_scores[valid_w], warm_hits[valid_w], scores_o[items_o >= 0], hits_o[items_o >= 0])
        if cal.usable:
            folds.append((cal, *lists[f], _hits(truth, lists[f][0])))

    # The price of new books: a boost to their chances and a cap on their slots, each pair
    # judged by the purchases the curves expect of its lists (smooth, where counting the few
    # purchases would be noise).
    slot_rate = float(warm_hits[:, :k][valid_w[:, :k]].mean()) if valid_w[:, :k].any() else 0.0
    boosts = [0.0] + [slot_rate * f for f in (0.1, 0.2, 0.35, 0.5, 0.75, 1.0, 1.5, 2.0)]
    expected = np.zeros((len(boosts), k + 1, 2))  # purchases, purchases of held-out books
    # The purchases that did happen, per customer, as what each pair changes against no new books.
    change = np.zeros((len(boosts), k + 1, users.size))
    base = _hits(truth, warm_items[:, :k]).sum(axis=1).astype(np.float64)
    for cal, items_f, scores_f, _ in folds:
        valid_f = items_f >= 0
        p_warm = np.where(valid_w, cal.warm_chance(warm_scores), 0.0)
        p_new = np.where(valid_f, cal.cold_chance(scores_f, boosted=False), 0.0)
        for b_i, boost in enumerate(boosts):
            cal.boost = boost
            mapped = np.where(valid_f, cal.to_warm(scores_f), -np.inf)
            for m in range(k + 1):
                items, _, p = coldstart.merge(warm_items, warm_scores, items_f, mapped, k, m, extra=(p_warm, p_new))
                is_new = (items >= 0) & holdout.cold[np.maximum(items, 0)]
                expected[b_i, m] += (p.sum(), (p * is_new).sum())
                change[b_i, m] += _hits(truth, items).sum(axis=1) - base
    # Of the pairs expected to keep the precision within max_loss of the best, the one that
    # brings new books to the most buyers (then the smallest cap, then the smallest boost).
    # The purchases that happened must not contradict it: a pair whose loss exceeds max_loss
    # by more than one standard error of the customers' changes is out too.
    loss = settings.new_items.max_loss
    feasible = expected[..., 0] >= (1.0 - loss) * expected[..., 0].max()
    error = change.std(axis=-1) * np.sqrt(users.size)  # of the total change, customers independent
    feasible &= change.sum(axis=-1) >= -loss * base.sum() * len(folds) - error
    score = np.where(feasible, expected[..., 1], -1.0)
    b_best, m_best = min(zip(*np.nonzero(score >= score.max() * (1 - 1e-9))), key=lambda bm: (bm[1], bm[0]))
    if expected[b_best, m_best, 1] <= 0:
        b_best, m_best = 0, 0  # no slots: the boost is moot
    final.boost = boosts[b_best]
    chosen_share = m_best / k
    fixed_share = settings.new_items.max_share
    final.max_share = chosen_share if fixed_share is None else float(fixed_share)

    # What the choice does to purchases that happened, in the same folds (each half of the
    # held-out books served with the other half's curve).  Each book is in one fold: the
    # folds' gains and losses add up to those of all the held-out books.
    base_hits = float(_hits(truth, warm_items[:, :k]).sum())
    record = np.array([[base_hits, 0.0, 0.0], [base_hits, 0.0, 0.0]])  # without / with: hits, new-book hits, slots
    m_served = coldstart.slots(final.max_share, k)
    for cal, items_f, scores_f, _ in folds:
        cal.boost = final.boost
        mapped = np.where(items_f >= 0, cal.to_warm(scores_f), -np.inf)
        items, _ = coldstart.merge(warm_items, warm_scores, items_f, mapped, k, m_served)
        h = _hits(truth, items)
        is_new = (items >= 0) & holdout.cold[np.maximum(items, 0)]
        record[1] += (h.sum() - base_hits, (h & is_new).sum(), is_new.sum())

    counted = np.asarray(truth.sum(axis=1)).ravel() > 0
    cold_buyers = np.asarray(holdout.truth_cold[users].sum(axis=1)).ravel() > 0
    hits, cold_hits, cold_slots = record[1]
    metrics["cold"] = {
        f"precision@{k}": round(float(cold_hits / max(cold_buyers.sum(), 1) / k), 6),
        "share_of_slots": round(float(cold_slots / max(users.size * k, 1)), 6),
        "buyers": int(cold_buyers.sum()),
        "books": int(holdout.cold.sum()),
    }
    metrics["overall"] = {
        f"precision@{k}": round(float(hits / max(counted.sum(), 1) / k), 6),
        f"precision@{k} without new books": round(float(record[0, 0] / max(counted.sum(), 1) / k), 6),
        "users": int(counted.sum()),
    }
    metrics["new_items_share"] = {"chosen_by_holdout": chosen_share, "served": final.max_share,
                                  "boost": round(final.boost, 6), "max_loss": settings.new_items.max_loss}  # fmt: skip
    return final


def _measure(f: Factors, holdout: Holdout, k: int, *, auc: bool) -> dict:
    """``f``'s metrics on the time holdout (known books), AUC only when asked."""
    m = ev.evaluate(
        f.user_vectors, f.item_vectors, f.item_biases, holdout.seen, holdout.truth_warm,
        k=k, users=holdout.users, allowed=holdout.allowed_warm, auc=auc,
    ).as_dict(k)  # fmt: skip
    if not auc:
        m.pop("auc")
    return m


def _scales_of(config: Config) -> dict:
    if config.family == "blend":
        return dict(config.parts[0][0].source_scales)
    return dict(config.source_scales)


def _warm_lists(factors: Factors, holdout: Holdout, users: np.ndarray, length: int):
    items = np.full((users.size, length), -1, np.int64)
    scores = np.full((users.size, length), -np.inf, np.float32)
    pos = np.full(factors.user_vectors.shape[0], -1, np.int64)
    pos[users] = np.arange(users.size)
    for rows, top, values in score_users(
        factors.user_vectors, np.zeros_like(factors.user_biases), factors.item_vectors, factors.item_biases,
        k=length, allowed=holdout.allowed_warm, exclude=holdout.seen, users=users,
    ):  # fmt: skip
        items[pos[rows], : top.shape[1]] = top
        scores[pos[rows], : values.shape[1]] = values
    return items, scores


def _hits(truth: sp.csr_matrix, items: np.ndarray) -> np.ndarray:
    """``items``' entries that are in the same row of ``truth`` (``-1``: never)."""
    truth = sp.csr_matrix(truth)
    n, width = items.shape
    keys = np.sort(np.repeat(np.arange(n, dtype=np.int64), np.diff(truth.indptr)) * (truth.shape[1] + 1) + truth.indices)
    probe = np.arange(n, dtype=np.int64)[:, None] * (truth.shape[1] + 1) + np.maximum(items, 0)
    pos = np.minimum(np.searchsorted(keys, probe), max(keys.size - 1, 0))
    return (keys.size > 0) & (keys[pos] == probe) & (items >= 0) if keys.size else np.zeros(items.shape, bool)


# -- the refit on all data --------------------------------------------------------------------
def _refit(data: TrainingData, settings: TrainSettings, choice: _Choice, progress) -> tuple:
    config = choice.config
    parts = list(config.parts) if config.family == "blend" else [(config, 1.0)]
    fitted = []
    inter = None
    names = ([f"user={k}" for k in data.users.keys.tolist()], [f"item={k}" for k in data.items.keys.tolist()])
    total = sum(choice.epochs.get(c.family, default_epochs(c, settings)) for c, _ in parts) or 1
    done = 0
    for cfg, weight in parts:
        inter_c = _interactions_of(data, cfg)
        inter = inter if inter is not None else inter_c
        trainer = _trainer(data, inter_c, cfg, settings)
        epochs = choice.epochs.get(cfg.family, default_epochs(cfg, settings))
        marks = sorted({max(1, round(epochs * (i + 1) / 5)) for i in range(5)})
        for e in marks:
            trainer.advance(e)
            progress("fit", (done + e) / total)
        done += epochs
        fitted.append((trainer.factors(), weight))
        if cfg.family == "lightfm" and cfg.item_metadata:
            names = (names[0], names[1] + list(data.item_metadata_names))
    factors = fitted[0][0] if len(fitted) == 1 else blend(fitted)
    return factors, inter, names


def _new_items(data: TrainingData, inter: Interactions, calibration: Calibration | None,
               settings: NewItemSettings) -> NewItems | None:  # fmt: skip
    """The tower over all data, and the books it serves: allowed, and never touched."""
    if not settings.enabled or data.item_metadata.shape[1] == 0:
        return None
    touched = np.zeros(data.n_items, bool)
    for s in data.sources:
        touched[s.item] = True
    tower = ContentTower(data.item_metadata, touched, data.item_metadata_names)
    if not tower.usable:
        return None
    if calibration is not None and settings.max_share is not None:
        calibration.max_share = float(settings.max_share)
    profiles = tower.profiles(inter.matrix())
    new = np.flatnonzero(data.allowed & ~touched)
    return NewItems(tower, profiles, new, calibration)
