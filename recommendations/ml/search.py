"""The hyper-parameter search: Optuna's TPE sampler and median pruner, the only module that
imports ``optuna``.

The search does not know what it trains: it asks ``build(trial)`` for a configuration and
``run(config, report)`` for its holdout metric, where ``run`` calls ``report(value, step,
prunable)`` at each epoch checkpoint and stops when told (:class:`Pruned`, or
:class:`OutOfTime` once the budget is spent; it attaches its best checkpoint as ``outcome``).  The configurations the
settings name are tried first, in their order (``seeds``); TPE proposes the rest, within a
budget of trials and seconds.
"""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

logger = logging.getLogger(__name__)


class Pruned(Exception):
    """The pruner stopped this trial at a checkpoint: others did better at the same point."""


class Failed(Exception):
    """This configuration could not be trained (it diverged); the search goes on."""


class OutOfTime(Exception):
    """The search's time budget ran out during this trial; it keeps its best checkpoint."""


@dataclass
class Outcome:
    """What ``run`` returns: the best checkpoint's metric and whatever the caller keeps."""

    value: float
    epochs: int
    metrics: dict
    keep: object = None
    trained: int = 0  # epochs trained in all (the best checkpoint may be earlier)


@dataclass
class TrialRecord:
    number: int
    name: str
    config: object
    state: str  # complete, pruned, stopped (out of time), failed
    value: float | None
    epochs: int | None
    metrics: dict
    seconds: float
    keep: object = field(default=None, repr=False)
    trained: int = 0


@dataclass
class Budget:
    """At most ``trials`` trials and ``seconds`` seconds.  With ``seconds`` None, the search
    may take ``time_ratio`` × the first number ``unit(name, seconds, epochs)`` returns (the
    time a full fit of the default configuration would take, estimated from its pace at its
    first checkpoint), but at least ``min_seconds``."""

    trials: int = 40
    seconds: float | None = None
    time_ratio: float = 1.25
    seed: int = 42
    unit: Callable[[str, float, int], float | None] | None = None
    min_seconds: float = 0.0  # the clock started by ``unit`` never allows less than this


def search(
    build: Callable[[object], object],
    run: Callable[[object, Callable[..., None]], Outcome],
    seeds: list[tuple[str, dict]],
    budget: Budget,
    *,
    on_trial: Callable[[TrialRecord], None] | None = None,
) -> list[TrialRecord]:
    """Run the study; return every trial, seeds first.

    ``seeds`` are ``(name, params)`` pairs, enqueued as Optuna trials with fixed params.
    The time budget is checked at every checkpoint: a trial running past it stops and keeps
    its best checkpoint, and no new trial starts.
    """
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        sampler = optuna.samplers.TPESampler(
            seed=budget.seed, multivariate=True, group=True, n_startup_trials=max(len(seeds), 4)
        )
    # The median of earlier trials at the same epoch checkpoint: a configuration worse than
    # half of those before it at that point is stopped there (ALS trials report nothing and
    # are never pruned: they cost seconds).
    pruner = optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=0)
    study = optuna.create_study(direction="maximize", sampler=sampler, pruner=pruner)
    for name, params in seeds:
        study.enqueue_trial(params, user_attrs={"name": name}, skip_if_exists=False)

    records: list[TrialRecord] = []
    started = time.perf_counter()
    deadline = [None if budget.seconds is None else started + budget.seconds]

    def set_deadline(unit: float | None) -> None:
        if unit is None:
            return
        allowed = max(budget.min_seconds, budget.time_ratio * unit)
        deadline[0] = started + allowed
        logger.info("search budget: %.1f s (%.2f × %.1f s, at least %.0f s)", allowed, budget.time_ratio, unit,
                    budget.min_seconds)  # fmt: skip

    def objective(trial):
        trial_started = time.perf_counter()
        config = build(trial)
        name = trial.user_attrs.get("name") or getattr(config, "name", "") or f"trial #{trial.number}"
        state, outcome = "complete", None
        try:
            def report(value: float, step: int, prunable: bool = True) -> None:
                if deadline[0] is None and budget.unit is not None:
                    set_deadline(budget.unit(name, time.perf_counter() - trial_started, step))
                if prunable:
                    trial.report(value, step)
                    if trial.should_prune():
                        raise Pruned()
                if deadline[0] is not None and time.perf_counter() > deadline[0]:
                    raise OutOfTime()

            outcome = run(config, report)
        except Pruned as exc:
            state, outcome = "pruned", getattr(exc, "outcome", None)
        except OutOfTime as exc:
            state, outcome = "stopped", getattr(exc, "outcome", None)
        except Failed as exc:
            state, outcome = "failed", None
            logger.info("trial %s failed: %s", name, exc)
        seconds = time.perf_counter() - trial_started
        record = TrialRecord(
            trial.number, name, config, state,
            None if outcome is None else outcome.value, None if outcome is None else outcome.epochs,
            {} if outcome is None else outcome.metrics, round(seconds, 3),
            None if outcome is None else outcome.keep, 0 if outcome is None else outcome.trained,
        )  # fmt: skip
        records.append(record)
        if on_trial:
            on_trial(record)
        record.keep = None  # the caller kept what it wanted: a trial's model is not held for the rest
        if deadline[0] is not None and time.perf_counter() > deadline[0]:
            study.stop()
        if state == "pruned":
            raise optuna.TrialPruned()
        if outcome is None:
            return -1.0  # below any metric: TPE learns to avoid what failed
        return outcome.value

    study.optimize(objective, n_trials=max(budget.trials, 1), catch=())
    return records
