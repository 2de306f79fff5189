"""The run list's chart: nothing without runs, two labelled bars for one, lines for several."""

from __future__ import annotations

import re

import pytest
from django.urls import reverse

from recommendations.charts import metrics_chart
from recommendations.models import TrainingRun
from tests.factories import UserFactory


def run(pk: int, model: float | None, popularity: float | None, k: int = 10) -> TrainingRun:
    metrics = {"k": k}
    if model is not None:
        metrics["model"] = {f"precision@{k}": model}
    if popularity is not None:
        metrics["popularity"] = {f"precision@{k}": popularity}
    return TrainingRun(pk=pk, status="succeeded", metrics=metrics)


def axis_labels(svg: str) -> list[str]:
    return re.findall(r">(run #\d+)</text>", svg)


def test_no_runs_no_chart():
    assert metrics_chart([]) == ""
    assert metrics_chart([run(1, None, None), run(2, 0.05, None)]) == ""


def test_one_run_is_two_labelled_bars():
    chart = str(metrics_chart([run(7, 0.0525, 0.0104)]))
    assert chart.count("<rect") == 2 and "<polyline" not in chart and "<circle" not in chart
    for text in (">model</text>", ">popularity</text>", ">0.0525</text>", ">0.0104</text>"):
        assert text in chart, text
    assert axis_labels(chart) == []  # no "run #7 … run #7" axis
    assert "precision@10 on the time holdout, run #7." in chart
    # The longer bar is the larger value.
    widths = [float(w) for w in re.findall(r'<rect [^>]*width="([\d.]+)"', chart)]
    assert widths[0] > 4 * widths[1]


def test_a_run_without_both_values_leaves_one_point_and_so_bars():
    chart = str(metrics_chart([run(1, 0.05, None), run(2, 0.06, 0.01)]))
    assert chart.count("<rect") == 2 and "run #2" in chart and "run #1" not in chart


def test_several_runs_are_lines_labelled_at_both_ends():
    chart = str(metrics_chart([run(3, 0.04, 0.010), run(5, 0.05, 0.011), run(9, 0.06, 0.012, k=10)]))
    assert chart.count("<polyline") == 2 and chart.count("<circle") == 6 and "<rect" not in chart
    assert axis_labels(chart) == ["run #3", "run #9"]
    assert "precision@10 on the time holdout, last 3 runs" in chart
    # Two runs are a line too.
    two = str(metrics_chart([run(3, 0.04, 0.010), run(4, 0.05, 0.011)]))
    assert two.count("<polyline") == 2 and axis_labels(two) == ["run #3", "run #4"]


def test_a_named_metric_and_mixed_k():
    chart = str(metrics_chart([run(1, 0.04, 0.01, k=5), run(2, 0.05, 0.01, k=10)]))
    assert "precision@k on the time holdout" in chart
    other = TrainingRun(pk=4, metrics={"model": {"coverage": 0.6}, "popularity": {"coverage": 0.1}})
    assert ">0.6000</text>" in str(metrics_chart([other], "coverage"))


@pytest.mark.django_db
def test_the_run_list_shows_bars_for_its_one_run(client):
    metrics = {"k": 10, "model": {"precision@10": 0.0525}, "popularity": {"precision@10": 0.0104}}
    TrainingRun.objects.create(status="succeeded", is_live=True, active=None, metrics=metrics)
    client.force_login(UserFactory(is_staff=True, is_superuser=True))
    page = client.get(reverse("admin:recommendations_trainingrun_changelist")).content.decode()
    assert "Model vs. popularity" in page and page.count("<rect") == 2 and "<polyline" not in page
