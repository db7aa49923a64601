"""Charts drawn on the server as SVG (no chart library in the browser, nothing from a CDN). Pure: values in,
markup out; only numbers and fixed strings reach the markup."""

from __future__ import annotations

import math
from collections.abc import Sequence

WIDTH, HEIGHT, PAD = 760, 180, 28


def _scale(value: float, lo: float, hi: float, out_lo: float, out_hi: float) -> float:
    if hi <= lo:
        return (out_lo + out_hi) / 2
    return out_lo + (value - lo) / (hi - lo) * (out_hi - out_lo)


def score_timeline(points: Sequence[tuple[float, float, bool]], threshold: float | None) -> str:
    """Scores over time (`(ts, score, alarm)`, oldest first) with the threshold as a dashed line and alarms in red.

    >>> svg = score_timeline([(0.0, 0.1, False), (10.0, 0.9, True)], 0.5)
    >>> svg.count("<circle"), "stroke-dasharray" in svg
    (1, True)
    """
    finite = [(t, s, a) for t, s, a in points if math.isfinite(t) and math.isfinite(s)]
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" class="chart" role="img" '
             'aria-label="score timeline">',
             f'<rect x="0" y="0" width="{WIDTH}" height="{HEIGHT}" fill="#fff"/>']
    if not finite:
        parts.append(f'<text x="{WIDTH / 2}" y="{HEIGHT / 2}" text-anchor="middle" fill="#5b6475">no predictions '
                     'in this period</text></svg>')
        return "".join(parts)
    t0, t1 = finite[0][0], finite[-1][0]
    top = max([1.0, threshold or 0.0, *(s for _, s, _ in finite)])

    def xy(t: float, s: float) -> tuple[float, float]:
        return _scale(t, t0, t1, PAD, WIDTH - PAD), _scale(s, 0.0, top, HEIGHT - PAD, PAD)

    line = " ".join(f"{x:.1f},{y:.1f}" for x, y in (xy(t, s) for t, s, _ in finite))
    parts.append(f'<polyline points="{line}" fill="none" stroke="#1f5fbf" stroke-width="1.2"/>')
    if threshold is not None and math.isfinite(threshold):
        _, y = xy(t0, threshold)
        parts.append(f'<line x1="{PAD}" x2="{WIDTH - PAD}" y1="{y:.1f}" y2="{y:.1f}" stroke="#b26a00" '
                     f'stroke-dasharray="5 4"/><text x="{WIDTH - PAD}" y="{y - 4:.1f}" text-anchor="end" '
                     f'font-size="11" fill="#b26a00">threshold {threshold:.3f}</text>')
    for t, s, alarm in finite:
        if alarm:
            x, y = xy(t, s)
            parts.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="2.5" fill="#b3261e"/>')
    parts.append("</svg>")
    return "".join(parts)


SENSOR_WIDTH, SENSOR_HEIGHT = 360, 90


def sensor_plot(timestamps: Sequence[float], values: Sequence[float], window_start: float | None = None) -> str:
    """One sensor's readings over a window as a small line plot, with its min and max at the left edge. Readings
    before `window_start` (the context a feature set 2 window comes with) are shaded, the window's start dashed.

    >>> svg = sensor_plot([0.0, 1.0, 2.0], [1.0, 3.0, 2.0])
    >>> svg.count("<polyline"), ">3<" in svg, ">1<" in svg, 'class="context"' in svg
    (1, True, True, False)
    >>> 'class="context"' in sensor_plot([0.0, 1.0, 2.0], [1.0, 3.0, 2.0], window_start=1.0)
    True
    """
    points = [(t, v) for t, v in zip(timestamps, values, strict=False) if math.isfinite(t) and math.isfinite(v)]
    w, h, pad = SENSOR_WIDTH, SENSOR_HEIGHT, 14
    t0 = points[0][0] if points else 0.0
    start = window_start if points and window_start is not None and math.isfinite(window_start) \
        and t0 < window_start else None  # where the window starts after readings of context
    label = "sensor readings, the context before the window shaded" if start is not None else "sensor readings"
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {w} {h}" class="sensor" role="img" '
             f'aria-label="{label}">', f'<rect x="0" y="0" width="{w}" height="{h}" fill="#fff"/>']
    if not points:
        parts.append(f'<text x="{w / 2}" y="{h / 2}" text-anchor="middle" fill="#5b6475">no readings</text></svg>')
        return "".join(parts)
    t1 = points[-1][0]
    lo, hi = min(v for _, v in points), max(v for _, v in points)
    if start is not None:
        left, x = 4 * pad, _scale(min(start, t1), t0, t1, 4 * pad, w - pad)
        parts.append(f'<rect class="context" x="{left}" y="0" width="{x - left:.1f}" height="{h}" fill="#eef1f5"/>'
                     f'<line x1="{x:.1f}" x2="{x:.1f}" y1="0" y2="{h}" stroke="#5b6475" stroke-dasharray="3 3"/>'
                     f'<text x="{x + 3:.1f}" y="{h - 3}" font-size="9" fill="#5b6475">window</text>')
    line = " ".join(f"{_scale(t, t0, t1, 4 * pad, w - pad):.1f},{_scale(v, lo, hi, h - pad, pad):.1f}"
                    for t, v in points)
    parts.append(f'<polyline points="{line}" fill="none" stroke="#1f5fbf" stroke-width="1.2"/>')
    parts.append(f'<text x="2" y="{pad + 4}" font-size="10" fill="#5b6475">{hi:.4g}</text>'
                 f'<text x="2" y="{h - pad + 4}" font-size="10" fill="#5b6475">{lo:.4g}</text>')
    parts.append("</svg>")
    return "".join(parts)


def heat(value: float | None, limit: float) -> str:
    """A cell colour for `value` against `limit`: white at 0, full red at twice the limit, grey for none.

    >>> heat(None, 0.2), heat(0.0, 0.2), heat(0.4, 0.2)
    ('#eeeeee', 'rgb(255,255,255)', 'rgb(179,38,30)')
    """
    if value is None or not math.isfinite(value):
        return "#eeeeee"
    f = min(1.0, max(0.0, value / (2 * limit))) if limit > 0 else 1.0
    r, g, b = (round(255 + (c - 255) * f) for c in (179, 38, 30))
    return f"rgb({r},{g},{b})"
