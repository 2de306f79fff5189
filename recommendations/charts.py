"""A small SVG line chart of the model's metric against popularity's, drawn on the server
(no script, no remote asset): the admin's training-run list shows it."""

from __future__ import annotations

from django.utils.html import escape, format_html
from django.utils.safestring import SafeString, mark_safe

WIDTH, HEIGHT, PAD_L, PAD_R, PAD_T, PAD_B = 640, 200, 48, 16, 16, 30


def metrics_chart(runs: list, metric: str | None = None) -> SafeString:
    """Model (solid) and popularity (dashed) precision@k of ``runs``, oldest first."""
    points = []
    for run in runs:
        model, base = run.metric("model", metric), run.metric("popularity", metric)
        if model is not None and base is not None:
            points.append((run.pk, float(model), float(base)))
    if len(points) < 1:
        return mark_safe("")
    top = max(max(m, b) for _, m, b in points) * 1.15 or 1.0
    n = len(points)
    span_x = WIDTH - PAD_L - PAD_R
    span_y = HEIGHT - PAD_T - PAD_B

    def xy(i: int, value: float) -> str:
        x = PAD_L + (span_x * i / (n - 1) if n > 1 else span_x / 2)
        y = PAD_T + span_y * (1 - value / top)
        return f"{x:.1f},{y:.1f}"

    model_line = " ".join(xy(i, m) for i, (_, m, _) in enumerate(points))
    base_line = " ".join(xy(i, b) for i, (_, _, b) in enumerate(points))
    def dot(i: int, value: float, colour: str, title: str) -> str:
        x, y = xy(i, value).split(",")
        return f'<circle cx="{x}" cy="{y}" r="3" fill="{colour}"><title>{title}</title></circle>'

    dots = "".join(
        dot(i, b, "#e76f51", f"run #{pk}: popularity {b:.4f}") + dot(i, m, "#264653", f"run #{pk}: model {m:.4f}")
        for i, (pk, m, b) in enumerate(points)
    )
    ticks = "".join(
        f'<text x="{PAD_L - 6}" y="{PAD_T + span_y * (1 - f):.1f}" text-anchor="end" font-size="10" '
        f'dominant-baseline="middle" fill="#666">{top * f:.3f}</text>'
        f'<line x1="{PAD_L}" x2="{WIDTH - PAD_R}" y1="{PAD_T + span_y * (1 - f):.1f}" y2="{PAD_T + span_y * (1 - f):.1f}" stroke="#eee"/>'
        for f in (0.0, 0.5, 1.0)
    )
    labels = (
        f'<text x="{PAD_L}" y="{HEIGHT - 8}" font-size="10" fill="#666">run #{points[0][0]}</text>'
        f'<text x="{WIDTH - PAD_R}" y="{HEIGHT - 8}" font-size="10" fill="#666" text-anchor="end">run #{points[-1][0]}</text>'
    )
    name = escape(metric or "precision@k")
    svg = (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}" '
        f'role="img" aria-label="{name} of the model and of popularity over recent runs">{ticks}'
        f'<polyline points="{base_line}" fill="none" stroke="#e76f51" stroke-width="2" stroke-dasharray="5 4"/>'
        f'<polyline points="{model_line}" fill="none" stroke="#264653" stroke-width="2.5"/>{dots}{labels}</svg>'
    )
    legend = format_html(
        '<p style="margin:4px 0 0;font-size:12px"><span style="color:#264653">━ model</span> &nbsp; '
        '<span style="color:#e76f51">╍ popularity</span> &nbsp; {} on the time holdout, last {} runs</p>',
        name, n,
    )  # fmt: skip
    return mark_safe(svg) + legend
