"""A small SVG chart of the model's metric against popularity's, drawn on the server (no
script, no remote asset): the admin's training-run list shows it.

One run is two labelled bars; from two runs on it is a line chart over the runs.
"""

from __future__ import annotations

from django.utils.html import escape, format_html
from django.utils.safestring import SafeString, mark_safe

WIDTH, HEIGHT, PAD_L, PAD_R, PAD_T, PAD_B = 640, 200, 48, 16, 16, 30
MODEL_COLOUR, POPULARITY_COLOUR, QUIET = "#264653", "#e76f51", "#666"
BAR_H, BAR_GAP, BAR_LABEL_W, BAR_VALUE_W = 18, 10, 84, 56


def metrics_chart(runs: list, metric: str | None = None) -> SafeString:
    """Model (solid) and popularity (dashed) precision@k of ``runs``, oldest first.

    Runs without both values are left out; with none left the chart is empty, with one it
    is two labelled bars (a line needs two points).
    """
    points = []
    for run in runs:
        model, base = run.metric("model", metric), run.metric("popularity", metric)
        if model is not None and base is not None:
            points.append((run.pk, float(model), float(base), (run.metrics or {}).get("k", 10)))
    if not points:
        return mark_safe("")
    ks = {k for *_, k in points}
    name = escape(metric or (f"precision@{ks.pop()}" if len(ks) == 1 else "precision@k"))
    if len(points) == 1:
        return _bars(points[0], name)
    return _lines(points, name)


def _bars(point: tuple, name: str) -> SafeString:
    """The one run's two values as horizontal bars, each labelled with its name and value."""
    pk, model, base, _k = point
    top = max(model, base) or 1.0
    span = WIDTH - BAR_LABEL_W - BAR_VALUE_W
    height = 2 * BAR_H + 3 * BAR_GAP
    rows = []
    bars = (("model", model, MODEL_COLOUR), ("popularity", base, POPULARITY_COLOUR))
    for i, (label, value, colour) in enumerate(bars):
        y = BAR_GAP + i * (BAR_H + BAR_GAP)
        width = max(span * value / top, 1.0)
        rows.append(
            f'<text x="{BAR_LABEL_W - 8}" y="{y + BAR_H / 2:.1f}" text-anchor="end" dominant-baseline="middle" '
            f'font-size="12" fill="{QUIET}">{label}</text>'
            f'<rect x="{BAR_LABEL_W}" y="{y}" width="{width:.1f}" height="{BAR_H}" rx="3" fill="{colour}">'
            f"<title>run #{pk}: {label} {value:.4f}</title></rect>"
            f'<text x="{BAR_LABEL_W + width + 6:.1f}" y="{y + BAR_H / 2:.1f}" dominant-baseline="middle" '
            f'font-size="12" fill="{colour}">{value:.4f}</text>'
        )
    svg = (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {height}" width="{WIDTH}" height="{height}" style="max-width:100%;height:auto" '
        f'role="img" aria-label="{name} of the model and of popularity in run #{pk}">{"".join(rows)}</svg>'
    )
    legend = format_html(
        '<p style="margin:4px 0 0;font-size:12px">{} on the time holdout, run #{}. A line over the runs '
        "appears from the second run on.</p>",
        name, pk,
    )  # fmt: skip
    return mark_safe(svg) + legend


def _lines(points: list[tuple], name: str) -> SafeString:
    """Two lines over the runs, the y axis from 0, the x axis labelled with its end runs."""
    top = max(max(m, b) for _, m, b, _k in points) * 1.15 or 1.0
    n = len(points)
    span_x = WIDTH - PAD_L - PAD_R
    span_y = HEIGHT - PAD_T - PAD_B

    def xy(i: int, value: float) -> tuple[float, float]:
        return PAD_L + span_x * i / (n - 1), PAD_T + span_y * (1 - value / top)

    def line(values: list[float]) -> str:
        return " ".join("{:.1f},{:.1f}".format(*xy(i, v)) for i, v in enumerate(values))

    def dot(i: int, value: float, colour: str, title: str) -> str:
        x, y = xy(i, value)
        return f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{colour}"><title>{title}</title></circle>'

    dots = "".join(
        dot(i, b, POPULARITY_COLOUR, f"run #{pk}: popularity {b:.4f}")
        + dot(i, m, MODEL_COLOUR, f"run #{pk}: model {m:.4f}")
        for i, (pk, m, b, _k) in enumerate(points)
    )
    ticks = "".join(
        f'<text x="{PAD_L - 6}" y="{PAD_T + span_y * (1 - f):.1f}" text-anchor="end" font-size="10" '
        f'dominant-baseline="middle" fill="{QUIET}">{top * f:.3f}</text>'
        f'<line x1="{PAD_L}" x2="{WIDTH - PAD_R}" y1="{PAD_T + span_y * (1 - f):.1f}" y2="{PAD_T + span_y * (1 - f):.1f}" stroke="#eee"/>'
        for f in (0.0, 0.5, 1.0)
    )
    first, last = f"run #{points[0][0]}", f"run #{points[-1][0]}"
    labels = f'<text x="{PAD_L}" y="{HEIGHT - 8}" font-size="10" fill="{QUIET}">{first}</text>'
    if last != first:
        labels += (f'<text x="{WIDTH - PAD_R}" y="{HEIGHT - 8}" font-size="10" fill="{QUIET}" '
                   f'text-anchor="end">{last}</text>')
    svg = (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}" style="max-width:100%;height:auto" '
        f'role="img" aria-label="{name} of the model and of popularity over recent runs">{ticks}'
        f'<polyline points="{line([b for _, _, b, _k in points])}" fill="none" stroke="{POPULARITY_COLOUR}" '
        f'stroke-width="2" stroke-dasharray="5 4"/>'
        f'<polyline points="{line([m for _, m, _, _k in points])}" fill="none" stroke="{MODEL_COLOUR}" '
        f'stroke-width="2.5"/>{dots}{labels}</svg>'
    )
    legend = format_html(
        '<p style="margin:4px 0 0;font-size:12px"><span style="color:{}">━ model</span> &nbsp; '
        '<span style="color:{}">╍ popularity</span> &nbsp; {} on the time holdout, last {} runs</p>',
        MODEL_COLOUR, POPULARITY_COLOUR, name, n,
    )  # fmt: skip
    return mark_safe(svg) + legend
