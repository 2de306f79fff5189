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
