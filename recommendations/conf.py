"""The ``RECOMMENDATIONS`` setting: visible defaults, merged with the host's values.

Read values as attributes of ``app_settings``::

    from recommendations.conf import app_settings
    app_settings.LIST_SIZE

Nested dicts (``LIGHTFM``, ``ALS``, ``EVALUATION``, ``SEARCH``, ``NEW_ITEMS``) are merged key by key with their defaults, so a
host sets only what it changes.  The object reloads when the setting changes
(``override_settings`` in tests).
"""

from __future__ import annotations

from typing import Any

from django.apps import apps
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.utils.module_loading import import_string

DEFAULTS: dict[str, Any] = {
    # What is recommended -------------------------------------------------------------------
    # "app_label.ModelName" of the items (books).  Required.
    "ITEM_MODEL": None,
    # The field that names an item outside the database (exports, JSON): the shop's product id.
    "ITEM_KEY": "pk",
    # Lookups an item must match to be recommended (applied when training and when reading).
    "ITEM_FILTER": {},
    # Relations loaded with the items in the same query when rendering, e.g. ["author"].
    "ITEM_SELECT_RELATED": [],
    # Item fields used as features: field path -> kind.  Kinds: "category" (a foreign key or
    # a choice), "tags" (a many-to-many), "number" (quantile buckets), "year" (of a date,
    # in quantile buckets).
    "ITEM_FEATURES": {},
    "NUMBER_BUCKETS": 5,
    # Optional attributes of the user model used as user features (same kinds).
    "USER_FEATURES": {},
    # Interactions --------------------------------------------------------------------------
    # Each source: {"name", "model", "user" (path to the user), "item" (path to the item),
    #  "weight" (a number field, or None for 1), "timestamp" (a datetime field or None),
    #  "scale" (weight multiplier), "transform" ("log1p": log2(1 + w), or "linear"),
    #  "exclude" (never recommend what a user has here, e.g. what they bought),
    #  "filter" (lookups to apply)}.
    "SOURCES": [],
    # Swappable: a class with the interface of recommendations.sources.ModelSource.
    "SOURCE_CLASS": "recommendations.sources.ModelSource",
    # Lists ---------------------------------------------------------------------------------
    "LIST_SIZE": 20,  # stored per customer
    "SIMILAR_SIZE": 12,  # stored per item
    "POPULAR_SIZE": 50,
    "POPULAR_RECENT_DAYS": 30,
    # LightFM hyper-parameters (the "lightfm" family's defaults) ------------------------------
    "LIGHTFM": {
        "loss": "warp",
        "no_components": 32,
        "learning_rate": 0.05,
        "item_alpha": 1e-6,
        "user_alpha": 1e-6,
        "max_sampled": 10,
        "epochs": 30,
        # Hogwild threads.  1 is reproducible; more is not always faster (contention).
        "num_threads": 1,
        "random_state": 42,
    },
    # implicit's alternating least squares (the "als" family's defaults) ------------------------
    "ALS": {
        "factors": 64,
        "regularization": 1.0,
        "alpha": 1.0,  # confidence = alpha × weight
        "iterations": 15,
        "num_threads": 0,  # 0: every core (deterministic whatever the count)
        "random_state": 42,
    },
    # The holdouts that choose the model -------------------------------------------------------
    "EVALUATION": {
        "enabled": True,
        "k": 10,
        "holdout": 0.2,  # the most recent share of each customer's interactions
        "min_interactions": 3,  # customers with fewer are not held out
        "max_users": 10000,  # evaluate on a sample of at most this many customers
        "min_users": 10,  # fewer customers with a held-out success: train without evaluation
        "metric": "precision",  # precision, recall, ndcg or auc, at k
        # Sources whose held-out rows count as successes; None: the sources marked "exclude"
        # (what customers buy), or every source when none is.
        "target": None,
        # The cold-item holdout: this share of the books sold in the held-out period is held
        # out whole (every row), to measure and calibrate how new books are served.
        "cold_items": 0.1,
        "min_cold_buyers": 10,  # fewer buyers of those books: new books are not calibrated
    },
    # The search over families, hyper-parameters, source scales and features (Optuna) -----------
    "SEARCH": {
        "trials": 40,  # at most this many configurations, the CANDIDATES first
        # Seconds the search may take; None: time_ratio × the time a full fit of the first
        # candidate takes (measured on its trial), but at least min_seconds.
        "seconds": None,
        "time_ratio": 1.25,
        "min_seconds": 120,
        "families": ["lightfm", "als"],
        "max_epochs": None,  # LightFM epochs a trial may reach; None: twice LIGHTFM's
        "checkpoints": 6,  # measurements per LIGHTFM["epochs"] (early stopping, pruning)
        "patience": 2,  # checkpoints without improvement before a trial stops
        "scales": [0.0, 0.05, 0.1, 0.25, 0.5, 1.0],  # tried for each source that is not a target
        "blend": True,  # try the two best families together
    },
    # The configurations tried first (the first one alone without evaluation).  Keys: name,
    # family ("lightfm" or "als"), item_metadata, history_features, source_scales ({source:
    # scale}, "equal" or "target": the target sources only), hyper {...}.
    "CANDIDATES": [
        {"name": "hybrid"},
        {"name": "ALS", "family": "als"},
        {"name": "ALS on the target sources", "family": "als", "source_scales": "target"},
        {"name": "collaborative", "item_metadata": False},
    ],
    # Each customer's history features keep their strongest this many affinities.
    "MAX_HISTORY_FEATURES": 20,
    # New books (no sales, no views yet) --------------------------------------------------------
    "NEW_ITEMS": {
        "enabled": True,
        # Most share of a list's slots new books may take; None: what the cold-item holdout chose.
        "max_share": None,
        # What showing new books may cost: at most this share of the holdout's precision.
        "max_loss": 0.02,
    },
    # Storage and operation -----------------------------------------------------------------
    "KEEP_RUNS": 3,  # runs whose rows and artifacts are kept (the live one included)
    # Where model artifacts (.npz) go: None, a private directory (ARTIFACT_ROOT) that nothing
    # serves; or a key of STORAGES (e.g. an S3 bucket shared by several worker machines).
    "ARTIFACT_STORAGE": None,
    # The private directory: None, BASE_DIR/var/recommendations when the settings define
    # BASE_DIR, else ~/.local/share/django-recommendations.  Must be absolute.
    "ARTIFACT_ROOT": None,
    "ARTIFACT_DIR": "recommendations",  # a folder inside the storage (one per database under it)
    "CHUNK_SIZE": 20000,  # rows per database fetch
    "SCORE_BATCH": 2048,  # customers per chunk (each chunk is shared out in cache-sized tiles to the CPUs)
    "WRITE_BATCH": 5000,  # rows per bulk insert (PostgreSQL uses COPY)
    "CACHE_ALIAS": "default",
    "CACHE_TIMEOUT": 3600,
    # Cache the boxes' rendered HTML too (turn off if your box templates show per-request data).
    "CACHE_RENDERED_BOXES": True,
    # Background work -----------------------------------------------------------------------
    # How the app's tasks run: "auto" (through Celery when the host configured a broker or
    # eager tasks, else in a background thread of this process, logged once), "celery",
    # "thread" or "inline" (in the caller, at once).
    "TASKS": "auto",
    # Most seconds a request waits for the broker to take a task (a purchase's rescore, the
    # admin's "Retrain now"); past that the send is given up, logged and recorded.
    "PUBLISH_TIMEOUT": 2.0,
    "HEARTBEAT_SECONDS": 30,  # a running retrain writes a sign of life this often
    "STALE_AFTER_SECONDS": 300,  # a running run silent this long is marked failed (worker lost)
    "QUEUED_TIMEOUT_SECONDS": 3600,  # a queued run no worker picked up is marked failed
    "TASK_SOFT_TIME_LIMIT": 3 * 3600,  # the retrain stops and is marked timed out
    "TASK_TIME_LIMIT": 3 * 3600 + 600,  # the worker process is killed
    "RESCORE_ON_SAVE": True,  # saving a row of an "exclude" source rescores that customer
    # Scaling out ---------------------------------------------------------------------------
    # The Celery queues of a retrain's tasks: one "training" task (extract, build, fit: one
    # process with LightFM's threads), then "scoring" shards (any number of workers, on any
    # machines sharing the database and ARTIFACT_STORAGE) and the publishing task.  A
    # worker consumes them with ``-Q celery,training,scoring``.
    "QUEUES": {"training": "training", "scoring": "scoring"},
    # Customers with an interaction in the last ACTIVE_DAYS days get stored lists; the others
    # known to the model are scored when they first ask (in the web process, from the run's
    # model, cached).  None: every customer gets a stored list.
    "ACTIVE_DAYS": None,
    "SHARD_SIZE": 50_000,  # customers per scoring shard
    "SHARD_ATTEMPTS": 3,  # deliveries of a shard (a lost worker, an error) before its run fails
    # Threads a scoring shard uses in a Celery worker: one per process scales with the number
    # of worker processes (--concurrency); None: every core.  Retrains run in this process
    # (no broker, --sync) score with every core.
    "SHARD_THREADS": 1,
}

NESTED = ("LIGHTFM", "ALS", "EVALUATION", "SEARCH", "NEW_ITEMS", "QUEUES")
IMPORT_STRINGS = ("SOURCE_CLASS",)


class AppSettings:
    def __init__(self, user_settings: dict | None = None) -> None:
        self._user = user_settings
        self._cache: dict[str, Any] = {}

    @property
    def user_settings(self) -> dict:
        if self._user is None:
            self._user = getattr(settings, "RECOMMENDATIONS", {}) or {}
        return self._user

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_") or name not in DEFAULTS:
            raise AttributeError(f"Invalid RECOMMENDATIONS setting: {name!r}")
        if name in self._cache:
            return self._cache[name]
        value = self.user_settings.get(name, DEFAULTS[name])
        if name in NESTED:
            value = {**DEFAULTS[name], **(value or {})}
        if name in IMPORT_STRINGS and isinstance(value, str):
            try:
                value = import_string(value)
            except ImportError as exc:
                raise ImproperlyConfigured(f"RECOMMENDATIONS[{name!r}] = {value!r} cannot be imported: {exc}") from exc
        self._cache[name] = value
        return value

    def reload(self) -> None:
        self._user = None
        self._cache.clear()


app_settings = AppSettings()


def _reload(*, setting: str, **kwargs) -> None:
    if setting == "RECOMMENDATIONS":
        app_settings.reload()


setting_changed.connect(_reload)


def item_model_label() -> str:
    """The item model's label, for the app's models and migrations (``"shop.Product"``)."""
    label = (getattr(settings, "RECOMMENDATIONS", {}) or {}).get("ITEM_MODEL")
    if not label:
        raise ImproperlyConfigured('Set RECOMMENDATIONS["ITEM_MODEL"] to the items\' model, e.g. "bookstore.Book".')
    return label


def installed_model(label):
    """The installed model named ``label`` (``"app_label.Model"``), or None.  A bad label is
    a check error (``recommendations.E002``, ``E003``), never a traceback at start-up."""
    if not isinstance(label, str):
        return None
    try:
        return apps.get_model(label)
    except (LookupError, ValueError):
        return None
