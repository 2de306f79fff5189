"""The RECOMMENDATIONS setting: defaults merged, reloaded, and bad values named by key."""

import pytest
from django.test import override_settings

from recommendations.checks import check_settings
from recommendations.conf import DEFAULTS, app_settings


def ids(errors):
    return {e.id for e in errors}


def messages(errors):
    return " | ".join(e.msg for e in errors)


def test_defaults_and_nested_merge(settings):
    settings.RECOMMENDATIONS = {**settings.RECOMMENDATIONS, "LIGHTFM": {"epochs": 7}}
    assert app_settings.LIGHTFM["epochs"] == 7
    assert app_settings.LIGHTFM["loss"] == DEFAULTS["LIGHTFM"]["loss"], "unset keys keep their defaults"
    assert app_settings.LIST_SIZE == DEFAULTS["LIST_SIZE"]
    with pytest.raises(AttributeError):
        app_settings.NOT_A_SETTING


def test_the_demo_configuration_is_clean():
    assert check_settings() == []


@pytest.mark.parametrize(
    "change, expected_id, named",
    [
        ({"ITEM_MODEL": "bookstore.Nope"}, "recommendations.E002", "ITEM_MODEL"),
        ({"ITEM_FEATURES": {"colour": "category"}}, "recommendations.E004", "'colour'"),
        ({"ITEM_FEATURES": {"author": "shape"}}, "recommendations.E004", "'shape'"),
        ({"SOURCES": []}, "recommendations.E003", "SOURCES"),
        ({"SOURCES": [{"name": "x", "model": "bookstore.Access", "user": "customer", "item": "book"}]}, "recommendations.E003", "'customer'"),
        ({"SOURCES": [{"name": "x", "model": "bookstore.Access", "user": "user", "item": "book", "scale": 0}]}, "recommendations.E003", "['scale']"),
        ({"LIGHTFM": {"loss": "hinge"}}, "recommendations.E005", "'loss'"),
        ({"LIGHTFM": {"epochs": 0}}, "recommendations.E005", "'epochs'"),
        ({"LIGHTFM": {"n_components": 8}}, "recommendations.E005", "'n_components'"),
        ({"EVALUATION": {"holdout": 1.5}}, "recommendations.E006", "'holdout'"),
        ({"CANDIDATES": [{"name": "x", "source_scales": {"clicks": 1}}]}, "recommendations.E007", "'clicks'"),
        ({"CANDIDATES": [{"name": "x", "family": "ease"}]}, "recommendations.E007", "'ease'"),
        ({"CANDIDATES": [{"name": "x", "family": "als", "hyper": {"no_components": 8}}]}, "recommendations.E007", "'no_components'"),
        ({"CANDIDATES": [{"name": "x", "source_scales": {"purchases": 0, "views": 0}}]}, "recommendations.E007", "every source off"),
        ({"ALS": {"factors": 0}}, "recommendations.E010", "'factors'"),
        ({"ALS": {"alpha": -1}}, "recommendations.E010", "'alpha'"),
        ({"EVALUATION": {"target": ["clicks"]}}, "recommendations.E006", "'clicks'"),
        ({"EVALUATION": {"target": "purchases"}}, "recommendations.E006", "'target'"),
        ({"EVALUATION": {"checkpoints": [1.0]}}, "recommendations.E006", "'checkpoints'"),
        ({"SEARCH": {"families": ["lightfm", "ease"]}}, "recommendations.E011", "'families'"),
        ({"SEARCH": {"trials": 0}}, "recommendations.E011", "'trials'"),
        ({"SEARCH": {"budget": 3}}, "recommendations.E011", "'budget'"),
        ({"NEW_ITEMS": {"max_share": 2}}, "recommendations.E012", "'max_share'"),
        ({"NEW_ITEMS": {"max_loss": 1.5}}, "recommendations.E012", "'max_loss'"),
        ({"LIST_SIZE": 0}, "recommendations.E008", "'LIST_SIZE'"),
        ({"ITEM_FILTER": {"in_stock": True}}, "recommendations.E009", "ITEM_FILTER"),
        ({"TYPO_SETTING": 1}, "recommendations.W001", "'TYPO_SETTING'"),
    ],
)
def test_bad_settings_are_named(settings, change, expected_id, named):
    with override_settings(RECOMMENDATIONS={**settings.RECOMMENDATIONS, **change}):
        errors = check_settings()
    assert expected_id in ids(errors), messages(errors)
    assert named in messages(errors)
