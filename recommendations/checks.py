"""System checks: a bad ``RECOMMENDATIONS`` setting is named by its key before any training.

``check_settings`` runs with every command (runserver, migrate, a worker's ``check``);
``check_live_run`` needs the database (``migrate``, ``check --database default``);
``check_artifacts_private`` runs with ``check --deploy``.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core import checks
from django.core.exceptions import FieldDoesNotExist, FieldError, ValidationError
from django.db import DatabaseError, models, router, transaction
from django.db.models.constants import LOOKUP_SEP

from .conf import DEFAULTS, app_settings, installed_model

KINDS = ("category", "tags", "number", "year")
SOURCE_KEYS = {"name", "model", "user", "item", "weight", "timestamp", "scale", "transform", "exclude", "filter"}
TASK_MODES = ("auto", "celery", "thread", "inline")
# What each feature kind can read (see sources._feature_columns): "category" labels a value
# with str(), "number" and "year" read it with sources._number (a date gives its year).
CATEGORY_FIELDS = (models.CharField, models.TextField, models.BooleanField, models.IntegerField)
NUMBER_FIELDS = (models.IntegerField, models.FloatField, models.DecimalField)  # AutoFields are IntegerFields
DATE_FIELDS = (models.DateField,)  # DateTimeField too


def _error(msg: str, id_: str, hint: str | None = None) -> checks.Error:
    return checks.Error(msg, hint=hint, obj="settings.RECOMMENDATIONS", id=f"recommendations.{id_}")


def _path_error(model, path: str, where: str, id_: str) -> checks.Error | None:
    from .sources import resolve_path

    try:
        resolve_path(model, path)
    except FieldDoesNotExist as exc:
        return _error(f"{where}: {model._meta.label} has no field path {path!r} ({exc}).", id_)
    return None


def _fields(model, path: str) -> list:
    """Every field a ``__`` path goes through, followed as :func:`sources.resolve_path` does."""
    if path == "pk":
        return [model._meta.pk]
    fields, current = [], model
    for part in path.split(LOOKUP_SEP):
        if current is None:
            raise FieldDoesNotExist(f"{path!r}: {part!r} follows a field that is not a relation")
        fld = current._meta.pk if part == "pk" else current._meta.get_field(part)
        fields.append(fld)
        current = fld.related_model if fld.is_relation else None
    return fields


def _to_many(fields: list) -> bool:
    """Whether the path has several values per row (a many-to-many or a reverse foreign key)."""
    return any(f.is_relation and (f.many_to_many or f.one_to_many) for f in fields)


def _unique(fld) -> bool:
    """Whether no two rows share ``fld``'s value: a primary key, ``unique=True``, a one-to-one,
    or a single-field ``UniqueConstraint`` without a condition."""
    if isinstance(fld, models.ForeignObjectRel):
        return fld.one_to_one  # the reverse side of a one-to-one
    if fld.unique:  # primary keys included
        return True
    meta = fld.model._meta
    names = {fld.name, fld.attname}
    return any(len(c.fields) == 1 and c.fields[0] in names for c in meta.total_unique_constraints) or any(
        len(together) == 1 and together[0] in names for together in meta.unique_together
    )


def _kind_problem(kind: str, fields: list) -> str | None:
    """Why a feature of ``kind`` cannot be read from the path through ``fields`` (None: it can)."""
    last = fields[-1]
    what = f"{last.model._meta.label}.{last.name} is a {type(last).__name__}"
    if kind == "tags":
        if _to_many(fields):
            return None
        return f"{what}, one value per item; 'tags' needs a many-to-many or a reverse relation (use 'category')"
    if _to_many(fields):
        return "the path goes through a to-many relation: several values per item (use 'tags')"
    if kind == "category":
        if last.is_relation or getattr(last, "choices", None) or isinstance(last, CATEGORY_FIELDS):
            return None
        return f"{what}; 'category' needs a foreign key, a field with choices, or a text, boolean or integer field"
    if not last.is_relation and isinstance(last, NUMBER_FIELDS + DATE_FIELDS):
        return None  # numbers as they are, dates as their year (sources._number)
    return f"{what}; {kind!r} needs a number (integer, float, decimal) or a date field"


def _filter_error(model, lookups, where: str, id_: str) -> checks.Error | None:
    """Build (never run) the query ``lookups`` make: a bad lookup path or value raises now."""
    if not isinstance(lookups, dict):
        return _error(f"{where} = {lookups!r} must be a dict of lookups.", id_)
    try:
        model._default_manager.filter(**lookups)
    except (FieldError, FieldDoesNotExist, ValueError, TypeError, ValidationError) as exc:
        return _error(f"{where} = {lookups!r} does not apply to {model._meta.label}: {exc}", id_)
    return None


def _positive_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def _positive_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0


@checks.register()
def check_settings(app_configs=None, **kwargs) -> list:
    errors: list = []
    user = getattr(settings, "RECOMMENDATIONS", None)
    if user is None:
        return [_error("The RECOMMENDATIONS setting is missing.", "E002", 'Set at least RECOMMENDATIONS = {"ITEM_MODEL": ..., "SOURCES": [...]}.')]
    if not isinstance(user, dict):
        return [_error("RECOMMENDATIONS must be a dict.", "E002")]
    for key in sorted(set(user) - set(DEFAULTS)):
        errors.append(checks.Warning(f"RECOMMENDATIONS[{key!r}] is not a known setting.", obj="settings.RECOMMENDATIONS", id="recommendations.W001"))

    if importlib.util.find_spec("lightfm") is None:
        errors.append(_error("LightFM is not installed.", "E001", "pip install rectools-lightfm (it provides the lightfm module)."))

    errors += _operation_errors()

    label = user.get("ITEM_MODEL")
    item_model = installed_model(label)
    if item_model is None:
        errors.append(_error(f"RECOMMENDATIONS['ITEM_MODEL'] = {label!r} is not an installed model.", "E002", 'Use "app_label.ModelName".'))
        return errors

    key = app_settings.ITEM_KEY
    if err := _path_error(item_model, key, "RECOMMENDATIONS['ITEM_KEY']", "E009"):
        errors.append(err)
    elif not all(_unique(f) for f in _fields(item_model, key)):
        msg = f"RECOMMENDATIONS['ITEM_KEY'] = {key!r} is not unique in {item_model._meta.label}: items could share it."
        hint = "Use the primary key ('pk'), a field with unique=True, or one a UniqueConstraint covers alone."
        errors.append(_error(msg, "E009", hint))
    if err := _filter_error(item_model, app_settings.ITEM_FILTER, "RECOMMENDATIONS['ITEM_FILTER']", "E009"):
        errors.append(err)
    for path in app_settings.ITEM_SELECT_RELATED:
        if err := _path_error(item_model, path, "RECOMMENDATIONS['ITEM_SELECT_RELATED']", "E009"):
            errors.append(err)

    for setting, model in (("ITEM_FEATURES", item_model), ("USER_FEATURES", get_user_model())):
        for path, kind in (getattr(app_settings, setting) or {}).items():
            where = f"RECOMMENDATIONS[{setting!r}][{path!r}]"
            if kind not in KINDS:
                errors.append(_error(f"{where} = {kind!r} is not a feature kind.", "E004", f"Use one of {', '.join(KINDS)}."))
            if err := _path_error(model, path, where, "E004"):
                errors.append(err)
            elif kind in KINDS and (problem := _kind_problem(kind, _fields(model, path))):
                errors.append(_error(f"{where} = {kind!r}: {problem}.", "E004"))

    sources = app_settings.SOURCES
    if not sources:
        errors.append(_error("RECOMMENDATIONS['SOURCES'] is empty: nothing to learn from.", "E003"))
    names = set()
    for i, source in enumerate(sources):
        where = f"RECOMMENDATIONS['SOURCES'][{i}]"
        if not isinstance(source, dict):
            errors.append(_error(f"{where} must be a dict.", "E003"))
            continue
        for key in sorted(set(source) - SOURCE_KEYS):
            errors.append(_error(f"{where} has an unknown key {key!r}.", "E003", f"Known keys: {', '.join(sorted(SOURCE_KEYS))}."))
        missing = [k for k in ("name", "model", "user", "item") if not source.get(k)]
        if missing:
            errors.append(_error(f"{where} is missing {', '.join(missing)}.", "E003"))
            continue
        if source["name"] in names:
            errors.append(_error(f"{where}: the name {source['name']!r} is used twice.", "E003"))
        names.add(source["name"])
        model = installed_model(source["model"])
        if model is None:
            msg = f"{where}['model'] = {source['model']!r} is not an installed model."
            errors.append(_error(msg, "E003", 'Use "app_label.ModelName".'))
            continue
        for key in ("user", "item", "weight", "timestamp"):
            if source.get(key) and (err := _path_error(model, source[key], f"{where}[{key!r}]", "E003")):
                errors.append(err)
            elif key == "timestamp" and source.get(key):
                errors += _timestamp_errors(model, source[key], f"{where}['timestamp']")
        if source.get("filter") and (err := _filter_error(model, source["filter"], f"{where}['filter']", "E003")):
            errors.append(err)
        if source.get("transform", "log1p") not in ("log1p", "linear"):
            errors.append(_error(f"{where}['transform'] = {source['transform']!r}: use 'log1p' or 'linear'.", "E003"))
        scale = source.get("scale", 1.0)
        if not isinstance(scale, (int, float)) or not scale > 0:
            errors.append(_error(f"{where}['scale'] = {scale!r} must be a positive number.", "E003"))

    from .ml.als import ALSHyper
    from .ml.families import FAMILIES
    from .ml.pipeline import EvaluationSettings, NewItemSettings, SearchSettings
    from .ml.train import Hyper

    hyper_keys = {f.name for f in dataclasses.fields(Hyper)}
    lightfm = app_settings.LIGHTFM
    for key in sorted(set(lightfm) - hyper_keys):
        errors.append(_error(f"RECOMMENDATIONS['LIGHTFM'][{key!r}] is not a known hyper-parameter.", "E005", f"Known: {', '.join(sorted(hyper_keys))}."))
    if lightfm.get("loss") not in ("warp", "bpr", "logistic", "warp-kos"):
        errors.append(_error(f"RECOMMENDATIONS['LIGHTFM']['loss'] = {lightfm.get('loss')!r} is not a LightFM loss.", "E005"))
    for key in ("no_components", "epochs", "num_threads", "max_sampled"):
        if not isinstance(lightfm.get(key), int) or lightfm[key] < 1:
            errors.append(_error(f"RECOMMENDATIONS['LIGHTFM'][{key!r}] = {lightfm.get(key)!r} must be a positive integer.", "E005"))
    if not isinstance(lightfm.get("learning_rate"), (int, float)) or not lightfm["learning_rate"] > 0:
        errors.append(_error(f"RECOMMENDATIONS['LIGHTFM']['learning_rate'] = {lightfm.get('learning_rate')!r} must be positive.", "E005"))

    als_keys = {f.name for f in dataclasses.fields(ALSHyper)}
    als = app_settings.ALS
    for key in sorted(set(als) - als_keys):
        errors.append(_error(f"RECOMMENDATIONS['ALS'][{key!r}] is not a known hyper-parameter.", "E010", f"Known: {', '.join(sorted(als_keys))}."))
    for key in ("factors", "iterations"):
        if not _positive_int(als.get(key)):
            errors.append(_error(f"RECOMMENDATIONS['ALS'][{key!r}] = {als.get(key)!r} must be a positive integer.", "E010"))
    for key in ("regularization", "alpha"):
        if not _positive_number(als.get(key)):
            errors.append(_error(f"RECOMMENDATIONS['ALS'][{key!r}] = {als.get(key)!r} must be a positive number.", "E010"))
    if not isinstance(als.get("num_threads"), int) or als["num_threads"] < 0:
        errors.append(_error(f"RECOMMENDATIONS['ALS']['num_threads'] = {als.get('num_threads')!r} must be 0 (every core) or more.", "E010"))

    eval_keys = {f.name for f in dataclasses.fields(EvaluationSettings)} | {"target"}
    evaluation = app_settings.EVALUATION
    for key in sorted(set(evaluation) - eval_keys):
        errors.append(_error(f"RECOMMENDATIONS['EVALUATION'][{key!r}] is not a known key.", "E006", f"Known: {', '.join(sorted(eval_keys))}."))
    if not 0 < evaluation.get("holdout", 0) < 1:
        errors.append(_error(f"RECOMMENDATIONS['EVALUATION']['holdout'] = {evaluation.get('holdout')!r} must be between 0 and 1.", "E006"))
    if evaluation.get("metric") not in ("precision", "recall", "ndcg", "auc"):
        errors.append(_error(f"RECOMMENDATIONS['EVALUATION']['metric'] = {evaluation.get('metric')!r}: use precision, recall, ndcg or auc.", "E006"))
    if not isinstance(evaluation.get("cold_items"), (int, float)) or not 0 <= evaluation["cold_items"] < 1:
        errors.append(_error(f"RECOMMENDATIONS['EVALUATION']['cold_items'] = {evaluation.get('cold_items')!r} must be at least 0 and below 1.", "E006"))
    target = evaluation.get("target")
    if target is not None:
        if isinstance(target, str) or not isinstance(target, (list, tuple)) or not target:
            errors.append(_error(f"RECOMMENDATIONS['EVALUATION']['target'] = {target!r} must be None or a list of source names.", "E006"))
        else:
            for name in target:
                if name not in names:
                    errors.append(_error(f"RECOMMENDATIONS['EVALUATION']['target'] names an unknown source {name!r}.", "E006", f"Sources: {', '.join(sorted(map(str, names)))}."))

    search_keys = {f.name for f in dataclasses.fields(SearchSettings)}
    search = app_settings.SEARCH
    for key in sorted(set(search) - search_keys):
        errors.append(_error(f"RECOMMENDATIONS['SEARCH'][{key!r}] is not a known key.", "E011", f"Known: {', '.join(sorted(search_keys))}."))
    if not _positive_int(search.get("trials")):
        errors.append(_error(f"RECOMMENDATIONS['SEARCH']['trials'] = {search.get('trials')!r} must be a positive integer.", "E011"))
    if search.get("seconds") is not None and not _positive_number(search["seconds"]):
        errors.append(_error(f"RECOMMENDATIONS['SEARCH']['seconds'] = {search.get('seconds')!r} must be None or a positive number.", "E011"))
    families = search.get("families") or []
    if isinstance(families, str) or not families or any(f not in FAMILIES for f in families):
        errors.append(_error(f"RECOMMENDATIONS['SEARCH']['families'] = {families!r}: use a list of {', '.join(FAMILIES)}.", "E011"))
    scales = search.get("scales") or []
    if isinstance(scales, str) or not scales or any(not isinstance(x, (int, float)) or not 0 <= x for x in scales):
        errors.append(_error(f"RECOMMENDATIONS['SEARCH']['scales'] = {scales!r} must be a list of numbers of at least 0.", "E011"))

    new_keys = {f.name for f in dataclasses.fields(NewItemSettings)}
    new_items = app_settings.NEW_ITEMS
    for key in sorted(set(new_items) - new_keys):
        errors.append(_error(f"RECOMMENDATIONS['NEW_ITEMS'][{key!r}] is not a known key.", "E012", f"Known: {', '.join(sorted(new_keys))}."))
    share = new_items.get("max_share")
    if share is not None and (not isinstance(share, (int, float)) or not 0 <= share <= 1):
        errors.append(_error(f"RECOMMENDATIONS['NEW_ITEMS']['max_share'] = {share!r} must be None or between 0 and 1.", "E012"))
    loss = new_items.get("max_loss")
    if not isinstance(loss, (int, float)) or not 0 <= loss < 1:
        errors.append(_error(f"RECOMMENDATIONS['NEW_ITEMS']['max_loss'] = {loss!r} must be at least 0 and below 1.", "E012"))

    cand_keys = {"name", "family", "item_metadata", "history_features", "source_scales", "hyper"}
    candidates = app_settings.CANDIDATES
    if not candidates:
        errors.append(_error("RECOMMENDATIONS['CANDIDATES'] is empty.", "E007"))
    for i, cand in enumerate(candidates):
        where = f"RECOMMENDATIONS['CANDIDATES'][{i}]"
        if not isinstance(cand, dict) or not cand.get("name"):
            errors.append(_error(f"{where} must be a dict with a name.", "E007"))
            continue
        for key in sorted(set(cand) - cand_keys):
            errors.append(_error(f"{where} has an unknown key {key!r}.", "E007", f"Known: {', '.join(sorted(cand_keys))}."))
        family = cand.get("family", "lightfm")
        if family not in FAMILIES:
            errors.append(_error(f"{where}['family'] = {family!r}: use one of {', '.join(FAMILIES)}.", "E007"))
        scales = cand.get("source_scales", {})
        if scales not in ("equal", "target"):
            if not isinstance(scales, dict):
                errors.append(_error(f"{where}['source_scales'] must be a dict, 'equal' or 'target'.", "E007"))
                scales = {}
            for name, scale in scales.items():
                if name not in names:
                    errors.append(_error(f"{where}['source_scales'] names an unknown source {name!r}.", "E007"))
                elif not isinstance(scale, (int, float)) or not scale >= 0:
                    errors.append(_error(f"{where}['source_scales'][{name!r}] = {scale!r} must be a number of at least 0.", "E007"))
            if scales and all(scales.get(n, 1) == 0 for n in names):
                errors.append(_error(f"{where}['source_scales'] turns every source off.", "E007"))
        known = als_keys if family == "als" else hyper_keys
        for key in cand.get("hyper", {}) or {}:
            if key not in known:
                errors.append(_error(f"{where}['hyper'][{key!r}] is not a known hyper-parameter of {family}.", "E007"))

    for key in ("LIST_SIZE", "SIMILAR_SIZE", "POPULAR_SIZE", "KEEP_RUNS", "CHUNK_SIZE", "SCORE_BATCH", "WRITE_BATCH"):
        value = getattr(app_settings, key)
        if not isinstance(value, int) or value < 1:
            errors.append(_error(f"RECOMMENDATIONS[{key!r}] = {value!r} must be a positive integer.", "E008"))
    return errors


def _timestamp_errors(model, path: str, where: str) -> list:
    """A source's time must be a date or a date and time (the holdout sorts by it)."""
    fld = _fields(model, path)[-1]
    if isinstance(fld, DATE_FIELDS):
        return []
    what = f"{where} = {path!r}: {model._meta.label}.{path} is a {type(fld).__name__}"
    if not fld.is_relation and isinstance(fld, NUMBER_FIELDS):
        # sources._seconds reads a number as seconds since 1970: right for a Unix time only.
        return [checks.Warning(
            f"{what}, read as seconds since 1970.", hint="Use a DateTimeField or DateField unless it holds Unix times.",
            obj="settings.RECOMMENDATIONS", id="recommendations.W003",
        )]  # fmt: skip
    return [_error(f"{what}; the timestamp must be a DateTimeField or a DateField.", "E003")]


def _operation_errors() -> list:
    """Where artifacts go, which cache the widgets use, how tasks run."""
    errors = []
    alias, known = app_settings.ARTIFACT_STORAGE, ", ".join(map(repr, settings.STORAGES))
    if alias not in (None, "") and (not isinstance(alias, str) or alias not in settings.STORAGES):
        errors.append(_error(
            f"RECOMMENDATIONS['ARTIFACT_STORAGE'] = {alias!r} is not a key of STORAGES ({known}).",
            "E013", "Leave it None (a private directory, ARTIFACT_ROOT) or name a storage defined in STORAGES.",
        ))  # fmt: skip
    root = app_settings.ARTIFACT_ROOT
    if root not in (None, "") and (not isinstance(root, (str, os.PathLike)) or not os.path.isabs(os.fspath(root))):
        errors.append(_error(
            f"RECOMMENDATIONS['ARTIFACT_ROOT'] = {root!r} must be None or an absolute path.",
            "E013", "A relative path would depend on the directory each process starts in.",
        ))  # fmt: skip
    cache, known = app_settings.CACHE_ALIAS, ", ".join(map(repr, settings.CACHES))
    if not isinstance(cache, str) or cache not in settings.CACHES:
        errors.append(_error(f"RECOMMENDATIONS['CACHE_ALIAS'] = {cache!r} is not a key of CACHES ({known}).", "E014"))
    tasks, timeout = app_settings.TASKS, app_settings.PUBLISH_TIMEOUT
    if tasks not in TASK_MODES:
        hint = f"Use one of {', '.join(map(repr, TASK_MODES))}."
        errors.append(_error(f"RECOMMENDATIONS['TASKS'] = {tasks!r} is not a way to run tasks.", "E015", hint))
    if not _positive_number(timeout):
        msg = f"RECOMMENDATIONS['PUBLISH_TIMEOUT'] = {timeout!r} must be a positive number of seconds."
        errors.append(_error(msg, "E015"))
    return errors + _scaling_errors()


def _scaling_errors() -> list:
    errors = []
    queues = app_settings.QUEUES
    unknown = sorted(set(queues) - {"training", "scoring"}) if isinstance(queues, dict) else []
    bad = [k for k, v in queues.items() if v is not None and (not isinstance(v, str) or not v.strip())] if isinstance(queues, dict) else []
    if not isinstance(queues, dict) or unknown or bad:
        errors.append(_error(
            f"RECOMMENDATIONS['QUEUES'] = {queues!r} must map 'training' and 'scoring' to Celery queue names.",
            "E016", "None for a kind sends its tasks to the default queue (task_default_queue).",
        ))  # fmt: skip
    for key in ("SHARD_SIZE", "SHARD_ATTEMPTS"):
        if not _positive_int(getattr(app_settings, key)):
            errors.append(_error(f"RECOMMENDATIONS[{key!r}] = {getattr(app_settings, key)!r} must be a positive integer.", "E016"))
    days = app_settings.ACTIVE_DAYS
    if days is not None and not _positive_number(days):
        errors.append(_error(f"RECOMMENDATIONS['ACTIVE_DAYS'] = {days!r} must be None or a positive number of days.", "E016"))
    threads = app_settings.SHARD_THREADS
    if threads is not None and not _positive_int(threads):
        errors.append(_error(f"RECOMMENDATIONS['SHARD_THREADS'] = {threads!r} must be None or a positive integer.", "E016"))
    return errors


@checks.register(checks.Tags.database)
def check_live_run(app_configs=None, databases=None, **kwargs) -> list:
    """The live run's lists were made for the current ``ITEM_MODEL``.

    The list tables hold item keys; read through another model they would name other items.
    Runs record the label in ``params["item_model"]`` (runs without it count as current).
    Before ``migrate`` or with the database down there is no live run to be wrong.
    """
    from .models import TrainingRun

    user = getattr(settings, "RECOMMENDATIONS", None)
    current = installed_model(user.get("ITEM_MODEL")) if isinstance(user, dict) else None
    if not databases or current is None:  # check_settings names a bad ITEM_MODEL
        return []
    errors = []
    for alias in databases:
        if not router.allow_migrate_model(alias, TrainingRun):
            continue
        try:
            with transaction.atomic(using=alias):  # a savepoint: a missing table spoils no caller's transaction
                live = TrainingRun.objects.using(alias).filter(is_live=True).values_list("pk", "params").first()
        except DatabaseError:
            continue
        if live is None or not isinstance(live[1], dict) or not live[1].get("item_model"):
            continue
        pk, recorded = live[0], live[1]["item_model"]
        if str(recorded).lower() not in (current._meta.label_lower, user["ITEM_MODEL"].lower()):
            # A warning, not an error: migrate (which runs database checks) must still be able
            # to create the new model's table before the retrain that replaces the lists.
            errors.append(checks.Warning(
                f"RECOMMENDATIONS['ITEM_MODEL'] was {recorded!r} for run #{pk}, the live run, and is now "
                f"{user['ITEM_MODEL']!r}: its lists name items of the old model and are not served. "
                "Retrain to replace them.",
                hint="Run manage.py retrain_recommendations; runs of the old model are pruned once it is live.",
                obj="settings.RECOMMENDATIONS", id="recommendations.W004",
            ))  # fmt: skip
    return errors


def _served_dirs() -> list[tuple[str, Path]]:
    """The directories the site serves files from: MEDIA_ROOT, STATIC_ROOT, STATICFILES_DIRS."""
    dirs = [(name, getattr(settings, name, None)) for name in ("MEDIA_ROOT", "STATIC_ROOT")]
    for entry in getattr(settings, "STATICFILES_DIRS", None) or []:
        dirs.append(("STATICFILES_DIRS", entry[1] if isinstance(entry, (list, tuple)) else entry))
    return [(name, Path(os.path.realpath(path))) for name, path in dirs if path]


@checks.register(deploy=True)
def check_artifacts_private(app_configs=None, **kwargs) -> list:
    """Artifacts hold every customer's vectors: no URL may serve them."""
    from django.core.files.storage import FileSystemStorage

    from .storage import artifact_storage

    if not isinstance(getattr(settings, "RECOMMENDATIONS", None), dict):
        return []
    alias = app_settings.ARTIFACT_STORAGE
    hint = "Leave ARTIFACT_STORAGE None (a private directory) or name a storage no URL serves."
    if alias in ("default", "staticfiles"):
        return [checks.Warning(
            f"RECOMMENDATIONS['ARTIFACT_STORAGE'] = {alias!r}: the model artifacts (every customer's vectors) "
            f"go to the {'media' if alias == 'default' else 'static files'} storage, which the site serves.",
            hint=hint, obj="settings.RECOMMENDATIONS", id="recommendations.W002",
        )]  # fmt: skip
    try:
        storage = artifact_storage()
    except Exception:  # an unknown alias: check_settings names it (E013)
        return []
    if not isinstance(storage, FileSystemStorage):
        return []
    location = Path(os.path.realpath(storage.location))
    key = "ARTIFACT_STORAGE" if alias else "ARTIFACT_ROOT"
    for name, served in _served_dirs():
        if location == served or served in location.parents:
            return [checks.Warning(
                f"RECOMMENDATIONS[{key!r}]: the model artifacts (every customer's vectors) go to {location}, "
                f"inside {name} ({served}), which the site serves.",
                hint=hint if alias else "Set ARTIFACT_ROOT to an absolute path outside every served directory.",
                obj="settings.RECOMMENDATIONS", id="recommendations.W002",
            )]  # fmt: skip
    return []
