"""System checks: a bad ``RECOMMENDATIONS`` setting is named by its key at start-up."""

from __future__ import annotations

import dataclasses
import importlib.util

from django.apps import apps
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core import checks
from django.core.exceptions import FieldDoesNotExist

from .conf import DEFAULTS, app_settings

KINDS = ("category", "tags", "number", "year")
SOURCE_KEYS = {"name", "model", "user", "item", "weight", "timestamp", "scale", "transform", "exclude", "filter"}


def _error(msg: str, id_: str, hint: str | None = None) -> checks.Error:
    return checks.Error(msg, hint=hint, obj="settings.RECOMMENDATIONS", id=f"recommendations.{id_}")


def _path_error(model, path: str, where: str, id_: str) -> checks.Error | None:
    from .sources import resolve_path

    try:
        resolve_path(model, path)
    except FieldDoesNotExist as exc:
        return _error(f"{where}: {model._meta.label} has no field path {path!r} ({exc}).", id_)
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

    label = user.get("ITEM_MODEL")
    try:
        item_model = apps.get_model(label) if label else None
    except (LookupError, ValueError):
        item_model = None
    if item_model is None:
        errors.append(_error(f"RECOMMENDATIONS['ITEM_MODEL'] = {label!r} is not an installed model.", "E002", 'Use "app_label.ModelName".'))
        return errors

    for key in ("ITEM_KEY",):
        if err := _path_error(item_model, app_settings.ITEM_KEY, f"RECOMMENDATIONS[{key!r}]", "E009"):
            errors.append(err)
    for lookup in app_settings.ITEM_FILTER:
        if err := _path_error(item_model, lookup.split("__")[0], "RECOMMENDATIONS['ITEM_FILTER']", "E009"):
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
        try:
            model = apps.get_model(source["model"])
        except (LookupError, ValueError):
            errors.append(_error(f"{where}['model'] = {source['model']!r} is not an installed model.", "E003"))
            continue
        for key in ("user", "item", "weight", "timestamp"):
            if source.get(key) and (err := _path_error(model, source[key], f"{where}[{key!r}]", "E003")):
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
